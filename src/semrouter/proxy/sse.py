"""Checking a backend's server-sent-event stream as it is relayed.

The relay forwards whole events only, so when a stream breaks the client never sees half an
event glued to the error event that follows. Each event is checked as it completes: its lines
must be SSE fields (`data:`, `event:`, `id:`, `retry:`) or comments (`:`), and its data must be
`[DONE]` or JSON, as in every OpenAI-compatible stream. An event (or an unfinished one) longer
than the cap is refused, so a backend cannot make the router buffer without bound. Lines may end
in `\\n` or `\\r\\n`.
"""

from __future__ import annotations

import orjson

_FIELDS = frozenset({b"", b"event", b"id", b"retry"})  # b"": a comment line
_PREVIEW = 60
_CR = ord("\r")


class SseViolation(ValueError):
    """The stream is not OpenAI-style SSE; `too_large` when an event exceeded the cap.

    `ready` holds the whole, valid events the offending chunk completed before the violation.
    """

    def __init__(self, detail: str, too_large: bool = False) -> None:
        super().__init__(detail)
        self.too_large = too_large
        self.ready = b""


class SseEvents:
    """Feed raw chunks in; get back the bytes of the whole events each chunk completed."""

    def __init__(self, max_event_bytes: int) -> None:
        self._max = max_event_bytes
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already split into lines
        self._data: list[bytes] = []
        self.done = False  # `data: [DONE]` was seen; nothing after it is forwarded

    def feed(self, chunk: bytes) -> bytes:
        buffer = self._buffer
        buffer += chunk
        ready = 0  # end of the last whole event in buffer
        pos = self._scanned
        try:
            while not self.done and (newline := buffer.find(b"\n", pos)) != -1:
                end = newline - 1 if newline > pos and buffer[newline - 1] == _CR else newline
                line = bytes(buffer[pos:end])
                pos = newline + 1
                if line:
                    self._field(line)
                    continue
                if pos - ready > self._max:
                    raise self._too_large()
                self._end_event()
                ready = pos
            if len(buffer) - ready > self._max:
                raise self._too_large()
        except SseViolation as violation:
            violation.ready = bytes(buffer[:ready])
            raise
        out = bytes(buffer[:ready])
        del buffer[:ready]
        self._scanned = pos - ready
        return out

    def _field(self, line: bytes) -> None:
        name, _, value = line.partition(b":")
        if name == b"data":
            self._data.append(value[1:] if value.startswith(b" ") else value)
        elif name not in _FIELDS:
            raise SseViolation(f"not an SSE line: {line[:_PREVIEW]!r}")

    def _end_event(self) -> None:
        if not self._data:
            return  # comments only (keep-alive), or a stray blank line
        data = b"\n".join(self._data)
        self._data = []
        if data == b"[DONE]":
            self.done = True
            return
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError:
            raise SseViolation(f"an event's data is not JSON: {data[:_PREVIEW]!r}") from None

    def _too_large(self) -> SseViolation:
        return SseViolation(f"an event exceeds {self._max} bytes", too_large=True)
