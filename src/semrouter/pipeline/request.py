"""Parsing a chat-completions request: raw bytes in, a validated ChatRequest out (or a 400)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from semrouter.pipeline.errors import RouterError, bad_request, body_too_large

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(slots=True)
class ChatRequest:
    """A parsed request. `body` is the client's JSON object; rewriting works on a copy."""

    body: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]
    stream: bool

    def routing_text(self) -> str:
        """What the classifiers read: the last user turn (the request's current intent)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message_text(message)
        return message_text(self.messages[-1]) if self.messages else ""

    def conversation_text(self) -> str:
        return "\n".join(message_text(m) for m in self.messages)


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _check_message(i: int, message: object) -> None:
    if not isinstance(message, dict):
        raise bad_request(f"messages[{i}] must be an object", "invalid_messages")
    role = message.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise bad_request(
            f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}", "invalid_messages"
        )
    content = message.get("content")
    if content is None:
        if role in ("assistant", "tool", "function"):
            return
        raise bad_request(f"messages[{i}].content is required", "invalid_messages")
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad_request(
                    f"messages[{i}].content[{j}] must be an object with a 'type'",
                    "invalid_messages",
                )
    elif not isinstance(content, str):
        raise bad_request(
            f"messages[{i}].content must be a string or a list of parts", "invalid_messages"
        )


def parse_body(raw: bytes, max_bytes: int) -> dict[str, Any]:
    if len(raw) > max_bytes:
        raise body_too_large(len(raw), max_bytes)
    if not raw:
        raise bad_request("Request body is empty; expected a JSON object", "invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Request body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object", "invalid_json")
    return body


def parse_chat_request(raw: bytes, max_bytes: int) -> ChatRequest:
    body = parse_body(raw, max_bytes)
    return chat_request_from_body(body)


def chat_request_from_body(body: dict[str, Any]) -> ChatRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required and must be a non-empty string", "invalid_model")
    messages = body.get("messages")
    if messages is None:
        raise bad_request("'messages' is required", "missing_messages")
    if not isinstance(messages, list):
        raise bad_request("'messages' must be a list", "invalid_messages")
    if not messages:
        raise bad_request("'messages' must not be empty", "invalid_messages")
    for i, message in enumerate(messages):
        _check_message(i, message)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean", "invalid_stream")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise bad_request(f"'{key}' must be a positive integer", f"invalid_{key}")
    return ChatRequest(body=body, model=model, messages=messages, stream=stream)


def classify_input(raw: bytes, max_bytes: int) -> ChatRequest:
    """The /api/v1/classify body: {"text": ...} or {"messages": [...]}."""
    body = parse_body(raw, max_bytes)
    text = body.get("text")
    if text is not None:
        if not isinstance(text, str):
            raise bad_request("'text' must be a string", "invalid_text")
        return ChatRequest(
            body={}, model="", messages=[{"role": "user", "content": text}], stream=False
        )
    if "messages" not in body:
        raise bad_request("Give 'text' or 'messages'", "missing_input")
    return chat_request_from_body({"model": "auto", **body, "stream": False})


__all__ = [
    "ChatRequest",
    "RouterError",
    "chat_request_from_body",
    "classify_input",
    "message_text",
    "parse_body",
    "parse_chat_request",
]
