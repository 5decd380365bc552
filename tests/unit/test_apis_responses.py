"""The Responses translation, field by field (request → chat, chat → response object and its
SSE events), the completions and embeddings routes, and their errors through `semrouter serve`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semrouter.apis.completions import Completions
from semrouter.apis.responses import ResponseShape, ResponsesTranslator, from_chat, to_chat
from semrouter.config.schema import LimitsConfig
from semrouter.pipeline.errors import RouterError
from semrouter.pipeline.request import chat_request_from_body
from tests.unit.apis_helpers import api_router, chunk, events, json_values, post_api, stream

LIMITS = LimitsConfig()
TOOL = {
    "type": "function",
    "name": "weather",
    "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def test_request_translates_every_field() -> None:
    body = {
        "model": "auto",
        "instructions": "Be terse.",
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "clock", "arguments": ""},
            {"type": "function_call_output", "call_id": "c1", "output": "18C"},
            {"type": "function_call_output", "call_id": "c2", "output": {"time": "9:00"}},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "It is 18C."}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "And this?"},
                    {"type": "input_image", "image_url": "https://x.test/a.png"},
                ],
            },
        ],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "name": "weather"},
        "reasoning": {"effort": "high"},
        "max_output_tokens": 64,
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
        "temperature": 0.1,
        "top_p": 0.5,
        "parallel_tool_calls": False,
        "user": "u-1",
        "store": True,
        "stream": True,
    }
    assert to_chat(body, LIMITS) == {
        "model": "auto",
        "temperature": 0.1,
        "top_p": 0.5,
        "parallel_tool_calls": False,
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": "{}"},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "clock", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            {"role": "tool", "tool_call_id": "c2", "content": '{"time":"9:00"}'},
            {"role": "assistant", "content": "It is 18C."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And this?"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ],
            },
        ],
        "max_tokens": 64,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "parameters": TOOL["parameters"],
                    "description": "Current weather",
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "reasoning_effort": "high",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}},
        },
    }


def test_text_input_and_minimal_effort() -> None:
    chat = to_chat({"model": "m", "input": "hi", "reasoning": {"effort": "minimal"}}, LIMITS)
    assert chat == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "reasoning_effort": "low",
    }
    json_mode = {"model": "m", "input": "hi", "text": {"format": {"type": "json_object"}}}
    assert to_chat(json_mode, LIMITS)["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_not_supported", "stateless"),
        ({"input": None}, "invalid_input", "'input' is required"),
        ({"input": []}, "invalid_input", "'input' is required"),
        ({"input": [5]}, "invalid_input", "input[0] must be an object"),
        ({"input": [{"type": "web_search_call"}]}, "invalid_input", "not supported"),
        ({"input": [{"role": "robot", "content": "x"}]}, "invalid_request", "role must be"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "invalid_request", "call_id"),
        ({"input": [{"role": "user", "content": [{"type": "input_file"}]}]}, None, "input_file"),
        ({"tools": [{"type": "web_search"}]}, "invalid_tools", "only function tools"),
        ({"tools": [{"type": "function"}]}, "invalid_tools", "name must be"),
        ({"tool_choice": "sometimes"}, "invalid_request", "'tool_choice' must be"),
        ({"reasoning": {"effort": "max"}}, "invalid_request", "reasoning.effort"),
        ({"instructions": 3}, "invalid_request", "'instructions' must be a string"),
        ({"text": {"format": {"type": "xml"}}}, "invalid_request", "text.format.type"),
        ({"model": None}, "invalid_model", "'model' is required"),
    ],
)
def test_bad_requests_are_400s(change: dict[str, Any], code: str | None, message: str) -> None:
    body: dict[str, Any] = {"model": "auto", "input": "hi"}
    body.update(change)
    with pytest.raises(RouterError) as raised:
        to_chat({k: v for k, v in body.items() if v is not None}, LIMITS)
    assert raised.value.status == 400
    assert code is None or raised.value.code == code
    assert message in raised.value.message


def test_input_items_are_bounded() -> None:
    with pytest.raises(RouterError) as raised:
        to_chat(
            {"model": "m", "input": [{"role": "user", "content": "x"}] * 4},
            LimitsConfig(max_messages=3),
        )
    assert (raised.value.status, raised.value.code) == (413, "too_many_messages")
    parts = [{"type": "input_text", "text": "x"}] * 4
    with pytest.raises(RouterError) as raised:
        to_chat(
            {"model": "m", "input": [{"role": "user", "content": parts}]},
            LimitsConfig(max_content_parts=3),
        )
    assert raised.value.status == 413


COMPLETION = {
    "id": "chatcmpl-3",
    "model": "smollm2",
    "choices": [
        {
            "message": {
                "role": "assistant",
                "reasoning_content": "Hmm.",
                "content": "Sunny.",
                "tool_calls": [
                    {"id": "call_1", "function": {"name": "weather", "arguments": '{"c":1}'}}
                ],
            },
            "finish_reason": "length",
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 5},
}
REQUEST = {"model": "auto", "input": "hi", "instructions": "Be terse.", "tools": [TOOL]}


def test_completion_becomes_a_response() -> None:
    shape = ResponseShape(REQUEST)
    assert from_chat(COMPLETION, shape) == {
        "id": "resp_chatcmpl-3",
        "object": "response",
        "created_at": shape.created_at,
        "status": "incomplete",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"},
        "model": "smollm2",
        "output": [
            {
                "type": "reasoning",
                "id": "rs_resp_chatcmpl-3",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": "Hmm."}],
            },
            {
                "type": "message",
                "id": "msg_resp_chatcmpl-3",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}],
            },
            {
                "type": "function_call",
                "id": "fc_resp_chatcmpl-3_0",
                "call_id": "call_1",
                "name": "weather",
                "arguments": '{"c":1}',
                "status": "completed",
            },
        ],
        "instructions": "Be terse.",
        "temperature": None,
        "top_p": None,
        "max_output_tokens": None,
        "user": None,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [TOOL],
        "truncation": "disabled",
        "metadata": {},
        "usage": {
            "input_tokens": 20,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 25,
        },
    }


def test_stream_becomes_response_events() -> None:
    rewriter = ResponsesTranslator(REQUEST, LIMITS)
    assert rewriter.begin(200, "text/event-stream") == "text/event-stream"
    out = stream(
        rewriter,
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({"tool_calls": [{"index": 0, "id": "k1", "function": {"name": "weather"}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"c":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "2}"}}]}),
            chunk({}, "tool_calls"),
            chunk(None, usage={"prompt_tokens": 4, "completion_tokens": 3}),
        ],
    )
    got = events(out)
    assert [data["sequence_number"] for _, data in got] == list(range(len(got)))
    for _, data in got:
        del data["sequence_number"]
    message_id, call_id = "msg_resp_chatcmpl-s_0", "fc_resp_chatcmpl-s_1"
    text_part = {"type": "output_text", "text": "Hello", "annotations": []}
    message = {
        "type": "message",
        "id": message_id,
        "status": "completed",
        "role": "assistant",
        "content": [text_part],
    }
    call = {
        "type": "function_call",
        "id": call_id,
        "call_id": "k1",
        "name": "weather",
        "arguments": '{"c":2}',
        "status": "completed",
    }
    at_message = {"item_id": message_id, "output_index": 0}
    at_call = {"item_id": call_id, "output_index": 1}
    assert [name for name, _ in got] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = got[0][1]["response"]
    assert (created["id"], created["status"], created["output"]) == (
        "resp_chatcmpl-s",
        "in_progress",
        [],
    )
    assert got[2][1]["item"] == {**message, "status": "in_progress", "content": []}
    assert got[3][1] == {
        "type": "response.content_part.added",
        **at_message,
        "content_index": 0,
        "part": {**text_part, "text": ""},
    }
    assert got[4][1] == {
        "type": "response.output_text.delta",
        **at_message,
        "content_index": 0,
        "delta": "Hel",
    }
    assert got[6][1] == {
        "type": "response.output_text.done",
        **at_message,
        "content_index": 0,
        "text": "Hello",
    }
    assert got[8][1]["item"] == message
    assert got[9][1]["item"] == {**call, "arguments": "", "status": "in_progress"}
    assert got[10][1] == {
        "type": "response.function_call_arguments.delta",
        **at_call,
        "delta": '{"c":',
    }
    assert got[12][1] == {
        "type": "response.function_call_arguments.done",
        **at_call,
        "arguments": '{"c":2}',
    }
    completed = got[-1][1]["response"]
    assert completed["status"] == "completed"
    assert completed["output"] == [message, call]
    assert completed["usage"]["total_tokens"] == 7


def test_stream_cut_by_length_is_incomplete_and_reasoning_streams() -> None:
    rewriter = ResponsesTranslator(REQUEST, LIMITS)
    rewriter.begin(200, "text/event-stream")
    out = stream(rewriter, [chunk({"reasoning_content": "So"}), chunk({"content": "x"}, "length")])
    names = [name for name, _ in events(out)]
    assert "response.reasoning_text.delta" in names and "response.reasoning_text.done" in names
    assert names[-1] == "response.incomplete"
    assert events(out)[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_mid_stream_failure_is_an_error_event() -> None:
    rewriter = ResponsesTranslator(REQUEST, LIMITS)
    rewriter.begin(200, "text/event-stream")
    out = rewriter.feed(chunk({"content": "a"}) + b'data: {"error": {"message": "gone"}}\n\n')
    out += rewriter.finish()
    name, data = events(out)[-1]
    assert name == "error" and data["message"] == "gone" and data["code"] == "backend_error"


def test_completions_route_by_the_prompt() -> None:
    api = Completions()
    body = {"model": "auto", "prompt": ["Once upon", "a time"], "max_tokens": 5}
    chat = api.translate(body, LIMITS)
    assert chat == {**body, "messages": [{"role": "user", "content": "Once upon\na time"}]}
    api.backend_body(chat)
    assert chat == body
    for prompt in ([1, 2, 3], None, []):
        with pytest.raises(RouterError) as raised:
            api.translate({"model": "auto", "prompt": prompt}, LIMITS)
        assert raised.value.code == "invalid_prompt"


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Any]]:
    embedder = {
        "name": "embedder",
        "provider_model_id": "embed-id",
        "endpoints": [{"url": "http://127.0.0.1:9/v1"}],  # replaced by the stand-in's
    }
    base = _models()
    async with api_router(
        models=[*base, embedder], router={"embeddings_model": "embedder"}
    ) as served:
        yield served


def _models() -> list[dict[str, Any]]:
    from tests.conftest import minimal_config

    return list(minimal_config()["models"])


async def test_routes_answer_bad_input_in_openai_shape(served: tuple[str, Any]) -> None:
    url, _ = served
    for path, raw, status in (
        ("/v1/responses", b"{", 400),
        (
            "/v1/responses",
            orjson.dumps({"model": "auto", "input": "x", "previous_response_id": "r"}),
            400,
        ),
        ("/v1/responses", orjson.dumps({"model": "auto", "input": [{"type": "x"}]}), 400),
        ("/v1/completions", orjson.dumps({"model": "auto", "prompt": [1, 2]}), 400),
        ("/v1/embeddings", orjson.dumps({"model": "auto"}), 400),
        ("/v1/embeddings", b"[1]", 400),
    ):
        got, _, body = await post_api(url, path, raw)
        assert got == status, (path, body)
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}


async def test_responses_and_completions_reach_the_backend(served: tuple[str, Any]) -> None:
    url, backend = served
    payload = {"model": "auto", "input": "prove it", "instructions": "Short."}
    status, headers, body = await post_api(url, "/v1/responses", orjson.dumps(payload))
    assert status == 200 and headers["x-semrouter-model"] == "reasoner"
    assert body["object"] == "response" and body["output"][0]["type"] == "message"
    sent = backend.requests[-1]
    assert sent["messages"] == [
        {"role": "system", "content": "Short."},
        {"role": "user", "content": "prove it"},
    ]
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}
    payload = {"model": "auto", "prompt": "prove it", "max_tokens": 3}
    status, headers, body = await post_api(url, "/v1/completions", orjson.dumps(payload))
    assert status == 200 and headers["x-semrouter-model"] == "reasoner"
    assert body["path"] == "/v1/completions"
    assert body["echo"] == {
        "model": "qwen3-id",
        "prompt": "prove it",
        "max_tokens": 3,
        "chat_template_kwargs": {"enable_thinking": True},
    }
    payload = {"model": "whatever", "input": ["a", "b"]}
    status, headers, body = await post_api(url, "/v1/embeddings", orjson.dumps(payload))
    assert status == 200 and headers["x-semrouter-model"] == "embedder"
    assert body == {"path": "/v1/embeddings", "echo": {"model": "embed-id", "input": ["a", "b"]}}


async def test_embeddings_without_a_backend_is_404() -> None:
    async with api_router() as (url, _):
        payload = orjson.dumps({"model": "x", "input": "hi"})
        status, _, body = await post_api(url, "/v1/embeddings", payload)
    assert status == 404
    assert (
        body["error"]["message"] == "No embedding backend is configured (router.embeddings_model)"
    )


def test_embeddings_model_must_exist() -> None:
    from semrouter.config import ConfigError, parse_config
    from tests.conftest import minimal_config

    with pytest.raises(ConfigError, match=r"router\.embeddings_model: unknown model 'nope'"):
        parse_config(minimal_config(router={"embeddings_model": "nope"}), env={})


FIELDS = ("input", "instructions", "tools", "tool_choice", "reasoning", "text")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1))
def test_any_request_is_translated_or_refused_with_a_4xx(fields: dict[str, Any]) -> None:
    body = {"model": "auto", "input": "hi", **fields}
    try:
        chat_request_from_body(to_chat(body, LIMITS), LIMITS)
    except RouterError as error:
        assert error.status in (400, 413)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.lists(json_values, max_size=6))
def test_any_backend_answer_gives_valid_json_or_events(completion: Any, chunks: list[Any]) -> None:
    whole = ResponsesTranslator(REQUEST, LIMITS)
    whole.begin(200, "application/json")
    assert isinstance(orjson.loads(whole.feed(orjson.dumps(completion)) + whole.finish()), dict)
    streamed = ResponsesTranslator(REQUEST, LIMITS)
    streamed.begin(200, "text/event-stream")
    raw = stream(streamed, [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks])
    assert events(raw)[-1][0] in ("response.completed", "response.incomplete", "error")
