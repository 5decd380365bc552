"""The hostile-input catalogue against `semrouter serve`'s HTTP stack, in-process.

The same app and HTTP/1.1 protocol as `semrouter serve` (ProxyApp, bounded_protocol) on a real
socket, the keyword-only config, the stand-in backend: every row of semrouter.bench.hostile
gets its documented answer, and the protocol's bounds on header bytes and header time hold.
The same catalogue runs against real processes under a memory cap in tests/e2e/test_hostile.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from semrouter.bench.hostile import CATALOGUE, Hostile, Wire, exchange, normal_wire, request_head
from semrouter.bench.standin import StandIn, start_standin
from semrouter.config import parse_config
from semrouter.pipeline.errors import RouterError
from semrouter.pipeline.request import parse_chat_request
from semrouter.pipeline.router import Router
from semrouter.proxy.app import ProxyApp
from semrouter.proxy.http11 import bounded_protocol
from tests.conftest import minimal_config
from tests.servers import serving

TIMEOUT_S = 0.2


@pytest.fixture
async def port() -> AsyncIterator[int]:
    runner, backend_port = await start_standin(StandIn())
    data = minimal_config()
    for model in data["models"]:
        model["endpoints"] = [{"url": f"http://127.0.0.1:{backend_port}/v1"}]
    data["router"] = {
        "limits": {"header_read_timeout_s": TIMEOUT_S, "body_read_timeout_s": TIMEOUT_S}
    }
    config = parse_config(data, env={})
    app = ProxyApp(Router(config)).app
    async with serving(app, bounded_protocol(config.router.limits)) as url:
        yield int(url.rsplit(":", 1)[1])
    await runner.cleanup()


@pytest.mark.parametrize("hostile", CATALOGUE, ids=lambda h: h.name)
async def test_hostile_input_gets_its_documented_answer(port: int, hostile: Hostile) -> None:
    answer = await exchange(port, hostile.wire(), 10)
    assert hostile.serve.matches(answer), (answer.kind, answer.body[:200])
    if hostile.timed:
        assert TIMEOUT_S <= answer.elapsed_s < TIMEOUT_S + 1
    assert (await exchange(port, normal_wire(), 5)).status == 200


async def test_an_endless_header_is_cut_off_after_the_limit(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-pad: ")
    sent = 0
    try:
        for _ in range(256):  # up to 64 MiB
            writer.write(b"a" * 256 * 1024)
            await writer.drain()
            sent += 256 * 1024
    except ConnectionError:
        pass
    try:
        reply = await asyncio.wait_for(reader.read(4096), 5)
    except ConnectionError:
        reply = b""  # the answer was lost to the reset; what was sent still tells
    writer.close()
    assert sent < 8 * 1024 * 1024  # refused and closed long before the client was done
    assert reply == b"" or reply.startswith(b"HTTP/1.1 431")


async def test_an_idle_connection_is_closed_without_an_answer(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), TIMEOUT_S + 1) == b""
    writer.close()


async def test_a_keep_alive_request_gets_its_own_header_deadline(port: int) -> None:
    """The second request on a connection is timed from its own first byte."""
    body = orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    first = request_head("/v1/chat/completions", len(body)).replace(
        b"connection: close", b"connection: keep-alive"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first + body)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    writer.write(b"POST /v1/chat")  # ... and nothing more
    answer = await asyncio.wait_for(reader.read(), TIMEOUT_S + 1)
    assert answer.startswith(b"HTTP/1.1 408")
    assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    writer.close()


def test_counts_are_refused_before_the_body_is_walked() -> None:
    """Over the message limit and too deep: the count is what the client hears (it is checked
    first, so a huge body is refused without walking it)."""
    nested = b"[" * 100 + b"]" * 100
    messages = b",".join([b'{"role":"user","content":"hi"}'] * 3000)
    raw = b'{"model":"auto","x":' + nested + b',"messages":[' + messages + b"]}"
    with pytest.raises(RouterError) as refused:
        parse_chat_request(raw, 1 << 22)
    assert (refused.value.status, refused.value.code) == (413, "too_many_messages")


def test_the_catalogue_is_what_the_docs_say() -> None:
    names = [h.name for h in CATALOGUE]
    assert len(set(names)) == len(names)
    assert all(isinstance(h.wire(), Wire) and h.what for h in CATALOGUE)
