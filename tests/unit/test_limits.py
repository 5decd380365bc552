"""router.limits: work per request is bounded by config, whatever the input; a slow or failed
classification falls back (or answers 503) instead of stalling the request."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import numpy as np
import pytest

from semrouter.config import parse_config
from semrouter.config.schema import LimitsConfig, RouterConfig
from semrouter.embed.base import Embedder, EmbeddingError, Encoded, EncoderOverloaded
from semrouter.embed.batcher import MicroBatcher
from semrouter.embed.spelling import SpellingNormaliser
from semrouter.extproc.server import ExtProcServicer
from semrouter.pipeline.errors import RouterError
from semrouter.pipeline.flow import Admission
from semrouter.pipeline.request import (
    chat_request_from_body,
    containers_opened,
    parse_chat_request,
    window,
)
from semrouter.pipeline.router import Router
from semrouter.proxy.app import ProxyApp
from tests.conftest import minimal_config
from tests.servers import serving


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}


def refusal(body: bytes, limits: LimitsConfig | None = None) -> RouterError:
    with pytest.raises(RouterError) as caught:
        parse_chat_request(body, 10_000_000, limits or LimitsConfig())
    return caught.value


# --- windows -----------------------------------------------------------------------------------


def test_window_keeps_short_texts_and_cuts_long_ones_at_whitespace() -> None:
    assert window("short text", 100) == "short text"
    words = " ".join(f"w{i:04d}" for i in range(2000))
    cut = window(words, 1000)
    assert len(cut) <= 1001
    assert cut.startswith("w0000 ") and cut.endswith("w1999")
    assert all(len(token) == 5 for token in cut.split())  # no word was cut


def test_window_cuts_text_without_whitespace_hard() -> None:
    cut = window("x" * 200_000, 8192)
    assert len(cut) == 8193 and set(cut) == {"x", " "}


def test_signal_input_reads_a_window_but_counts_the_whole_conversation() -> None:
    limits = LimitsConfig(classify_chars=1000, count_chars=2000)
    body = {
        "model": "auto",
        "messages": [
            {"role": "user", "content": "a " * 5000},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "b" * 300_000},
        ],
    }
    item = chat_request_from_body(body, limits).signal_input(limits)
    assert len(item.text) <= 1001 and item.prompt_chars == 300_000
    assert item.conversation_sample is not None and len(item.conversation_sample) == 2000
    assert item.conversation_chars == 10_000 + 2 + 300_000 + 2


class WordCounter(Embedder):
    """Embeds nothing useful; counts a text's words as its tokens, as the encoder would."""

    dim = feature_dim = 2

    async def encode(self, texts: Sequence[str]) -> Encoded:
        return self.encode_sync(texts)

    def encode_sync(self, texts: Sequence[str]) -> Encoded:
        counts = np.array([len(t.split()) for t in texts], np.int64)
        return Encoded(np.ones((len(texts), 2), np.float32), np.ones((len(texts), 2)), counts)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


async def test_a_long_prompt_is_counted_from_its_window_without_a_second_tokenisation() -> None:
    data = minimal_config()
    data["signals"]["similarity"] = [{"name": "alike", "examples": ["x"]}]
    data["signals"]["context"] = [{"name": "long", "min_tokens": 30_000}]
    embedder = WordCounter()
    embedder.count_tokens = None  # type: ignore[assignment, method-assign]  # must not be called
    router = Router(parse_config(data, env={}), embedder)
    await router.start()
    route = await router.route(chat_request_from_body(chat("word " * 40_000)))
    assert route.signals is not None and "long" in route.signals.fired
    assert abs(route.signals.tokens - 40_000) < 400


def test_too_many_messages_are_refused_before_the_body_is_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import semrouter.pipeline.request as request_module

    monkeypatch.setattr(request_module, "parse_body", None)  # parsing would fail the test
    body = {"model": "auto", "messages": [{"role": "user", "content": "x"}] * 5000}
    error = refusal(raw(body))
    assert (error.status, error.code) == (413, "too_many_messages")


# --- counts and depth --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"model": "auto", "messages": [{"role": "user", "content": "x"}] * 3},
            413,
            "too_many_messages",
        ),
        (chat("x", tools=[{"type": "function"}] * 3), 413, "too_many_tools"),
        (chat("x", tools={"type": "function"}), 400, "invalid_tools"),
        (
            {
                "model": "auto",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 3}],
            },
            413,
            "too_many_content_parts",
        ),
    ],
)
def test_counts_over_the_limits_are_refused(body: Any, status: int, code: str) -> None:
    limits = LimitsConfig(max_messages=2, max_tools=2, max_content_parts=2)
    error = refusal(raw(body), limits)
    assert (error.status, error.code) == (status, code)


