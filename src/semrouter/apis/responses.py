"""OpenAI's Responses API (`POST /v1/responses`), the stateless subset, on chat backends.

Request → chat completions: `instructions` becomes the first system message; `input` (a string:
one user turn; or a list of items) becomes the messages: message items (role user, assistant,
system or developer; content a string or input_text / output_text / input_image parts),
`function_call` items an assistant's `tool_calls` (consecutive ones in one message),
`function_call_output` items `tool` messages; `reasoning` items are dropped. `tools` (function
tools only) become chat function tools, `tool_choice` keeps its meaning, `reasoning.effort` →
`reasoning_effort` (what a named model gets; with `model: auto` the routing decision sets
reasoning), `max_output_tokens` → `max_tokens`, `text.format` json_schema / json_object →
`response_format`; `temperature`, `top_p`, `parallel_tool_calls`, `user` and `stream` keep their
names. The router keeps no state: `previous_response_id` is refused with a 400 (send the whole
conversation as `input`), and `store` is ignored (nothing is stored).

Response ← chat completion: a `response` object whose `output` holds a `reasoning` item (from
`reasoning_content`), a `message` item with one `output_text` part, and a `function_call` item
per tool call; finish reason `length` makes it `incomplete` (max_output_tokens). A stream
becomes the Responses events: `response.created`, `response.in_progress`, per item
`response.output_item.added` / `.done`, `response.content_part.added` / `.done`,
`response.output_text.delta` / `.done`, `response.reasoning_text.delta` / `.done`,
`response.function_call_arguments.delta` / `.done`, then `response.completed` (or
`response.incomplete`); a backend failure mid-stream an `error` event. Errors keep OpenAI's
error shape, as on every OpenAI route.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from semrouter.apis.translation import (
    ChatTranslator,
    finish_reason,
    first_choice,
    member,
    sse,
    tool_calls,
)
from semrouter.config.schema import LimitsConfig
from semrouter.pipeline.api import ClientApi
from semrouter.pipeline.errors import RouterError, bad_request, too_large
from semrouter.stages import ResponseRewriter

_ROLES = frozenset({"user", "assistant", "system", "developer"})
_PASSED = ("temperature", "top_p", "parallel_tool_calls", "user", "stream")
_ECHOED = ("instructions", "temperature", "top_p", "max_output_tokens", "user")


def _invalid(message: str, code: str = "invalid_request") -> RouterError:
    return bad_request(message, code)


def _part(part: object, where: str) -> dict[str, Any]:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise _invalid(f"{where} must be an object with a 'type'")
    kind = part["type"]
    if kind in ("input_text", "output_text", "text"):
        if not isinstance(part.get("text"), str):
            raise _invalid(f"{where}.text must be a string")
        return {"type": "text", "text": part["text"]}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        return {"type": "image_url", "image_url": {"url": part["image_url"]}}
    raise _invalid(f"{where}.type '{kind}' is not supported (input_text, input_image)")


def _message(item: dict[str, Any], where: str, limits: LimitsConfig) -> dict[str, Any]:
    role = item.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise _invalid(f"{where}.role must be one of {', '.join(sorted(_ROLES))}")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _invalid(f"{where}.content must be a string or a list of parts")
    if len(content) > limits.max_content_parts:
        raise too_large(
            f"{where}.content has {len(content)} parts; the limit is {limits.max_content_parts}",
            "too_many_content_parts",
        )
    parts = [_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "\n".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or (key != "arguments" and not value):
        raise _invalid(f"{where}.{key} must be a non-empty string")
    return value


def _items(items: list[object], limits: LimitsConfig) -> list[dict[str, Any]]:
    if len(items) > limits.max_messages:
        raise too_large(
            f"'input' has {len(items)} items; the limit is {limits.max_messages}",
            "too_many_messages",
        )
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _invalid(f"{where} must be an object", "invalid_input")
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, where, limits))
        elif kind == "function_call":
            call = {
                "id": _string(item, "call_id", where),
                "type": "function",
                "function": {
                    "name": _string(item, "name", where),
                    "arguments": _string(item, "arguments", where),
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, str):
                output = orjson.dumps(output).decode()
            call_id = _string(item, "call_id", where)
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind != "reasoning":
            raise _invalid(f"{where}.type '{kind}' is not supported", "invalid_input")
    return messages


def _tools(tools: object) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _invalid("'tools' must be a list", "invalid_tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _invalid(f"tools[{i}]: only function tools are supported", "invalid_tools")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid(f"tools[{i}].name must be a non-empty string", "invalid_tools")
        function = {"name": name, "parameters": tool.get("parameters") or {"type": "object"}}
        for key in ("description", "strict"):
            if key in tool:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: object) -> object:
    if choice in ("auto", "none", "required"):
        return choice
    if (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("name"), str)
    ):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _invalid("'tool_choice' must be auto, none, required or {type: function, name}")


def _text_format(text: object) -> dict[str, Any] | None:
    form = text.get("format") if isinstance(text, dict) else None
    if form is None:
        return None
    if not isinstance(form, dict) or form.get("type") not in ("text", "json_object", "json_schema"):
        raise _invalid("text.format.type must be text, json_object or json_schema")
    if form["type"] == "text":
        return None
    if form["type"] == "json_object":
        return {"type": "json_object"}
    schema = {k: form[k] for k in ("name", "schema", "strict", "description") if k in form}
    return {"type": "json_schema", "json_schema": schema}


def to_chat(body: dict[str, Any], limits: LimitsConfig) -> dict[str, Any]:
    """A Responses request as a chat-completions body (see the module docstring)."""
    if body.get("previous_response_id") is not None:
        raise _invalid(
            "previous_response_id is not supported: semrouter keeps no responses (it is a "
            "stateless router); send the whole conversation as 'input'",
            "previous_response_not_supported",
        )
    model, source = body.get("model"), body.get("input")
    if not isinstance(model, str) or not model:
        raise _invalid("'model' is required and must be a non-empty string", "invalid_model")
    chat: dict[str, Any] = {"model": model}
    chat.update((key, body[key]) for key in _PASSED if key in body)
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _invalid("'instructions' must be a string")
        messages.append({"role": "system", "content": instructions})
    if isinstance(source, str):
        messages.append({"role": "user", "content": source})
    elif isinstance(source, list) and source:
        messages.extend(_items(source, limits))
    else:
        raise _invalid(
            "'input' is required: a string or a non-empty list of items", "invalid_input"
        )
    chat["messages"] = messages
    if "max_output_tokens" in body:
        chat["max_tokens"] = body["max_output_tokens"]
    if "tools" in body:
        chat["tools"] = _tools(body["tools"])
    if "tool_choice" in body:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        if reasoning["effort"] not in ("minimal", "low", "medium", "high"):
            raise _invalid("reasoning.effort must be minimal, low, medium or high")
        chat["reasoning_effort"] = (
            "low" if reasoning["effort"] == "minimal" else reasoning["effort"]
        )
    if (response_format := _text_format(body.get("text"))) is not None:
        chat["response_format"] = response_format
    if chat.get("stream") is True:
        chat["stream_options"] = {"include_usage": True}
    return chat


def _usage(usage: object) -> dict[str, Any]:
    counts = usage if isinstance(usage, dict) else {}
    prompt, completion = counts.get("prompt_tokens"), counts.get("completion_tokens")
    prompt = prompt if isinstance(prompt, int) else 0
    completion = completion if isinstance(completion, int) else 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


class ResponseShape:
    """The parts of a `response` object that echo the client's request, not the completion."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.created_at = int(time.time())

    def response(
        self,
        response_id: str,
        model: str,
        output: list[dict[str, Any]],
        status: str,
        usage: dict[str, Any] | None,
    ) -> dict[str, Any]:
        request = self.request
        reasoning = request.get("reasoning")
        effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        return {
            "id": response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete"
            else None,
            "model": model,
            "output": output,
            **{key: request.get(key) for key in _ECHOED},
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {"effort": effort, "summary": None},
            "store": False,
            "text": {"format": {"type": "text"}},
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": request.get("tools") or [],
            "truncation": "disabled",
            "metadata": {},
            "usage": usage,
        }


