"""uvicorn's HTTP/1.1 protocol (httptools) with the two bounds it lacks: header size and time.

uvicorn hands a request to the app only once its headers are complete; until then it buffers
them without limit and waits without limit. 300 MB of header bytes grew `semrouter serve` by
350 MB, and a client that dribbled its headers a byte at a time held its connection for as long
as it liked. This subclass counts each request head's bytes as they arrive and times it, from
the connection's opening or a keep-alive request's first byte to the end of its headers: over
`router.limits.max_header_bytes` (plus the request line's allowance) it answers 431, past
`router.limits.header_read_timeout_s` 408, both in OpenAI's error shape, and closes the
connection. A connection that sent nothing at all is closed without an answer. Headers within
the byte bound still meet AdmissionMiddleware's exact check (431 as well).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from semrouter.config.schema import LimitsConfig
from semrouter.pipeline.errors import RouterError, headers_too_large, request_timeout

HEAD_ALLOWANCE = 16 * 1024
"""Bytes of a request head beyond its headers: the request line (the URL) and separators."""
_DEFAULTS = LimitsConfig()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One client connection. Configure the bounds with `bounded_protocol(limits)`."""

    max_header_bytes: ClassVar[int] = _DEFAULTS.max_header_bytes
    header_timeout_s: ClassVar[float] = _DEFAULTS.header_read_timeout_s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._began = False  # a request's first byte came (else a timeout closes silently)
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._reading_head:
            return
        self._head_bytes += len(data)  # this request's head, or the chunk in which it began
        if self._head_bytes > self.max_header_bytes + HEAD_ALLOWANCE:
            self._refuse(headers_too_large(self._head_bytes, self.max_header_bytes))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = self._began = True
        self._head_bytes = 0
        self._arm()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        if not self._reading_head or self.transport.is_closing():
            return
        if not self._began:
            self.transport.close()  # nothing was asked: nothing to answer
            return
        self._refuse(request_timeout("headers", self.header_timeout_s))

    def _refuse(self, error: RouterError) -> None:
        """Answer error and close: what follows on this connection is not read."""
        self._reading_head = False
        self._disarm()
        if self.transport.is_closing():
            return
        body = error.body()
        head = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % len(body)
        )
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def bounded_protocol(limits: LimitsConfig) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, bounded by these limits."""

    class Configured(BoundedHttpToolsProtocol):
        max_header_bytes = limits.max_header_bytes
        header_timeout_s = limits.header_read_timeout_s

    return Configured
