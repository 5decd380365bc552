"""What the client-API tests share: chat chunks to feed a rewriter, the events it gives back,
and `semrouter serve` in front of the stand-in backend, posted to on any path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from hypothesis import strategies as st

from semrouter.bench.standin import StandIn, start_standin
from semrouter.config import parse_config
from semrouter.pipeline.router import Router
from semrouter.proxy.app import ProxyApp
from semrouter.stages import ResponseRewriter
from tests.conftest import minimal_config
from tests.servers import serving

_WORDS = (
    *("type", "text", "role", "content", "id", "name", "input", "arguments", "function"),
    *("tool_use_id", "tool_calls", "call_id", "output", "source", "url", "data", "media_type"),
    *("is_error", "budget_tokens", "effort", "format", "choices", "message", "delta", "index"),
    *("user", "assistant", "system", "tool", "image", "tool_use", "tool_result", "thinking"),
    *("enabled", "disabled", "auto", "any", "none", "base64", "function_call", "input_text"),
    *("function_call_output", "finish_reason", "stop", "length", "reasoning_content", "usage"),
)
words = st.sampled_from(_WORDS)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 5000) | words | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(words, inner, max_size=5),
    max_leaves=24,
)
"""JSON made of the words these APIs use, nested: hostile input that looks almost right."""


def chunk(
    delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, int] | None = None
) -> bytes:
    """One chat-completion chunk as a backend streams it (`delta` None: a usage-only chunk)."""
    payload: dict[str, Any] = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "m"}
    payload["choices"] = (
        [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    )
    if usage is not None:
        payload["usage"] = usage
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def stream(rewriter: ResponseRewriter, chunks: Sequence[bytes]) -> bytes:
    """What the client gets for these chunks, then `[DONE]`, fed one at a time."""
    out = b"".join(rewriter.feed(c) for c in chunks)
    return out + rewriter.feed(b"data: [DONE]\n\n") + rewriter.finish()


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The named events of an SSE body, each (event name, data); every event has both."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(lines) == {"event", "data"}, block
        data = json.loads(lines["data"])
        assert data["type"] == lines["event"], block
        out.append((lines["event"], data))
    return out


@asynccontextmanager
async def api_router(**overrides: Any) -> AsyncIterator[tuple[str, StandIn]]:
    """`semrouter serve` (minimal config plus overrides) in front of a recording stand-in, which
    also answers /v1/completions and /v1/embeddings by echoing the body it got."""
    backend = StandIn(record=True)
    for path in ("/v1/completions", "/v1/embeddings"):
        backend.app.router.add_post(path, _echo)
    runner, port = await start_standin(backend)
    data = minimal_config(**overrides)
    for model in data["models"]:
        model["endpoints"] = [{"url": f"http://127.0.0.1:{port}/v1"}]
    data.setdefault("router", {})["max_body_bytes"] = 20_000
    try:
        async with serving(ProxyApp(Router(parse_config(data, env={}))).app) as url:
            yield url, backend
    finally:
        await runner.cleanup()


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"path": request.path, "echo": await request.json()})


async def post_api(
    url: str, path: str, raw: bytes | None, method: str = "POST"
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url + path, data=raw, headers={"content-type": "application/json"}
        ) as response,
    ):
        body = await response.read()
        return response.status, dict(response.headers), json.loads(body) if body else None
