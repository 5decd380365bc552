"""Anthropic's Messages API (`POST /v1/messages`) on OpenAI-compatible backends.

Request → chat completions: `system` (a string or text blocks) becomes the first system message;
each message's content blocks become chat content (text, images as `image_url`), an assistant's
`tool_use` blocks its `tool_calls` (input as JSON arguments), a user's `tool_result` blocks `tool`
messages (before the rest of that turn, in order); `thinking` and `redacted_thinking` blocks
are dropped (an OpenAI backend cannot take them back). `tools` become function tools
(`input_schema` → `parameters`), `tool_choice` auto/any/tool/none → auto/required/the
function/none (`disable_parallel_tool_use` → `parallel_tool_calls: false`), `stop_sequences`
→ `stop`, `metadata.user_id` → `user`; `max_tokens` (required), `temperature`, `top_p`, `top_k`
and `stream` keep their names (a stream asks for usage). `thinking: {type: enabled,
budget_tokens: N}` asks for reasoning: `reasoning_effort` low below 4,096 tokens, medium below
16,384, high from there (what a model named directly gets; with `model: auto` the routing
decision sets reasoning, as for any chat request, in the chosen model's family dialect).

Response ← chat completion: `reasoning_content` becomes a `thinking` block, the text a `text`
block, each tool call a `tool_use` block; finish reasons stop/length/tool_calls/content_filter
→ stop_reason end_turn/max_tokens/tool_use/refusal; usage prompt/completion tokens →
input/output tokens. A stream becomes Anthropic's event sequence: `message_start`, per block
`content_block_start`, `content_block_delta` (text_delta, thinking_delta, input_json_delta) and
`content_block_stop`, then `message_delta` (stop reason, usage) and `message_stop`; a backend
failure mid-stream an `error` event. Errors on the route use Anthropic's shape,
`{"type": "error", "error": {"type": ..., "message": ...}}`, with the router's status.
"""

from __future__ import annotations

from typing import Any

import orjson