def nested(lists: int) -> Any:
    node: Any = "leaf"
    for _ in range(lists):
        node = [node]
    return node


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    limits = LimitsConfig(max_json_depth=10)
    # The body object is level 1: 9 nested lists reach level 10, the limit.
    parse_chat_request(raw(chat("x", metadata=nested(9))), 10_000, limits)
    error = refusal(raw(chat("x", metadata=nested(10))), limits)
    assert (error.status, error.code) == (400, "too_deep")


def test_a_body_that_orjson_could_parse_but_not_write_back_is_refused() -> None:
    """orjson reads 1,024 levels but writes only 254: the depth limit keeps rewriting safe."""
    error = refusal(raw(chat("x", metadata=nested(300))))
    assert error.code == "too_deep"


def test_many_shallow_containers_pass() -> None:
    many = [{"k": [1]} for _ in range(5000)]
    parse_chat_request(raw(chat("x", metadata=many)), 10_000_000, LimitsConfig())


def test_container_count_is_exact_on_both_paths() -> None:
    """Small bodies are counted with bytes.count, large ones with numpy: the same answer,
    brackets inside strings included (they only make the count an upper bound)."""
    for body in (raw(chat("x [y] {z}", metadata=nested(3))), raw(chat("{[" * 50_000))):
        assert containers_opened(body) == body.count(b"{") + body.count(b"[")


def test_many_messages_in_a_large_body_are_refused_before_parsing() -> None:
    body = raw({"model": "auto", "messages": [{"role": "user", "content": "x"}] * 3000})
    error = refusal(body, LimitsConfig(max_messages=2048))
    assert error.code == "too_many_messages"


# --- spelling ----------------------------------------------------------------------------------


def test_spelling_leaves_long_words_and_spaceless_texts_alone() -> None:
    spelling = SpellingNormaliser({"government": 50, "policy": 20}, max_word_chars=40)
    assert spelling("the goverment policy") == "the government policy"
    long_word = "x" * 200_000
    assert spelling(long_word) == long_word  # edits1 on it would need ~24 GB
    blob = "goverment" + "y" * 50_000 + "goverment"
    assert spelling(blob) == blob


# --- encoder queue -----------------------------------------------------------------------------


def _encoded(n: int) -> Encoded:
    return Encoded(
        np.zeros((n, 2), np.float32), np.zeros((n, 2), np.float32), np.zeros(n, np.int64)
    )


async def test_encoder_queue_is_bounded() -> None:
    release = threading.Event()

    def slow(texts: list[str]) -> Encoded:
        release.wait(5)
        return _encoded(len(texts))

    batcher = MicroBatcher(slow, max_batch=1, max_queue=2)
    try:
        running = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.sleep(0.05)  # "a" is in the worker; the queue is empty
        queued = [asyncio.create_task(batcher.submit([t])) for t in ("b", "c")]
        await asyncio.sleep(0.01)
        with pytest.raises(EncoderOverloaded):
            await batcher.submit(["d"])
        release.set()
        await asyncio.gather(running, *queued)
    finally:
        release.set()
        await batcher.close()


# --- deadline and embedding failures -----------------------------------------------------------


class ScriptedEmbedder(Embedder):
    """Answers after `delay_s`, or fails with `error`; examples encode at once."""

    dim = feature_dim = 2

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.error: EmbeddingError | None = None
        self.started = False

    async def encode(self, texts: Sequence[str]) -> Encoded:
        if self.started:
            await asyncio.sleep(self.delay_s)
            if self.error is not None:
                raise self.error
        self.started = True
        return self.encode_sync(texts)

    def encode_sync(self, texts: Sequence[str]) -> Encoded:
        embeddings = np.tile(np.array([[1.0, 0.0]], np.float32), (len(texts), 1))
        return Encoded(embeddings, embeddings, np.ones(len(texts), np.int64))

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def similarity_config(**router: Any) -> RouterConfig:
    data = minimal_config()
    data["signals"]["similarity"] = [{"name": "alike", "examples": ["x"], "threshold": 0.5}]
    data["decisions"].append(
        {
            "name": "safe",
            "priority": -1,
            "rules": {"conditions": [{"name": "alike"}]},
            "model": "fast",
        }
    )
    data["router"] = {"limits": {"classify_deadline_ms": 150}, **router}
    return parse_config(data, env={})


