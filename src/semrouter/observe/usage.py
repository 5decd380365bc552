"""Token counts from a backend's response, read as it passes: JSON bodies and SSE streams.

OpenAI-compatible backends report `usage` (prompt_tokens, completion_tokens, and
completion_tokens_details.reasoning_tokens) at the end of a JSON body, and in a stream in the
last event when the client asked for it (`stream_options.include_usage`) or the backend always
sends it. The router never adds `include_usage` itself: the backend would then put
`"usage": null` into every event and add an event without choices, which would change what the
client receives (docs/observability.md).

Only the `usage` object is parsed, not the body: a quoted `"usage"` can only be a key (a quote
inside a JSON string is escaped), so a byte search finds it, and the object after it (numbers
and nested objects, no strings with braces) ends at its closing brace. A stream's usage may
arrive split across chunks (through Envoy): what follows the key is kept until the object is
whole, at most `max_bytes`. Output events are counted by their `"delta"` keys, which estimates
the output tokens of a stream without usage (for the time per output token).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

_KEY = b'"usage"'
_DELTA = b'"delta"'
_CARRY = len(_KEY) - 1
_SPACE = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt: int
    completion: int
    reasoning: int


class _Incomplete(Exception):
    """The usage object has not ended yet."""


def _parse(tail: bytes | bytearray) -> Usage | None:
    """The usage object at the start of `tail` (which begins with the key); None when it is
    null or not a usage object. Raises _Incomplete when `tail` ends before the object does."""
    pos = len(_KEY)
    n = len(tail)
    while pos < n and tail[pos] in _SPACE:
        pos += 1
    if pos >= n:
        raise _Incomplete
    if tail[pos] != ord(":"):
        return None
    pos += 1
    while pos < n and tail[pos] in _SPACE:
        pos += 1
    if pos >= n:
        raise _Incomplete
    if tail[pos] != ord("{"):
        return None
    depth = 0
    for end in range(pos, n):
        byte = tail[end]
        if byte == ord("{"):
            depth += 1
        elif byte == ord("}"):
            depth -= 1
            if depth == 0:
                return _usage(bytes(tail[pos : end + 1]))
    raise _Incomplete


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _usage(raw: bytes) -> Usage | None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    details = data.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return Usage(
        _count(data.get("prompt_tokens")),
        _count(data.get("completion_tokens")),
        _count(reasoning),
    )


def usage_in(body: bytes) -> Usage | None:
    """The usage a whole JSON response body reports (its last `usage` key), if any."""
    at = body.rfind(_KEY)
    if at < 0:
        return None
    try:
        return _parse(body[at:] if at else body)
    except _Incomplete:
        return None


class StreamUsage:
    """Feed a stream's chunks as they pass; `usage` is the last usage object it reported."""

    __slots__ = ("_carry", "_max_bytes", "_pending", "deltas", "usage")

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._carry = b""  # the end of the previous chunk, where a key may have begun
        self._pending: bytearray | None = None  # from a key on, until its object is whole
        self.deltas = 0
        self.usage: Usage | None = None

    @property
    def held(self) -> int:
        """Bytes kept while a usage object is incomplete (at most max_bytes plus a chunk)."""
        return len(self._pending) if self._pending is not None else 0

    def feed(self, chunk: bytes) -> None:
        if self._pending is not None:
            self._pending += chunk
            self._settle()
        self.deltas += chunk.count(_DELTA)
        straddling = -1
        if b'"' in self._carry:
            # A key split between the previous chunk and this one: both keys are 7 bytes, so
            # one that straddles lies in the last 6 bytes before and the first 6 after.
            edge = self._carry + chunk[:_CARRY]
            self.deltas += edge.count(_DELTA)
            straddling = edge.find(_KEY)
        at = chunk.rfind(_KEY)
        if at >= 0:
            self._start(chunk[at:])
        elif straddling >= 0:
            self._start(edge[straddling:] + chunk[_CARRY:])
        self._carry = chunk[-_CARRY:] if len(chunk) >= _CARRY else (self._carry + chunk)[-_CARRY:]

    def _start(self, tail: bytes) -> None:
        self._pending = bytearray(tail)
        self._settle()

    def _settle(self) -> None:
        assert self._pending is not None
        try:
            usage = _parse(self._pending)
        except _Incomplete:
            if len(self._pending) > self._max_bytes:
                self._pending = None
            return
        self._pending = None
        if usage is not None:
            self.usage = usage
