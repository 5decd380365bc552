"""Checking a backend's SSE stream: whole events only, fields and JSON checked, size capped."""

from __future__ import annotations

import pytest

from semrouter.proxy.sse import SseEvents, SseViolation


def event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def test_sse_forwards_whole_events_only() -> None:
    events = SseEvents(1024)
    first, second = event(b'{"a": 1}'), event(b'{"b": 2}')
    assert events.feed(first + second[:5]) == first
    assert events.feed(second[5:9]) == b""
    assert events.feed(second[9:]) == second
    assert not events.done


def test_sse_accepts_crlf_comments_fields_and_multiline_data() -> None:
    events = SseEvents(1024)
    stream = (
        b": keep-alive\r\n\r\n"
        b'event: message\r\nid: 3\r\nretry: 10\r\ndata: {"a":\r\ndata: 1}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
        b"data: after done is dropped\n\n"
    )
    assert events.feed(stream) == stream[: stream.index(b"data: after")]
    assert events.done


@pytest.mark.parametrize(
    "garbage",
    [b"<html>502 Bad Gateway</html>\n\n", b"data: {not json}\n\n", b'{"a": 1}\n\n'],
)
def test_sse_rejects_garbage(garbage: bytes) -> None:
    events = SseEvents(1024)
    with pytest.raises(SseViolation) as caught:
        events.feed(event(b"{}") + garbage)
    assert not caught.value.too_large
    assert caught.value.ready == event(b"{}")  # what came before the garbage still counts


def test_sse_caps_one_event_whole_or_unfinished() -> None:
    with pytest.raises(SseViolation) as caught:
        SseEvents(100).feed(event(b'"' + b"x" * 200 + b'"'))
    assert caught.value.too_large
    events = SseEvents(100)
    events.feed(event(b"{}") * 40)  # many small events in one chunk are fine
    events.feed(b"data: " + b"x" * 50)
    with pytest.raises(SseViolation) as caught:
        events.feed(b"x" * 50)  # an unfinished event never ends
    assert caught.value.too_large