from semrouter.apis.translation import (
    ChatTranslator,
    finish_reason,
    first_choice,
    member,
    sse,
    tool_arguments,
    tool_calls,
)
from semrouter.config.schema import LimitsConfig
from semrouter.pipeline.api import ClientApi
from semrouter.pipeline.errors import RouterError, bad_request, too_large
from semrouter.stages import ResponseRewriter

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}
EFFORT_BUDGETS = ((4096, "low"), (16384, "medium"))
"""Below each budget (tokens), the effort a `thinking.budget_tokens` asks for; above: high."""
_PASSED = ("max_tokens", "temperature", "top_p", "top_k", "stream")


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_object(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def _invalid(message: str) -> RouterError:
    return bad_request(message, "invalid_request")


def _blocks(value: object, where: str, limits: LimitsConfig) -> list[dict[str, Any]]:
    """Content as a list of typed blocks (a string is one text block), within the part limit."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if not isinstance(value, list):
        raise _invalid(f"{where} must be a string or a list of content blocks")
    if len(value) > limits.max_content_parts:
        raise too_large(
            f"{where} has {len(value)} blocks; the limit is {limits.max_content_parts}",
            "too_many_content_parts",
        )
    for i, block in enumerate(value):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _invalid(f"{where}[{i}] must be an object with a 'type'")
    return value


def _text(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _invalid(f"{where}.text must be a string")
    return text


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _invalid(f"{where}.source must be an object")
    if source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not isinstance(data, str):
            raise _invalid(f"{where}.source needs media_type and data strings")
        url = f"data:{media};base64,{data}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise _invalid(f"{where}.source.type must be 'base64' or 'url'")
    return {"type": "image_url", "image_url": {"url": url}}


def _system(value: object, limits: LimitsConfig) -> str:
    blocks = _blocks(value, "system", limits)
    parts = []
    for i, block in enumerate(blocks):
        if block["type"] != "text":
            raise _invalid(f"system[{i}].type must be 'text'")
        parts.append(_text(block, f"system[{i}]"))
    return "\n\n".join(parts)


def _tool_result(block: dict[str, Any], where: str, limits: LimitsConfig) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(f"{where}.tool_use_id must be a non-empty string")
    content = block.get("content", "")
    parts = []
    for j, part in enumerate(_blocks(content, f"{where}.content", limits)):
        if part["type"] != "text":
            raise _invalid(f"{where}.content[{j}]: only text blocks are supported in tool results")
        parts.append(_text(part, f"{where}.content[{j}]"))
    text = "\n".join(parts)
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _user(blocks: list[dict[str, Any]], where: str, limits: LimitsConfig) -> list[dict[str, Any]]:
    """A user turn: its tool results first (each a `tool` message), then its other content."""
    results, content = [], []
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        kind = block["type"]
        if kind == "text":
            content.append({"type": "text", "text": _text(block, at)})
        elif kind == "image":
            content.append(_image(block, at))
        elif kind == "tool_result":
            results.append(_tool_result(block, at, limits))
        else:
            raise _invalid(f"{at}.type '{kind}' is not supported in a user turn")
    if content and all(part["type"] == "text" for part in content):
        merged: list[dict[str, Any]] = [
            {"role": "user", "content": "\n".join(p["text"] for p in content)}
        ]
    else:
        merged = [{"role": "user", "content": content}] if content else []
    return results + merged


def _assistant(blocks: list[dict[str, Any]], where: str) -> dict[str, Any]:
    texts, calls = [], []
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        kind = block["type"]
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str) or not name:
                raise _invalid(f"{at} needs an 'id' and a 'name'")
            arguments = block.get("input", {})
            if not isinstance(arguments, dict):
                raise _invalid(f"{at}.input must be an object")
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
                }
            )
        elif kind not in ("thinking", "redacted_thinking"):
            raise _invalid(f"{at}.type '{kind}' is not supported in an assistant turn")
    # "" rather than null beside tool calls: some servers (llama.cpp's) refuse a null content.
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: object) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _invalid("'tools' must be a list")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise _invalid(f"tools[{i}] must be an object with a non-empty 'name'")
        if tool.get("type", "custom") != "custom":
            raise _invalid(f"tools[{i}]: server tools ('{tool['type']}') are not supported")
        schema = tool.get("input_schema", {"type": "object"})
        if not isinstance(schema, dict):
            raise _invalid(f"tools[{i}].input_schema must be an object")
        function: dict[str, Any] = {"name": tool["name"], "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: object, chat: dict[str, Any]) -> None:
    if not isinstance(choice, dict) or not isinstance(choice.get("type"), str):
        raise _invalid("'tool_choice' must be an object with a 'type'")
    kind = choice["type"]
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise _invalid("tool_choice.name must be a string")
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif kind in ("auto", "any", "none"):
        chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    else:
        raise _invalid("tool_choice.type must be one of auto, any, tool, none")
    if choice.get("disable_parallel_tool_use") is True:
        chat["parallel_tool_calls"] = False


def _thinking(thinking: object, chat: dict[str, Any]) -> None:
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
        raise _invalid("thinking.type must be 'enabled' or 'disabled'")
    if thinking["type"] == "disabled":
        return
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise _invalid("thinking.budget_tokens must be a positive integer")
    chat["reasoning_effort"] = next((e for b, e in EFFORT_BUDGETS if budget < b), "high")


def to_chat(body: dict[str, Any], limits: LimitsConfig) -> dict[str, Any]:
    """A Messages request as a chat-completions body (see the module docstring)."""
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise _invalid("'model' is required and must be a non-empty string")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("'max_tokens' is required and must be a positive integer")
    if not isinstance(messages, list) or not messages:
        raise _invalid("'messages' is required and must be a non-empty list")
    chat: dict[str, Any] = {"model": model}
    chat.update((key, body[key]) for key in _PASSED if key in body)
    turns: list[dict[str, Any]] = []
    if "system" in body:
        turns.append({"role": "system", "content": _system(body["system"], limits)})
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _invalid(f"{where} must be an object with role 'user' or 'assistant'")
        blocks = _blocks(message.get("content"), f"{where}.content", limits)
        if message["role"] == "user":
            turns.extend(_user(blocks, where, limits))
        else:
            turns.append(_assistant(blocks, where))
    chat["messages"] = turns
    if "stop_sequences" in body:
        stop = body["stop_sequences"]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _invalid("'stop_sequences' must be a list of strings")
        chat["stop"] = stop
    if "tools" in body:
        chat["tools"] = _tools(body["tools"])
    if "tool_choice" in body:
        _tool_choice(body["tool_choice"], chat)
    if "thinking" in body:
        _thinking(body["thinking"], chat)
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        chat["user"] = metadata["user_id"]
    if chat.get("stream") is True:
        chat["stream_options"] = {"include_usage": True}
    return chat


def _usage(usage: object) -> dict[str, int]:
    usage = usage if isinstance(usage, dict) else {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return {
        "input_tokens": prompt if isinstance(prompt, int) else 0,
        "output_tokens": completion if isinstance(completion, int) else 0,
    }


def _message_id(completion: dict[str, Any]) -> str:
    return f"msg_{completion.get('id') or 'semrouter'}"


def from_chat(completion: dict[str, Any]) -> dict[str, Any]:
    """A chat completion as a Messages response (see the module docstring)."""
    choice = first_choice(completion)
    message = member(choice, "message")
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in tool_calls(message):
        function = member(call, "function")
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": tool_arguments(function.get("arguments")),
            }
        )
    return {
        "id": _message_id(completion),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model") or "",
        "content": content,
        "stop_reason": STOP_REASONS.get(finish_reason(choice) or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": _usage(completion.get("usage")),
    }


class MessagesTranslator(ChatTranslator):
    """A chat completion (JSON or stream) on its way back as a Messages response."""

    def __init__(self, limits: LimitsConfig) -> None:
        super().__init__(limits)
        self.started = False
        self.block = -1  # index of the open content block (-1: none yet)
        self.open_kind: str | None = None  # 'thinking', 'text', or a tool call's index
        self.stop_reason = "end_turn"
        self.usage = {"input_tokens": 0, "output_tokens": 0}

    def completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        return from_chat(completion)

    def error(self, status: int, message: str) -> bytes:
        return orjson.dumps(error_object(status, message))

    def stream_error(self, message: str) -> bytes:
        return sse("error", error_object(502, message))

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self.started = True
        message: dict[str, Any] = {
            "id": _message_id(chunk),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model") or "",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": dict(self.usage),
        }
        return sse("message_start", {"type": "message_start", "message": message})

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.block += 1
        self.open_kind = kind
        start = {"type": "content_block_start", "index": self.block, "content_block": block}
        return out + sse("content_block_start", start)

    def _close(self) -> bytes:
        if self.open_kind is None:
            return b""
        self.open_kind = None
        return sse("content_block_stop", {"type": "content_block_stop", "index": self.block})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        event = {"type": "content_block_delta", "index": self.block, "delta": delta}
        return sse("content_block_delta", event)

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self.started else self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self.usage = _usage(chunk["usage"])
        choice = first_choice(chunk)
        delta = member(choice, "delta")
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            if self.open_kind != "thinking":
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out += self._delta({"type": "thinking_delta", "thinking": reasoning})
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self.open_kind != "text":
                out += self._open("text", {"type": "text", "text": ""})
            out += self._delta({"type": "text_delta", "text": text})
        for call in tool_calls(delta):
            out += self._tool_call(call)
        if (reason := finish_reason(choice)) is not None:
            self.stop_reason = STOP_REASONS.get(reason, "end_turn")
        return out

    def _tool_call(self, call: dict[str, Any]) -> bytes:
        out = b""
        function = member(call, "function")
        kind = f"tool:{call.get('index', 0)}"
        if self.open_kind != kind:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": {},
            }
            out += self._open(kind, block)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out += self._delta({"type": "input_json_delta", "partial_json": arguments})
        return out

    def stream_end(self) -> bytes:
        out = b"" if self.started else self._start({})
        out += self._close()
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
            "usage": self.usage,
        }
        return out + sse("message_delta", delta) + sse("message_stop", {"type": "message_stop"})


class AnthropicMessages(ClientApi):
    name = "anthropic"
    path = "/v1/messages"

    def translate(self, body: dict[str, Any], limits: LimitsConfig) -> dict[str, Any]:
        return to_chat(body, limits)

    def rewriter(self, request: dict[str, Any], limits: LimitsConfig) -> ResponseRewriter:
        return MessagesTranslator(limits)

    def error_body(self, error: RouterError) -> bytes:
        return orjson.dumps(error_object(error.status, error.message))