async def started(config: RouterConfig) -> tuple[Router, ScriptedEmbedder]:
    embedder = ScriptedEmbedder()
    router = Router(config, embedder)
    await router.start()
    return router, embedder


async def test_a_missed_deadline_routes_by_the_fallback_decision() -> None:
    router, embedder = await started(similarity_config(fallback_decision="math"))
    assert (await router.route(chat_request_from_body(chat("hello")))).fallback is None
    embedder.delay_s = 1.0
    began = time.perf_counter()
    route = await router.route(chat_request_from_body(chat("hello")))
    assert time.perf_counter() - began < 0.5
    assert route.fallback == "deadline"
    assert (route.outcome and route.outcome.decision, route.model.name) == ("math", "reasoner")
    assert route.headers()["x-semrouter-fallback"] == "deadline"
    assert route.summary()["fallback"] == "deadline"


async def test_an_embedding_failure_falls_back_or_answers_503_as_configured() -> None:
    router, embedder = await started(similarity_config())
    embedder.error = EmbeddingError("remote embedder down")
    route = await router.route(chat_request_from_body(chat("hello")))
    assert (route.fallback, route.outcome and route.outcome.decision) == (
        "embedding_error",
        "default",
    )

    router, embedder = await started(similarity_config(on_embedding_error="reject"))
    embedder.error = EmbeddingError("remote embedder down")
    with pytest.raises(RouterError) as caught:
        await router.route(chat_request_from_body(chat("hello")))
    assert (caught.value.status, caught.value.code) == (503, "embedding_unavailable")
    assert caught.value.headers() == {"retry-after": "1"}


async def test_the_embedding_failure_answer_is_the_same_on_both_transports() -> None:
    from tests.unit.test_extproc import drive, request_body, request_headers

    embedder = ScriptedEmbedder()
    proxy = ProxyApp(Router(similarity_config(on_embedding_error="reject"), embedder))
    async with serving(proxy.app) as url, aiohttp.ClientSession() as session:
        embedder.error = EmbeddingError("remote embedder down")
        async with session.post(url + "/v1/chat/completions", data=raw(chat("hi"))) as response:
            served = (response.status, response.headers.get("retry-after"), await response.read())
    replies = await drive(
        ExtProcServicer(proxy.pipeline), [request_headers(), request_body(raw(chat("hi")))]
    )
    answer = replies[-1].immediate_response
    sent = {h.header.key: h.header.raw_value.decode() for h in answer.headers.set_headers}
    assert served[:2] == (answer.status.code, sent["retry-after"]) == (503, "1")
    assert served[2] == answer.body
    assert json.loads(answer.body)["error"]["code"] == "embedding_unavailable"


async def test_serve_refuses_oversized_headers_with_431() -> None:
    proxy = ProxyApp(
        Router(similarity_config(limits={"max_header_bytes": 2048}), ScriptedEmbedder())
    )
    async with serving(proxy.app) as url, aiohttp.ClientSession() as session:
        headers = {"x-padding": "p" * 4000}
        async with session.post(
            url + "/v1/chat/completions", data=raw(chat("hi")), headers=headers
        ) as response:
            assert response.status == 431
            assert (await response.json())["error"]["code"] == "headers_too_large"
        async with session.get(url + "/health", headers=headers) as response:
            assert response.status == 200  # probes are not API requests


async def test_route_ms_is_per_request_in_a_batch() -> None:
    class SlowBatch(ScriptedEmbedder):
        def encode_sync(self, texts: Sequence[str]) -> Encoded:
            time.sleep(0.1)
            return super().encode_sync(texts)

    router = Router(similarity_config(), SlowBatch())
    router.start_sync()
    routes = router.route_many_sync([chat_request_from_body(chat(f"q{i}")) for i in range(5)])
    times = [r.route_ms for r in routes]
    assert all(15 < t < 60 for t in times), times  # a fifth of the 100 ms pass each


# --- admission ---------------------------------------------------------------------------------


def test_admission_refuses_past_the_limit() -> None:
    admission = Admission(limit=1)
    admission.enter()
    with pytest.raises(RouterError) as caught:
        admission.enter()
    assert (caught.value.status, caught.value.code) == (503, "overloaded")
    assert caught.value.headers()["retry-after"] == "1"
    admission.leave()
    admission.enter()  # room again
