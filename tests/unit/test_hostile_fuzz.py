"""Property-based fuzzing of the request path: whatever bytes arrive, the pipeline answers.

Hypothesis builds chat-completions bodies of every shape (wrong types anywhere, odd roles,
content parts of any kind, huge and unicode strings, extreme numbers, deep or arbitrary JSON,
tools) and raw bytes (truncated or corrupted JSON). `Pipeline.prepare` and `Pipeline.classify`
must either route the request (a body the backend can take, the decision headers) or raise a
RouterError with a 4xx status and an OpenAI error body; any other exception, or a 5xx, fails.

Run in-process against the keyword-only config (many examples, milliseconds each) and against
the shipped config with the real local encoder and tool scoring (fewer examples).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semrouter.config import default_config_path, load_config, parse_config
from semrouter.pipeline.errors import RouterError
from semrouter.pipeline.flow import Pipeline
from semrouter.pipeline.router import Router
from tests.conftest import minimal_config

ROLES = ["system", "developer", "user", "assistant", "tool", "function"]
PART_TYPES = ["text", "image_url", "input_audio", "file", "refusal", ""]

# Strings: short unicode (no lone surrogates: they cannot be JSON-encoded as UTF-8; the raw
# byte strategies below cover them), and occasionally long ones.
short_text = st.text(max_size=40)
long_text = st.builds(
    lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.integers(1_000, 60_000)
)
text = st.one_of(short_text, short_text, long_text)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(short_text, inner, max_size=6)
    ),
    max_leaves=30,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the well-formed value (7 in 8), sometimes any JSON at all."""
    return st.integers(0, 7).flatmap(lambda i: json_values if i == 0 else strategy)


part = maybe(
    st.fixed_dictionaries(
        {"type": maybe(st.sampled_from(PART_TYPES))},
        optional={
            "text": maybe(text),
            "image_url": maybe(st.fixed_dictionaries({"url": maybe(text)})),
            "input_audio": maybe(
                st.fixed_dictionaries({"data": maybe(text), "format": maybe(short_text)})
            ),
        },
    )
)
message = maybe(
    st.fixed_dictionaries(
        {
            "role": maybe(st.sampled_from(ROLES)),
            "content": maybe(st.one_of(text, st.lists(part, max_size=8))),
        },
        optional={
            "name": maybe(short_text),
            "tool_calls": json_values,
        },
    )
)
tool = maybe(
    st.fixed_dictionaries(
        {"type": maybe(st.just("function"))},
        optional={
            "function": maybe(
                st.fixed_dictionaries(
                    {"name": maybe(short_text)},
                    optional={"description": maybe(text), "parameters": json_values},
                )
            )
        },
    )
)
chat_body = st.fixed_dictionaries(
    {
        "model": maybe(st.sampled_from(["auto", "fast", "reasoner", "fast-id", "nope"])),
        "messages": maybe(st.lists(message, min_size=1, max_size=6)),
    },
    optional={
        "stream": maybe(st.booleans()),
        "max_tokens": maybe(st.integers(-5, 10**6)),
        "max_completion_tokens": maybe(st.integers(-5, 10**6)),
        "temperature": numbers,
        "tools": maybe(st.lists(tool, max_size=6)),
        "tool_choice": json_values,
        "reasoning_effort": json_values,
        "chat_template_kwargs": json_values,
        "metadata": json_values,
    },
)


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """A valid body cut short, or with bytes spliced in (invalid UTF-8, lone surrogates)."""
    raw = draw(chat_body.map(orjson.dumps))
    at = draw(st.integers(0, len(raw)))
    splice = draw(
        st.one_of(
            st.binary(max_size=8),
            st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\\ud800", b"\\udfff\\ud800", b"\x00"]),
        )
    )
    if draw(st.booleans()):
        return raw[:at]
    return raw[:at] + splice + raw[at:]


request_bytes = st.integers(0, 7).flatmap(
    lambda i: (
        (json_values.map(orjson.dumps), corrupted(), st.binary(max_size=64))[i]
        if i < 3
        else chat_body.map(orjson.dumps)
    )
)


def check(loop: asyncio.AbstractEventLoop, pipeline: Pipeline, raw: bytes) -> None:
    """prepare and classify route the request or refuse it with a 4xx OpenAI error."""
    try:
        prepared = loop.run_until_complete(pipeline.prepare(raw, {}))
    except RouterError as error:
        assert_client_error(error)
    else:
        assert prepared.headers["x-semrouter-model"] in {m.name for m in pipeline.config.models}
        assert isinstance(orjson.loads(prepared.body), dict)
    try:
        summary, headers = loop.run_until_complete(pipeline.classify(raw))
    except RouterError as error:
        assert_client_error(error)
    else:
        assert summary["model"] == headers["x-semrouter-model"]


def assert_client_error(error: RouterError) -> None:
    assert 400 <= error.status < 500, (error.status, error.code, error.message)
    body = orjson.loads(error.body())
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code"}
    assert all(isinstance(v, str) and v for v in body["error"].values())


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def keyword_pipeline() -> Pipeline:
    return Pipeline(Router(parse_config(minimal_config(), env={})))


@pytest.fixture(scope="module")
def encoder_pipeline(loop: asyncio.AbstractEventLoop) -> Iterator[Pipeline]:
    pipeline = Pipeline(Router.from_config(load_config(default_config_path({}), env={})))
    loop.run_until_complete(pipeline.start())
    yield pipeline
    loop.run_until_complete(pipeline.close())


def fuzz(examples: int) -> settings:
    """No per-example deadline (a long text takes a while to generate) and no example database
    (nothing written into the working tree): a failure prints the example to reproduce it."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@fuzz(400)
@given(raw=request_bytes)
def test_keyword_pipeline_answers_any_bytes(
    loop: asyncio.AbstractEventLoop, keyword_pipeline: Pipeline, raw: bytes
) -> None:
    check(loop, keyword_pipeline, raw)


@fuzz(60)
@given(raw=request_bytes)
def test_encoder_pipeline_answers_any_bytes(
    loop: asyncio.AbstractEventLoop, encoder_pipeline: Pipeline, raw: bytes
) -> None:
    check(loop, encoder_pipeline, raw)


well_typed = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["auto", "fast", "reasoner", "fast-id"]),
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(ROLES),
                    "content": st.one_of(
                        text,
                        st.lists(
                            st.fixed_dictionaries({"type": st.just("text"), "text": text}),
                            min_size=1,
                            max_size=4,
                        ),
                    ),
                }
            ),
            min_size=1,
            max_size=6,
        ),
    },
    optional={"stream": st.booleans(), "max_tokens": st.integers(1, 10**6)},
)


@fuzz(150)
@given(body=well_typed)
def test_well_typed_requests_are_routed(
    loop: asyncio.AbstractEventLoop, keyword_pipeline: Pipeline, body: dict[str, Any]
) -> None:
    """A request whose every field has the documented type is routed, never refused."""
    prepared = loop.run_until_complete(keyword_pipeline.prepare(orjson.dumps(body), {}))
    assert prepared.route.model.name in {"fast", "reasoner"}
    sent = orjson.loads(prepared.body)
    assert sent["model"] == prepared.route.model.upstream_id
    assert sent["messages"][-1] == body["messages"][-1]