def _response_id(completion: dict[str, Any]) -> str:
    return f"resp_{completion.get('id') or 'semrouter'}"


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}] if text else [],
    }


def _reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": item_id,
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def _call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def from_chat(completion: dict[str, Any], shape: ResponseShape) -> dict[str, Any]:
    """A chat completion as a `response` object (see the module docstring)."""
    response_id = _response_id(completion)
    choice = first_choice(completion)
    message = member(choice, "message")
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        output.append(_reasoning_item(f"rs_{response_id}", reasoning))
    text = message.get("content")
    if isinstance(text, str) and text:
        output.append(_message_item(f"msg_{response_id}", text))
    for i, call in enumerate(tool_calls(message)):
        function = member(call, "function")
        arguments = function.get("arguments")
        output.append(
            _call_item(
                f"fc_{response_id}_{i}",
                call.get("id") or "",
                function.get("name") or "",
                arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode(),
                "completed",
            )
        )
    status = "incomplete" if finish_reason(choice) == "length" else "completed"
    model = completion.get("model") or ""
    return shape.response(response_id, model, output, status, _usage(completion.get("usage")))


class _Item:
    """One output item of a stream as it is built: its kind, id and text so far."""

    def __init__(self, index: int, kind: str, item_id: str) -> None:
        self.index = index
        self.kind = kind
        self.id = item_id
        self.text = ""
        self.call_id = ""
        self.name = ""

    def done(self) -> dict[str, Any]:
        if self.kind == "message":
            return _message_item(self.id, self.text)
        if self.kind == "reasoning":
            return _reasoning_item(self.id, self.text)
        return _call_item(self.id, self.call_id, self.name, self.text, "completed")


