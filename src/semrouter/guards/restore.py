"""`Restorer`: a redacted request's placeholders turned back into the client's values in the
response, JSON or event stream (a `ResponseRewriter`, both transports).

A JSON body is restored whole, once it is complete: every string of it, tool-call `arguments`
(JSON inside a string) with the value JSON-escaped. An event stream is restored event by event:
a model writes a placeholder in several tokens, so in each choice's streamed fields (`content`,
`reasoning_content`, `refusal`, each tool call's `arguments`) a trailing piece that may begin a
placeholder is held back and put in front of that field's next piece (or given with the
choice's last event, or in an event of its own before `[DONE]`). What is held back is bounded:
one event (router.limits.max_sse_event_bytes) and, per field, one placeholder's length; a JSON
body up to router.limits.max_response_bytes. Past a bound the bytes pass unchanged: the client
then sees placeholders, never another request's values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from semrouter.stages import ResponseRewriter

EVENT_STREAM = "text/event-stream"
STREAMED_FIELDS = ("content", "reasoning_content", "refusal")


class Restorer(ResponseRewriter):
    def __init__(self, values: Mapping[str, str], max_event_bytes: int, max_body_bytes: int):
        """values: placeholder -> the client's value."""
        self.values = dict(values)
        self.escaped = {p: orjson.dumps(v).decode()[1:-1] for p, v in self.values.items()}
        self.pattern = re.compile("|".join(re.escape(p) for p in sorted(values, key=len)[::-1]))
        self.prefixes = {p[:k] for p in values for k in range(1, len(p))}
        self.longest = max(map(len, values))
        self.max_event_bytes = max_event_bytes
        self.max_body_bytes = max_body_bytes
        self.stream = False
        self.buffer = bytearray()
        self.passing = False
        """Past a bound: bytes pass unchanged (an event stream: until the event ends)."""
        self.carry: dict[tuple[int, str], str] = {}
        self.last_event: dict[str, Any] = {}

    def begin(self, status: int, content_type: str) -> str:
        self.stream = content_type.startswith(EVENT_STREAM)
        return content_type

    def feed(self, chunk: bytes) -> bytes:
        return self._feed_stream(chunk) if self.stream else self._feed_body(chunk)

    def finish(self) -> bytes:
        rest = bytes(self.buffer)
        self.buffer = bytearray()
        if not self.stream:
            return rest if self.passing else self._body(rest)
        out = self._event(rest) if rest.strip() else rest
        return out + self._flush_all()

    # --- a JSON body ---

    def _feed_body(self, chunk: bytes) -> bytes:
        if self.passing:
            return chunk
        self.buffer += chunk
        if len(self.buffer) <= self.max_body_bytes:
            return b""
        self.passing = True
        held, self.buffer = bytes(self.buffer), bytearray()
        return held

    def _body(self, raw: bytes) -> bytes:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
        return orjson.dumps(self._walk(document))

    def _walk(self, node: Any, key: str = "") -> Any:
        if isinstance(node, str):
            return self.replace(node, escaped=key == "arguments")
        if isinstance(node, dict):
            return {k: self._walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [self._walk(v, key) for v in node]
        return node

    def replace(self, text: str, escaped: bool = False) -> str:
        """Every whole placeholder of text by its value (JSON-escaped inside JSON text)."""
        if "<" not in text:
            return text
        table = self.escaped if escaped else self.values
        return self.pattern.sub(lambda m: table[m.group(0)], text)

    # --- an event stream ---

    def _feed_stream(self, chunk: bytes) -> bytes:
        out = bytearray()
        if self.passing:
            end = chunk.find(b"\n\n")
            if end < 0:
                return chunk
            out += chunk[: end + 2]
            chunk = chunk[end + 2 :]
            self.passing = False
        self.buffer += chunk
        while (end := self.buffer.find(b"\n\n")) >= 0:
            event = bytes(self.buffer[: end + 2])
            del self.buffer[: end + 2]
            out += self._event(event)
        if len(self.buffer) > self.max_event_bytes:
            out += self.buffer
            self.buffer = bytearray()
            self.passing = True
        return bytes(out)

    def _event(self, event: bytes) -> bytes:
        lines = event.split(b"\n")
        data = [line for line in lines if line.startswith(b"data:")]
        if len(data) != 1:
            return event  # comments, or multi-line data (not what chat completions send)
        payload = data[0][5:].strip()
        if payload == b"[DONE]":
            return self._flush_all() + event
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return event
        if not isinstance(document, dict):
            return event
        choices = document.get("choices")
        restored = {k: (v if k == "choices" else self._walk(v, k)) for k, v in document.items()}
        if isinstance(choices, list):
            restored["choices"] = [self._choice(c) for c in choices]
            self.last_event = {
                k: document[k] for k in ("id", "object", "created", "model") if k in document
            }
        if restored == document:
            return event
        return b"data: " + orjson.dumps(restored) + b"\n\n"

    def _choice(self, choice: Any) -> Any:
        if not isinstance(choice, dict) or not isinstance(choice.get("delta"), dict):
            return self._walk(choice)
        index = choice.get("index", 0)
        index = index if isinstance(index, int) else 0
        delta = dict(choice["delta"])
        for name in STREAMED_FIELDS:
            value = delta.get(name)
            if isinstance(value, str):
                delta[name] = self._piece(index, name, value)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [self._call(index, call) for call in calls]
        if choice.get("finish_reason") is not None:
            self._give_held(delta, self._pop(index))
        return {**{k: self._walk(v, k) for k, v in choice.items() if k != "delta"}, "delta": delta}

    def _call(self, index: int, call: Any) -> Any:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
            return self._walk(call)
        field = f"tool_calls.{call.get('index', 0)}"
        arguments = self._piece(index, field, function["arguments"], escaped=True)
        return {**call, "function": {**function, "arguments": arguments}}

    def _piece(self, index: int, name: str, value: str, escaped: bool = False) -> str:
        """The next piece of a streamed field, restored, less a trailing possible start of a
        placeholder (held for the next piece)."""
        text = self.carry.pop((index, name), "") + value
        cut = text.rfind("<", max(0, len(text) - self.longest))
        if cut >= 0 and text[cut:] in self.prefixes:
            self.carry[(index, name)] = text[cut:]
            text = text[:cut]
        return self.replace(text, escaped)

    def _pop(self, index: int) -> dict[str, str]:
        held = {k: v for k, v in self.carry.items() if k[0] == index}
        for key in held:
            del self.carry[key]
        return {name: text for (_, name), text in held.items()}

    def _give_held(self, delta: dict[str, Any], held: Mapping[str, str]) -> None:
        """Append what was held back of a choice's fields to its delta."""
        for name, text in held.items():
            if name in STREAMED_FIELDS:
                delta[name] = (delta.get(name) or "") + self.replace(text)
                continue
            calls = delta.get("tool_calls")
            calls = list(calls) if isinstance(calls, list) else []
            arguments = self.replace(text, escaped=True)
            calls.append(
                {"index": int(name.rsplit(".", 1)[1]), "function": {"arguments": arguments}}
            )
            delta["tool_calls"] = calls

    def _flush_all(self) -> bytes:
        """An event with what is still held back (a stream that ended without finish_reason)."""
        if not self.carry:
            return b""
        choices: dict[int, dict[str, Any]] = {}
        for index in sorted({i for i, _ in self.carry}):
            self._give_held(choices.setdefault(index, {}), self._pop(index))
        event = {
            **self.last_event,
            "choices": [
                {"index": i, "delta": d, "finish_reason": None} for i, d in choices.items()
            ],
        }
        return b"data: " + orjson.dumps(event) + b"\n\n"
