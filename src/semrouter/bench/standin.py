"""A fast OpenAI-compatible stand-in backend for benchmarks and transport tests.

It answers /v1/chat/completions immediately (JSON or SSE) and echoes the request body it
received under `"echo"`, so a test can see exactly what the router sent. It is not an LLM and
is never used where a real model's behaviour matters (end-to-end tests use llama.cpp).
Run it: `python -m semrouter.bench.standin --port 9000`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

STREAM_WORDS = ("Hello", " from", " the", " stand-in", " backend", ".")


def _completion(body: dict[str, Any], model: str, echo: bool = True) -> dict[str, Any]:
    completion: dict[str, Any] = {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(STREAM_WORDS)},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": len(STREAM_WORDS), "total_tokens": 7},
    }
    if echo:
        completion["echo"] = body
    return completion


def _chunk(model: str, delta: dict[str, str], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class StandIn:
    """chunk_delay_s: pause between SSE chunks; reply_delay_s: pause before a non-streamed
    answer (a slow generation); with record, `requests` holds the bodies received and `headers`
    their headers (lowercase names), for tests."""

    def __init__(
        self,
        chunk_delay_s: float = 0.0,
        record: bool = False,
        reply_delay_s: float = 0.0,
        echo: bool = True,
    ) -> None:
        self.chunk_delay_s = chunk_delay_s
        self.echo = echo
        self.reply_delay_s = reply_delay_s
        self.record = record
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.cancelled_streams = 0
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_post("/v1/chat/completions", self.chat)
        self.app.router.add_get("/v1/models", self.models)

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "standin", "object": "model"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if self.record:
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
        model = body.get("model", "standin")
        if not body.get("stream"):
            if self.reply_delay_s:
                await asyncio.sleep(self.reply_delay_s)
            return web.Response(
                body=orjson.dumps(_completion(body, model, self.echo)),
                content_type="application/json",
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(_chunk(model, {"role": "assistant", "content": ""}))
            for word in STREAM_WORDS:
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                await response.write(_chunk(model, {"content": word}))
            await response.write(_chunk(model, {}, "stop"))
            await response.write(b"data: [DONE]\n\n")
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled_streams += 1
            raise
        return response


async def start_standin(
    standin: StandIn, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(standin.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--reply-delay-ms", type=float, default=0.0, help="before a JSON answer")
    parser.add_argument(
        "--no-echo", action="store_true", help="leave the request out of JSON answers"
    )
    args = parser.parse_args()
    web.run_app(
        StandIn(
            args.chunk_delay_ms / 1000,
            reply_delay_s=args.reply_delay_ms / 1000,
            echo=not args.no_echo,
        ).app,
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
