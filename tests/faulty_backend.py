"""A misbehaving OpenAI-compatible backend for fault tests, one fault per URL path.

An endpoint `http://127.0.0.1:PORT/<mode>/v1` answers POST /chat/completions like this:

    ok        a normal answer (JSON, or SSE when the body asks for `stream`)
    hang      reads the request, never sends headers
    silent    sends headers (and, streamed, one event), then nothing
    close     sends part of the body, then drops the connection
    garbage   streamed: one good event, then a line that is not SSE
    notjson   200 application/json whose body is HTML
    r429      429 with `Retry-After: <retry_after>`
    r503      503 with `Retry-After: <retry_after>`
    huge      a body (or, streamed, one event) of `huge_bytes`
    slow      waits `slow_s` before answering, then streams an event every `slow_s`

`hits` counts requests per mode; `cancelled` counts requests whose client (the router) went
away before the answer was complete. A closed port, for "connection refused", needs no server.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
from aiohttp import web

from semrouter.bench.standin import _chunk, _completion

SSE = {"content-type": "text/event-stream"}


class FaultyBackend:
    def __init__(
        self, retry_after: str = "1", huge_bytes: int = 2 * 1024 * 1024, slow_s: float = 0.2
    ) -> None:
        self.retry_after = retry_after
        self.huge_bytes = huge_bytes
        self.slow_s = slow_s
        self.hits: Counter[str] = Counter()
        self.cancelled = 0
        self.url = ""
        self.app = web.Application()
        self.app.router.add_post("/{mode}/v1/chat/completions", self.chat)
        self._runner: web.AppRunner | None = None

    def endpoint(self, mode: str) -> str:
        return f"{self.url}/{mode}/v1"

    async def start(self, port: int = 0) -> None:
        # handler_cancellation: a handler is cancelled when its client disconnects (counted)
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        assert site._server is not None and site._server.sockets  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        self.hits[mode] += 1
        body: dict[str, Any] = orjson.loads(await request.read())
        try:
            return await self._answer(mode, request, body, bool(body.get("stream")))
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled += 1
            raise

    async def _answer(
        self, mode: str, request: web.Request, body: dict[str, Any], stream: bool
    ) -> web.StreamResponse:
        model = str(body.get("model", "faulty"))
        if mode in ("r429", "r503"):
            status = int(mode[1:])
            return web.json_response(
                {"error": {"message": "busy", "type": "server_error", "code": status}},
                status=status,
                headers={"retry-after": self.retry_after},
            )
        if mode == "notjson":
            return web.Response(body=b"<html>oops</html>", content_type="application/json")
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "slow":
            await asyncio.sleep(self.slow_s)
        if not stream:
            payload = orjson.dumps(_completion(body, model))
            if mode == "huge":
                payload = payload[:-1] + b', "pad": "' + b"x" * self.huge_bytes + b'"}'
            response = web.StreamResponse(headers={"content-type": "application/json"})
            response.content_length = len(payload)
            await response.prepare(request)
            if mode in ("silent", "close"):
                await response.write(payload[: len(payload) // 2])
                return await self._misbehave(mode, request, response)
            await response.write(payload)
            return response
        response = web.StreamResponse(headers=SSE)
        await response.prepare(request)
        await response.write(_chunk(model, {"role": "assistant", "content": ""}))
        if mode in ("silent", "close"):
            return await self._misbehave(mode, request, response)
        if mode == "garbage":
            await response.write(b"<html>502 Bad Gateway</html>\n\n")
        elif mode == "huge":
            await response.write(_chunk(model, {"content": "x" * self.huge_bytes}))
        for word in ("Hello", " there", "."):
            if mode == "slow":
                await asyncio.sleep(self.slow_s)
            await response.write(_chunk(model, {"content": word}))
        await response.write(_chunk(model, {}, "stop") + b"data: [DONE]\n\n")
        return response

    @staticmethod
    async def _misbehave(
        mode: str, request: web.Request, response: web.StreamResponse
    ) -> web.StreamResponse:
        """silent: wait (until cancelled); close: drop the connection mid-body."""
        if mode == "silent":
            await asyncio.sleep(3600)
        await asyncio.sleep(0.05)  # let what was written be read first
        assert request.transport is not None
        request.transport.close()
        return response
