"""Redaction: PII in a request's messages replaced by typed placeholders (`<EMAIL_1>`).

`Placeholders` numbers the values of one request per type, the same value always getting the
same placeholder, up to `guards.max_placeholders` distinct values (`TooManyValues` past it).
`redact_messages` rewrites the scanned messages the entities were found in: a string content in
place of the span, a content list part by part (the detector read the parts joined by newlines,
as `message_text` joins them); the client's own message objects are never changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from semrouter.signals.guards import FoundEntity


class TooManyValues(Exception):
    """More distinct values to redact than the request may have placeholders for."""


class Placeholders:
    """The placeholders of one request: `placeholder(type, value)` gives (or makes) the one of
    a value; `values` maps each placeholder back to its value."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.values: dict[str, str] = {}
        self._by_value: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.values)

    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        found = self._by_value.get(key)
        if found is not None:
            return found
        if len(self.values) >= self.limit:
            raise TooManyValues(f"more than {self.limit} distinct values to redact")
        number = self._counts.get(kind, 0) + 1
        self._counts[kind] = number
        placeholder = f"<{kind}_{number}>"
        self._by_value[key] = placeholder
        self.values[placeholder] = value
        return placeholder


Span = tuple[int, int, str]
"""(start, end, replacement) in one string."""


def _replaced(text: str, spans: Iterable[Span]) -> str:
    out, position = [], 0
    for start, end, replacement in sorted(spans):
        out.append(text[position:start])
        out.append(replacement)
        position = end
    out.append(text[position:])
    return "".join(out)


def _split(
    lengths: Sequence[int], start: int, end: int, placeholder: str
) -> list[tuple[int, Span]]:
    """An entity of the joined text (parts joined by one newline) as spans of the parts it
    covers: the first piece becomes the placeholder, the others disappear."""
    pieces: list[tuple[int, Span]] = []
    offset = 0
    for index, length in enumerate(lengths):
        lo, hi = max(start, offset), min(end, offset + length)
        if lo < hi:
            pieces.append((index, (lo - offset, hi - offset, "" if pieces else placeholder)))
        offset += length + 1
    return pieces


def redact_message(
    message: Mapping[str, Any], entities: Sequence[FoundEntity], placeholders: Placeholders
) -> dict[str, Any]:
    """A copy of message with each entity's span replaced by its placeholder."""
    marks = [
        (e.entity.start, e.entity.end, placeholders.placeholder(e.entity.type, e.entity.text))
        for e in entities
    ]
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": _replaced(content, marks)}
    assert isinstance(content, list)  # message_text found text: a string or text parts
    texts = [
        i
        for i, part in enumerate(content)
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    ]
    per_part: dict[int, list[Span]] = {}
    lengths = [len(content[i]["text"]) for i in texts]
    for start, end, placeholder in marks:
        for index, span in _split(lengths, start, end, placeholder):
            per_part.setdefault(texts[index], []).append(span)
    parts = [
        {**part, "text": _replaced(part["text"], per_part[i])} if i in per_part else part
        for i, part in enumerate(content)
    ]
    return {**message, "content": parts}


def redact_messages(
    body: dict[str, Any],
    messages: Sequence[Mapping[str, Any]],
    entities: Sequence[FoundEntity],
    placeholders: Placeholders,
) -> None:
    """body["messages"] with the entities (found in `messages`, the client's) replaced. The
    body's list holds the client's message objects (a system prompt may have been added or
    merged): each is matched by identity, so indices need not agree."""
    by_message: dict[int, list[FoundEntity]] = {}
    for found in entities:
        by_message.setdefault(found.message, []).append(found)
    replacements = {
        id(messages[index]): redact_message(messages[index], found, placeholders)
        for index, found in sorted(by_message.items())
    }
    body["messages"] = [replacements.get(id(m), m) for m in body["messages"]]
