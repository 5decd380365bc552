"""Hostile inputs: one catalogue for the hardening tests and `semrouter bench soak`.

Each `Hostile` says what goes on the wire (bytes, and how fast: a slowloris client sends one
byte at a time) and the answer the router documents for it (status and OpenAI error code),
through `semrouter serve` and through Envoy + `semrouter extproc` where that differs. The table
in docs/hardening.md is this catalogue; tests/e2e/test_hostile.py checks every row against
both transports, and the soak mixes the rows into its traffic.

`exchange()` is a raw HTTP/1.1 client on asyncio streams: it can lie about Content-Length,
dribble headers, and keeps reading while it writes (a router may answer, and close, before
the client has sent everything). Every exchange is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

DRIBBLE_PAUSE_S = 0.05
"""A slowloris client's pause between two bytes."""
NORMAL_TEXT = "What is the capital of France, and why did it become the capital?"


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back: status 0 when the connection ended without a response."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed_s: float
    failure: str | None = None
    """'timeout', 'closed' or 'reset' when status is 0."""

    def error_code(self) -> str | None:
        """The OpenAI error code of the body, or None when it is not an OpenAI error."""
        try:
            error = orjson.loads(self.body)["error"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        if not isinstance(error, dict) or set(error) != {"message", "type", "code"}:
            return None
        code = error["code"]
        return code if isinstance(code, str) else None

    @property
    def kind(self) -> str:
        """One label per outcome, e.g. '200', '413 too_many_messages', '0 timeout'."""
        if self.status == 0:
            return f"0 {self.failure}"
        code = self.error_code()
        return str(self.status) if code is None else f"{self.status} {code}"


@dataclass(frozen=True, slots=True)
class Wire:
    """A request as bytes: head (request line and headers) and body, each sent whole or one
    byte at a time (`dribble_head`, `dribble_body`)."""

    head: bytes
    body: bytes = b""
    dribble_head: bool = False
    dribble_body: bool = False

    def pieces(self) -> list[tuple[bytes, float]]:
        """(bytes, pause after them) in sending order."""
        sent: list[tuple[bytes, float]] = []
        for data, dribble in ((self.head, self.dribble_head), (self.body, self.dribble_body)):
            if dribble:
                sent.extend((data[i : i + 1], DRIBBLE_PAUSE_S) for i in range(len(data)))
            elif data:
                sent.append((data, 0.0))
        return sent


def request_head(
    path: str,
    content_length: int | None,
    extra: tuple[tuple[str, str], ...] = (),
    method: str = "POST",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", "connection: close"]
    if content_length is not None:
        lines += ["content-type: application/json", f"content-length: {content_length}"]
    lines += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def post(body: bytes, path: str = "/v1/chat/completions", **wire: bool) -> Wire:
    """A POST with a truthful Content-Length."""
    return Wire(request_head(path, len(body)), body, **wire)


def chat_body(content: object, **extra: object) -> bytes:
    """A chat-completions body with one user message (content: a string or a parts list)."""
    return orjson.dumps(
        {
            "model": "auto",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 16,
            **extra,
        }
    )


def normal_wire(stream: bool = False) -> Wire:
    return post(chat_body(NORMAL_TEXT, stream=stream))


@dataclass(frozen=True, slots=True)
class Expected:
    status: int
    code: str | None = None
    """The OpenAI error code; None for a routed 2xx answer."""

    def matches(self, answer: Answer) -> bool:
        return answer.status == self.status and answer.error_code() == self.code

    def __str__(self) -> str:
        return str(self.status) if self.code is None else f"{self.status} {self.code}"


@dataclass(frozen=True, slots=True)
class Hostile:
    name: str
    what: str
    build: Callable[[], Wire]
    serve: Expected
    envoy: Expected | None = None
    """Through Envoy + `semrouter extproc`, when the answer differs from `semrouter serve`'s."""
    timed: bool = False
    """The answer comes after `router.limits.body_read_timeout_s` (a client that stalls)."""
    _wire: list[Wire] = field(default_factory=list, compare=False, repr=False)

    def wire(self) -> Wire:
        """The bytes, built once (some are megabytes)."""
        if not self._wire:
            self._wire.append(self.build())
        return self._wire[0]

    def expected(self, transport: str) -> Expected:
        return self.envoy if transport == "envoy" and self.envoy is not None else self.serve


# --- the catalogue --------------------------------------------------------------------------


def _messages(count: int) -> bytes:
    return orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}] * count})


def _nested(depth: int) -> bytes:
    """A valid request with an extra field nested `depth` lists deep (built as text: orjson
    cannot serialise past 254 levels)."""
    return chat_body(NORMAL_TEXT)[:-1] + b',"metadata":' + b"[" * depth + b"]" * depth + b"}"


def _parts(count: int) -> list[dict[str, object]]:
    return [{"type": "text", "text": f"part {i}"} for i in range(count)]


def _multimodal() -> bytes:
    return chat_body(
        [
            {"type": "text", "text": "Describe this picture and transcribe the audio."},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "iVBOR" * 2000}},
            {"type": "input_audio", "input_audio": {"data": "UklGR" * 2000, "format": "wav"}},
            {"type": "image_url", "image_url": {"url": "https://127.0.0.1/cat.png"}},
        ]
    )


def _tools(count: int) -> bytes:
    tools = [
        {"type": "function", "function": {"name": f"tool_{i}", "parameters": {"type": "object"}}}
        for i in range(count)
    ]
    return chat_body(NORMAL_TEXT, tools=tools)


def _content_length(declared: int, body: bytes) -> Wire:
    return Wire(request_head("/v1/chat/completions", declared), body)


