"""The shared half of every response translation: reading a backend's chat completion.

`ChatTranslator` is a `ResponseRewriter` that reads what an OpenAI-compatible backend answers
to a chat request (a JSON chat completion, an error body, or an event stream of chunks ending
in `data: [DONE]`) and hands its parts to the API's own translation (anthropic.py,
responses.py). What it holds is bounded: a JSON body by `router.limits.max_response_bytes`, a
partial event by `max_sse_event_bytes`; past a bound the client gets the API's error instead.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import orjson

from semrouter.config.schema import LimitsConfig
from semrouter.stages import ResponseRewriter

EVENT_STREAM = "text/event-stream"
_DONE = b"[DONE]"


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One named server-sent event."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def error_message(body: bytes) -> str:
    """The message of a backend's error body (OpenAI's shape, or anything else: its text)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")[:1000] or "The backend answered an error"
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return body.decode("utf-8", "replace")[:1000]


def tool_arguments(raw: object) -> dict[str, Any]:
    """A tool call's `arguments` (a JSON string) as an object; what is not one is kept whole
    under `_raw` so nothing the model wrote is lost."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"_raw": raw}
    return parsed if isinstance(parsed, dict) else {"_raw": raw}


def member(value: object, key: str) -> dict[str, Any]:
    """value[key] when both are objects, else {}: a backend's odd JSON never raises."""
    inner = value.get(key) if isinstance(value, dict) else None
    return inner if isinstance(inner, dict) else {}


def first_choice(completion: dict[str, Any]) -> dict[str, Any]:
    choices = completion.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    return first if isinstance(first, dict) else {}


def tool_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def finish_reason(choice: dict[str, Any]) -> str | None:
    reason = choice.get("finish_reason")
    return reason if isinstance(reason, str) and reason else None


class ChatTranslator(ResponseRewriter):
    """Reads the backend's chat completion and lets the subclass say what the client gets."""

    def __init__(self, limits: LimitsConfig) -> None:
        self.max_body = limits.max_response_bytes
        self.max_event = limits.max_sse_event_bytes
        self.status = 200
        self.streaming = False
        self.ended = False
        self._held = bytearray()
        self._scanned = 0  # bytes of _held already read as lines (a stream)
        self._data: list[bytes] = []  # the data lines of the event being read

    def begin(self, status: int, content_type: str) -> str:
        self.status = status
        self.streaming = status < 400 and content_type.startswith(EVENT_STREAM)
        return EVENT_STREAM if self.streaming else "application/json"

    def feed(self, chunk: bytes) -> bytes:
        if self.ended:
            return b""
        self._held += chunk
        if not self.streaming:
            if len(self._held) > self.max_body:
                self.ended = True
                self._held = bytearray()
                return self.error(502, "The backend's response exceeds the router's limit")
            return b""
        out = bytearray()
        held = self._held
        while not self.ended and (newline := held.find(b"\n", self._scanned)) != -1:
            line = bytes(held[self._scanned : newline]).rstrip(b"\r")
            self._scanned = newline + 1
            if line.startswith(b"data:"):
                self._data.append(line[5:].strip())
            elif not line:  # an event ends
                del held[: self._scanned]
                self._scanned = 0
                out += self._backend_event(b"\n".join(self._data))
                self._data = []
        if not self.ended and len(held) > self.max_event:
            self.ended = True
            out += self.stream_error("The backend sent an event over the router's limit")
        return bytes(out)

    def finish(self) -> bytes:
        if self.ended:
            return b""
        if self.streaming:
            tail = self.feed(b"\n\n") if self._held.strip() else b""
            if not self.ended:  # the body ended without [DONE]
                self.ended = True
                tail += self.stream_end()
            return tail
        self.ended = True
        held, self._held = bytes(self._held), bytearray()
        if self.status >= 400:
            return self.error(self.status, error_message(held))
        try:
            completion = orjson.loads(held)
        except orjson.JSONDecodeError:
            return self.error(502, "The backend's response is not JSON")
        if not isinstance(completion, dict):
            return self.error(502, "The backend's response is not a JSON object")
        return orjson.dumps(self.completion(completion))

    def _backend_event(self, data: bytes) -> bytes:
        if not data:
            return b""
        if data == _DONE:
            self.ended = True
            return self.stream_end()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(chunk, dict):
            return b""
        if isinstance(chunk.get("error"), dict):
            self.ended = True
            message = chunk["error"].get("message")
            return self.stream_error(message if isinstance(message, str) else "Backend error")
        return self.chunk(chunk)

    @abstractmethod
    def completion(self, completion: dict[str, Any]) -> dict[str, Any]:
        """A whole chat completion (2xx) as this API's response object."""

    @abstractmethod
    def error(self, status: int, message: str) -> bytes:
        """A non-streamed error body in this API's shape (the status stays the backend's)."""

    @abstractmethod
    def chunk(self, chunk: dict[str, Any]) -> bytes:
        """One chat-completion chunk of a stream: this API's events for it."""

    @abstractmethod
    def stream_end(self) -> bytes:
        """The stream ended (`[DONE]`, or the body ended): this API's closing events."""

    @abstractmethod
    def stream_error(self, message: str) -> bytes:
        """The stream failed (a backend error event): this API's error event; nothing after."""
