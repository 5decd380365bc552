"""The Anthropic Messages translation, field by field: request → chat, chat → Messages (JSON
and the SSE event sequence), and the route's error shape through `semrouter serve`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semrouter.apis.anthropic import AnthropicMessages, MessagesTranslator, from_chat, to_chat
from semrouter.config.schema import LimitsConfig
from semrouter.extproc.server import ExtProcServicer
from semrouter.pipeline.errors import RouterError
from semrouter.pipeline.flow import Pipeline
from semrouter.pipeline.request import chat_request_from_body
from semrouter.pipeline.router import Router
from tests.unit.apis_helpers import api_router, chunk, events, json_values, post_api, stream
from tests.unit.test_extproc import (
    drive,
    make_config,
    request_body,
    request_headers,
    response_body,
    response_headers,
)

LIMITS = LimitsConfig()


@pytest.fixture
async def router_url() -> AsyncIterator[str]:
    async with api_router() as (url, _):
        yield url


def test_request_translates_every_field() -> None:
    body = {
        "model": "auto",
        "max_tokens": 300,
        "system": [
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Be kind."},
        ],
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "use the tool", "signature": "x"},
                    {"type": "text", "text": "Let me check."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "timeout"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "weather",
                "description": "Current weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "metadata": {"user_id": "u-42"},
        "thinking": {"type": "enabled", "budget_tokens": 8000},
        "stream": True,
    }
    assert to_chat(body, LIMITS) == {
        "model": "auto",
        "max_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [
            {"role": "system", "content": "You are terse.\n\nBe kind."},
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C, sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: timeout"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "stop": ["\n\nHuman:"],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "description": "Current weather",
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "reasoning_effort": "medium",
        "user": "u-42",
    }


def test_images_tool_choice_and_thinking_budgets() -> None:
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    body = {
        "model": "fast",
        "max_tokens": 10,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "source": image},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                ],
            }
        ],
        "tool_choice": {"type": "tool", "name": "weather"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    }
    chat = to_chat(body, LIMITS)
    assert chat["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
            ],
        }
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert chat["reasoning_effort"] == "low"
    assert "stream_options" not in chat
    for budget, effort in ((4095, "low"), (4096, "medium"), (16383, "medium"), (16384, "high")):
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        assert to_chat(body, LIMITS)["reasoning_effort"] == effort
    body["thinking"] = {"type": "disabled"}
    assert "reasoning_effort" not in to_chat(body, LIMITS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": None}, "'max_tokens' is required"),
        ({"max_tokens": True}, "'max_tokens' is required"),
        ({"model": ""}, "'model' is required"),
        ({"messages": []}, "'messages' is required"),
        ({"messages": [{"role": "system", "content": "x"}]}, "role 'user' or 'assistant'"),
        ({"messages": [{"role": "user", "content": 5}]}, "must be a string or a list"),
        ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "with a 'type'"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "'document' is not supported",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
            "tool_use_id must be a non-empty string",
        ),
        ({"system": [{"type": "image"}]}, "system[0].type must be 'text'"),
        ({"tools": [{"type": "web_search_20250305", "name": "s"}]}, "server tools"),
        ({"tools": {"name": "x"}}, "'tools' must be a list"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type must be"),
        ({"thinking": {"type": "enabled"}}, "budget_tokens must be a positive integer"),
        ({"stop_sequences": "STOP"}, "'stop_sequences' must be a list of strings"),
    ],
)
def test_bad_requests_are_400s(change: dict[str, Any], message: str) -> None:
    body = {"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    body.update(change)
    with pytest.raises(RouterError) as raised:
        to_chat({k: v for k, v in body.items() if v is not None}, LIMITS)
    assert raised.value.status == 400
    assert message in raised.value.message


def test_content_blocks_are_bounded() -> None:
    limits = LimitsConfig(max_content_parts=3)
    blocks = [{"type": "text", "text": "x"}] * 4
    body = {"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": blocks}]}
    with pytest.raises(RouterError) as raised:
        to_chat(body, limits)
    assert (raised.value.status, raised.value.code) == (413, "too_many_content_parts")
    nested = [{"type": "tool_result", "tool_use_id": "t", "content": blocks}]
    body["messages"] = [{"role": "user", "content": nested}]
    with pytest.raises(RouterError) as raised:
        to_chat(body, limits)
    assert raised.value.status == 413


COMPLETION = {
    "id": "chatcmpl-7",
    "object": "chat.completion",
    "model": "smollm2",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "reasoning_content": "They want weather.",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "clock", "arguments": "not json"},
                    },
                ],
            },
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43},
}


def test_completion_becomes_a_message() -> None:
    assert from_chat(COMPLETION) == {
        "id": "msg_chatcmpl-7",
        "type": "message",
        "role": "assistant",
        "model": "smollm2",
        "content": [
            {"type": "thinking", "thinking": "They want weather.", "signature": ""},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "clock", "input": {"_raw": "not json"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 31, "output_tokens": 12},
    }


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reasons(finish: str | None, stop_reason: str) -> None:
    completion = {"choices": [{"message": {"content": "x"}, "finish_reason": finish}]}
    assert from_chat(completion)["stop_reason"] == stop_reason


def test_json_response_through_the_rewriter_in_pieces() -> None:
    rewriter = MessagesTranslator(LIMITS)
    assert rewriter.begin(200, "application/json") == "application/json"
    raw = orjson.dumps(COMPLETION)
    assert rewriter.feed(raw[:10]) == b"" and rewriter.feed(raw[10:]) == b""
    assert orjson.loads(rewriter.finish()) == from_chat(COMPLETION)


def test_backend_error_takes_the_anthropic_shape() -> None:
    rewriter = MessagesTranslator(LIMITS)
    rewriter.begin(400, "application/json")
    body = b'{"error": {"message": "context too long", "type": "invalid_request_error"}}'
    out = rewriter.feed(body) + rewriter.finish()
    assert orjson.loads(out) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "context too long"},
    }


def test_stream_becomes_the_event_sequence() -> None:
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing."}),
        chunk({"content": "Hi"}),
        chunk({"content": " there"}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Oslo"}'}}]}),
        chunk({}, "tool_calls"),
        chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 7}),
    ]
    rewriter = MessagesTranslator(LIMITS)
    assert rewriter.begin(200, "text/event-stream") == "text/event-stream"
    out = stream(rewriter, chunks)
    assert events(out) == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_chatcmpl-s",
                    "type": "message",
                    "role": "assistant",
                    "model": "m",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            },
        ),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "Think"}),
        delta(0, {"type": "thinking_delta", "thinking": "ing."}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        delta(1, {"type": "text_delta", "text": "Hi"}),
        delta(1, {"type": "text_delta", "text": " there"}),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "call_9", "name": "weather", "input": {}}),
        delta(2, {"type": "input_json_delta", "partial_json": '{"city":'}),
        delta(2, {"type": "input_json_delta", "partial_json": ' "Oslo"}'}),
        block_stop(2),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"input_tokens": 9, "output_tokens": 7},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def delta(index: int, value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": value})


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def test_stream_split_anywhere_gives_the_same_events() -> None:
    raw = b"".join([chunk({"content": "a\u00e9b"}), chunk({}, "length"), b"data: [DONE]\r\n\r\n"])
    whole = MessagesTranslator(LIMITS)
    whole.begin(200, "text/event-stream")
    expected = whole.feed(raw) + whole.finish()
    for cut in range(1, len(raw)):
        split = MessagesTranslator(LIMITS)
        split.begin(200, "text/event-stream")
        assert split.feed(raw[:cut]) + split.feed(raw[cut:]) + split.finish() == expected
    kinds = [name for name, _ in events(expected)]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert events(expected)[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_mid_stream_failure_is_an_error_event_and_nothing_after() -> None:
    rewriter = MessagesTranslator(LIMITS)
    rewriter.begin(200, "text/event-stream")
    failure = b'data: {"error": {"message": "backend went away", "type": "api_error"}}\n\n'
    out = rewriter.feed(chunk({"content": "Hi"}) + failure + b"data: [DONE]\n\n")
    out += rewriter.finish()
    assert events(out)[-1] == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": "backend went away"}},
    )
    assert [name for name, _ in events(out)].count("message_stop") == 0


def test_held_back_event_is_bounded() -> None:
    rewriter = MessagesTranslator(LimitsConfig(max_sse_event_bytes=1024))
    rewriter.begin(200, "text/event-stream")
    out = rewriter.feed(b"data: " + b"x" * 2000)
    assert events(out)[-1][0] == "error"
    assert len(rewriter._held) <= 2100
    assert rewriter.feed(b"more\n\n") == b"" and rewriter.finish() == b""


def test_oversized_json_is_refused_not_held() -> None:
    rewriter = MessagesTranslator(LimitsConfig(max_response_bytes=100))
    rewriter.begin(200, "application/json")
    out = rewriter.feed(b"{" + b" " * 200)
    assert json.loads(out)["type"] == "error"
    assert rewriter.finish() == b""


def test_error_body_shape() -> None:
    api = AnthropicMessages()
    for status, kind in (
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
    ):
        error = next(e for e in _errors() if e.status == status)
        assert orjson.loads(api.error_body(error)) == {
            "type": "error",
            "error": {"type": kind, "message": error.message},
        }


def _errors() -> list[RouterError]:
    from semrouter.pipeline.errors import ErrorKind

    return [RouterError(kind, f"{kind.name} happened") for kind in ErrorKind]


async def test_route_answers_bad_input_in_its_shape(router_url: str) -> None:
    for raw, status in (
        (b"not json", 400),
        (b"[]", 400),
        (orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}), 400),
        (orjson.dumps({"model": "nope", "max_tokens": 5, "messages": [_hi()]}), 404),
        (orjson.dumps({"model": "auto", "max_tokens": 5, "messages": [_hi()] * 5000}), 413),
        (b'{"model": "auto", "max_tokens": 5, "messages": ' + b"[" * 200 + b"]" * 200 + b"}", 400),
    ):
        got, _, body = await post_api(router_url, "/v1/messages", raw)
        assert got == status, body
        assert set(body) == {"type", "error"} and body["type"] == "error", body
        assert set(body["error"]) == {"type", "message"}
    got, _, body = await post_api(router_url, "/v1/messages", None, method="GET")
    assert got == 405 and body["error"]["type"] == "invalid_request_error"


async def test_route_translates_both_ways(router_url: str) -> None:
    payload = {"model": "auto", "max_tokens": 7, "system": "Brief.", "messages": [_hi()]}
    status, headers, body = await post_api(router_url, "/v1/messages", orjson.dumps(payload))
    assert status == 200 and headers["x-semrouter-model"] == "fast"
    assert body["type"] == "message" and body["content"][0]["type"] == "text"
    assert body["stop_reason"] == "end_turn"


def _hi() -> dict[str, Any]:
    return {"role": "user", "content": "hi"}


async def test_extproc_translates_both_ways_on_the_messages_path() -> None:
    servicer = ExtProcServicer(Pipeline(Router(make_config())))
    raw = orjson.dumps({"model": "auto", "max_tokens": 5, "system": "Brief.", "messages": [_hi()]})
    completion = orjson.dumps(COMPLETION)
    replies = await drive(
        servicer,
        [
            request_headers(path="/v1/messages"),
            request_body(raw),
            response_headers("application/json"),
            response_body(completion[:20], end=False),
            response_body(completion[20:], end=True),
        ],
    )
    common = replies[1].request_body.response
    sent = orjson.loads(common.body_mutation.body)
    assert sent["messages"] == [{"role": "system", "content": "Brief."}, _hi()]
    assert sent["max_tokens"] == 5 and sent["model"] == "fast-id"
    set_headers = {h.header.key: h.header.raw_value for h in common.header_mutation.set_headers}
    assert set_headers[":path"] == b"/v1/chat/completions"
    assert replies[3].response_body.response.body_mutation.body == b""
    body = replies[4].response_body.response.body_mutation.body
    assert orjson.loads(body) == from_chat(COMPLETION)


async def test_extproc_refuses_in_the_anthropic_shape() -> None:
    servicer = ExtProcServicer(Pipeline(Router(make_config())))
    replies = await drive(servicer, [request_headers(path="/v1/messages"), request_body(b"{")])
    answer = replies[-1].immediate_response
    assert answer.status.code == 400
    assert orjson.loads(answer.body)["error"]["type"] == "invalid_request_error"
    assert orjson.loads(answer.body)["type"] == "error"


FIELDS = ("messages", "system", "tools", "tool_choice", "thinking", "stop_sequences", "metadata")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1))
def test_any_request_is_translated_or_refused_with_a_4xx(fields: dict[str, Any]) -> None:
    body = {"model": "auto", "max_tokens": 5, "messages": [_hi()], **fields}
    try:
        chat_request_from_body(to_chat(body, LIMITS), LIMITS)
    except RouterError as error:
        assert error.status in (400, 413)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.lists(json_values, max_size=6))
def test_any_backend_answer_gives_valid_json_or_events(completion: Any, chunks: list[Any]) -> None:
    whole = MessagesTranslator(LIMITS)
    whole.begin(200, "application/json")
    out = whole.feed(orjson.dumps(completion)) + whole.finish()
    assert isinstance(orjson.loads(out), dict)
    streamed = MessagesTranslator(LIMITS)
    streamed.begin(200, "text/event-stream")
    raw = stream(streamed, [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks])
    assert events(raw)[-1][0] in ("message_stop", "error")