def _huge_header(size: int) -> Wire:
    body = chat_body(NORMAL_TEXT)
    head = request_head("/v1/chat/completions", len(body), (("x-padding", "a" * size),))
    return Wire(head, body)


def _raw_text(text: bytes) -> bytes:
    """A request whose user content is the given raw bytes (not escaped)."""
    return b'{"model":"auto","messages":[{"role":"user","content":"' + text + b'"}]}'


CATALOGUE: tuple[Hostile, ...] = (
    Hostile(
        "long_word",
        "one user message that is a single 200,000-letter word (issue 12)",
        lambda: post(chat_body("a" * 200_000)),
        Expected(200),
    ),
    Hostile(
        "no_spaces_2mb",
        "a 2 MB prompt without a single space",
        lambda: post(chat_body("x7Qz" * 500_000)),
        Expected(200),
    ),
    Hostile(
        "messages_20k",
        "20,000 messages",
        lambda: post(_messages(20_000)),
        Expected(413, "too_many_messages"),
    ),
    Hostile(
        "messages_100k",
        "100,000 messages (3.1 MB)",
        lambda: post(_messages(100_000)),
        Expected(413, "too_many_messages"),
    ),
    Hostile(
        "nested_300",
        "an extra field nested 300 lists deep",
        lambda: post(_nested(300)),
        Expected(400, "too_deep"),
    ),
    Hostile(
        "nested_5000",
        "an extra field nested 5,000 lists deep",
        lambda: post(_nested(5000)),
        Expected(400, "invalid_json"),
    ),
    Hostile(
        "invalid_utf8",
        "raw bytes 0xff 0xfe inside the user content",
        lambda: post(_raw_text(b"caf\xff\xfe")),
        Expected(400, "invalid_json"),
    ),
    Hostile(
        "surrogate_raw",
        "a lone surrogate as raw (CESU-8) bytes ED A0 80",
        lambda: post(_raw_text(b"caf\xed\xa0\x80")),
        Expected(400, "invalid_json"),
    ),
    Hostile(
        "surrogate_escape",
        "a lone surrogate as a JSON escape, \\ud800",
        lambda: post(_raw_text(b"caf\\ud800")),
        Expected(400, "invalid_json"),
    ),
    Hostile(
        "content_length_longer",
        "Content-Length says 4,096 bytes, the client sends 100 and waits",
        lambda: _content_length(4096, chat_body(NORMAL_TEXT)[:100]),
        Expected(408, "request_timeout"),
        timed=True,
    ),
    Hostile(
        "content_length_shorter",
        "Content-Length says 40 bytes, the body is longer (the rest is a bogus next request)",
        lambda: _content_length(40, chat_body(NORMAL_TEXT)),
        Expected(400, "invalid_json"),
    ),
    Hostile(
        "slowloris_body",
        "headers at once, then the body one byte every 50 ms",
        lambda: post(chat_body(NORMAL_TEXT), dribble_body=True),
        Expected(408, "request_timeout"),
        timed=True,
    ),
    Hostile(
        "slowloris_headers",
        "the request line and headers one byte every 50 ms",
        lambda: post(chat_body(NORMAL_TEXT), dribble_head=True),
        Expected(408, "request_timeout"),
        timed=True,
    ),
    Hostile(
        "huge_header",
        "one 100 KB header",
        lambda: _huge_header(100 * 1024),
        Expected(431, "headers_too_large"),
    ),
    Hostile(
        "giant_headers",
        "4 MB of headers",
        lambda: _huge_header(4 * 1024 * 1024),
        Expected(431, "headers_too_large"),
    ),
    Hostile(
        "multimodal",
        "image_url (data URL and https) and input_audio parts beside a text part",
        lambda: post(_multimodal()),
        Expected(200),
    ),
    Hostile(
        "parts_10k",
        "one message with 10,000 content parts",
        lambda: post(chat_body(_parts(10_000))),
        Expected(413, "too_many_content_parts"),
    ),
    Hostile(
        "tools_10k",
        "10,000 tools",
        lambda: post(_tools(10_000)),
        Expected(413, "too_many_tools"),
    ),
)
BY_NAME = {hostile.name: hostile for hostile in CATALOGUE}


# --- the client -----------------------------------------------------------------------------


async def _send(writer: asyncio.StreamWriter, wire: Wire) -> None:
    try:
        for data, pause in wire.pieces():
            writer.write(data)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
    except (ConnectionError, OSError):
        pass  # the router answered (and closed) before the client was done: read its answer


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        line = await reader.readline()
        length = int(line.split(b";")[0].strip() or b"0", 16)
        if length == 0:
            await reader.readline()
            return b"".join(parts)
        size += length
        if size > limit:
            raise ValueError(f"response body over {limit} bytes")
        parts.append(await reader.readexactly(length))
        await reader.readexactly(2)


async def _read_response(
    reader: asyncio.StreamReader, limit: int
) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(min(int(headers["content-length"]), limit))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader, limit)
    else:
        body = await reader.read(limit)
    return status, headers, body


async def exchange(
    port: int, wire: Wire, timeout_s: float, host: str = "127.0.0.1", limit: int = 1 << 20
) -> Answer:
    """Send wire to host:port on a new connection and read one response, within timeout_s."""
    started = time.monotonic()

    def failed(why: str) -> Answer:
        return Answer(0, {}, b"", time.monotonic() - started, why)

    writer: asyncio.StreamWriter | None = None
    sending: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port, limit=4 << 20)
            sending = asyncio.create_task(_send(writer, wire))
            status, headers, body = await _read_response(reader, limit)
    except TimeoutError:
        return failed("timeout")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
        return failed("closed")
    except (ConnectionError, OSError):
        return failed("reset")
    finally:
        if sending is not None:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
        if writer is not None:
            writer.close()
    return Answer(status, headers, body, time.monotonic() - started)