class ResponsesTranslator(ChatTranslator):
    """A chat completion (JSON or stream) on its way back as a Responses response."""

    def __init__(self, request: dict[str, Any], limits: LimitsConfig) -> None:
        super().__init__(limits)
        self.shape = ResponseShape(request)
        self.sequence = 0
        self.response_id = "resp_semrouter"
        self.model = ""
        self.started = False
        self.items: list[_Item] = []
        self.open: _Item | None = None
        self.open_key = ""  # 'reasoning', 'message' or the tool call's index
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        return from_chat(completion, self.shape)

    def error(self, status: int, message: str) -> bytes:
        code = "backend_error" if status >= 500 else "invalid_request"
        kind = "api_error" if status >= 500 else "invalid_request_error"
        return orjson.dumps({"error": {"message": message, "type": kind, "code": code}})

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(kind, data)

    def stream_error(self, message: str) -> bytes:
        return self._event("error", code="backend_error", message=message, param=None)

    def _snapshot(self, status: str) -> dict[str, Any]:
        output = [item.done() for item in self.items] if status != "in_progress" else []
        usage = self.usage if status != "in_progress" else None
        return self.shape.response(self.response_id, self.model, output, status, usage)

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self.started = True
        self.response_id = _response_id(chunk)
        self.model = chunk.get("model") or ""
        created = self._event("response.created", response=self._snapshot("in_progress"))
        return created + self._event("response.in_progress", response=self._snapshot("in_progress"))

    def _open_item(self, key: str, kind: str, prefix: str) -> bytes:
        out = self._close_item()
        item = _Item(len(self.items), kind, f"{prefix}_{self.response_id}_{len(self.items)}")
        self.items.append(item)
        self.open, self.open_key = item, key
        if kind == "message":
            added = _message_item(item.id, "", "in_progress")
        elif kind == "reasoning":
            added = {**_reasoning_item(item.id, ""), "content": []}
        else:
            return out
        out += self._event("response.output_item.added", output_index=item.index, item=added)
        if kind == "message":
            part = {"type": "output_text", "text": "", "annotations": []}
            out += self._event(
                "response.content_part.added",
                item_id=item.id,
                output_index=item.index,
                content_index=0,
                part=part,
            )
        return out

    def _close_item(self) -> bytes:
        item = self.open
        if item is None:
            return b""
        self.open, self.open_key = None, ""
        at = {"item_id": item.id, "output_index": item.index}
        if item.kind == "message":
            out = self._event("response.output_text.done", **at, content_index=0, text=item.text)
            part = {"type": "output_text", "text": item.text, "annotations": []}
            out += self._event("response.content_part.done", **at, content_index=0, part=part)
        elif item.kind == "reasoning":
            out = self._event("response.reasoning_text.done", **at, content_index=0, text=item.text)
        else:
            out = self._event("response.function_call_arguments.done", **at, arguments=item.text)
        return out + self._event(
            "response.output_item.done", output_index=item.index, item=item.done()
        )

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self.started else self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self.usage = _usage(chunk["usage"])
        choice = first_choice(chunk)
        delta = member(choice, "delta")
        reasoning = delta.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            if self.open_key != "reasoning":
                out += self._open_item("reasoning", "reasoning", "rs")
            out += self._text_delta("response.reasoning_text.delta", reasoning)
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self.open_key != "message":
                out += self._open_item("message", "message", "msg")
            out += self._text_delta("response.output_text.delta", text)
        for call in tool_calls(delta):
            out += self._tool_call(call)
        if (reason := finish_reason(choice)) is not None:
            self.finish_reason = reason
        return out

    def _text_delta(self, kind: str, text: str) -> bytes:
        item = self.open
        assert item is not None
        item.text += text
        return self._event(
            kind, item_id=item.id, output_index=item.index, content_index=0, delta=text
        )

    def _tool_call(self, call: dict[str, Any]) -> bytes:
        out = b""
        function = member(call, "function")
        key = f"tool:{call.get('index', 0)}"
        if self.open_key != key:
            out += self._open_item(key, "function_call", "fc")
            item = self.open
            assert item is not None
            item.call_id, item.name = call.get("id") or "", function.get("name") or ""
            added = _call_item(item.id, item.call_id, item.name, "", "in_progress")
            out += self._event("response.output_item.added", output_index=item.index, item=added)
        item = self.open
        assert item is not None
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.text += arguments
            out += self._event(
                "response.function_call_arguments.delta",
                item_id=item.id,
                output_index=item.index,
                delta=arguments,
            )
        return out

    def stream_end(self) -> bytes:
        out = b"" if self.started else self._start({})
        out += self._close_item()
        status = "incomplete" if self.finish_reason == "length" else "completed"
        return out + self._event(f"response.{status}", response=self._snapshot(status))


class Responses(ClientApi):
    name = "responses"
    path = "/v1/responses"

    def translate(self, body: dict[str, Any], limits: LimitsConfig) -> dict[str, Any]:
        return to_chat(body, limits)

    def rewriter(self, request: dict[str, Any], limits: LimitsConfig) -> ResponseRewriter:
        return ResponsesTranslator(request, limits)
