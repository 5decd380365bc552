"""Backend faults through the proxy on a real socket, against a misbehaving backend.

Model `fast` goes to the endpoints under test; model `reasoner` (the `math` decision, "prove it")
goes to a healthy endpoint, and after every fault the router must still answer through it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from semrouter.config import parse_config
from semrouter.pipeline.router import Router
from semrouter.proxy.app import ProxyApp
from tests.conftest import minimal_config
from tests.faulty_backend import FaultyBackend
from tests.servers import free_port, serving

LIMITS = {"max_response_bytes": 64 * 1024, "max_sse_event_bytes": 16 * 1024}


@pytest.fixture
async def backend() -> AsyncIterator[FaultyBackend]:
    faulty = FaultyBackend(huge_bytes=100 * 1024)
    await faulty.start()
    yield faulty
    await faulty.stop()


@asynccontextmanager
async def router(
    backend: FaultyBackend, *fast: str | dict[str, Any], **model: Any
) -> AsyncIterator[str]:
    """The proxy with model `fast` on the given endpoints (URLs, or {url, weight})."""
    data = minimal_config()
    fast_model, reasoner = data["models"]
    fast_model["endpoints"] = [e if isinstance(e, dict) else {"url": e} for e in fast]
    fast_model.update({"timeout_s": 1.0, "stream_idle_timeout_s": 0.3, "retries": 0, **model})
    reasoner["endpoints"] = [{"url": backend.endpoint("ok")}]
    data["router"] = {"limits": LIMITS}
    async with serving(ProxyApp(Router(parse_config(data, env={}))).app) as url:
        yield url
        await still_serves(url)


def chat(text: str = "hello", stream: bool = False) -> dict[str, Any]:
    return {"model": "fast", "messages": [{"role": "user", "content": text}], "stream": stream}


async def post(url: str, payload: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/chat/completions", json=payload) as response,
    ):
        return response.status, dict(response.headers), await response.json(content_type=None)


async def stream(url: str, payload: dict[str, Any]) -> list[Any]:
    """A streamed request's events, parsed (the final `[DONE]` as the string)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/chat/completions", json=payload) as response,
    ):
        assert response.status == 200
        raw = await response.read()
    assert raw.endswith(b"\n\n"), raw
    events = [e for e in raw.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events), raw
    return [e[6:].decode() if e == b"data: [DONE]" else json.loads(e[6:]) for e in events]


async def still_serves(url: str) -> None:
    status, headers, body = await post(url, {**chat("prove it"), "model": "auto"})
    assert status == 200, body
    assert headers["x-semrouter-model"] == "reasoner"


async def metrics(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        return await response.text()


def failures(text: str, kind: str) -> float:
    prefix = f'semrouter_backend_failures_total{{kind="{kind}",model="fast"}} '
    return next(
        (float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0.0
    )


def assert_stream_broke(events: list[Any], code: str) -> None:
    """One good event came first; then exactly one error event and `[DONE]`."""
    assert events[0]["object"] == "chat.completion.chunk"
    assert events[-2]["error"]["code"] == code
    assert set(events[-2]["error"]) == {"message", "type", "code"}
    assert events[-1] == "[DONE]"
    assert all("error" not in e for e in events[:-2])


async def test_connection_refused_gives_502(backend: FaultyBackend) -> None:
    async with router(backend, f"http://127.0.0.1:{free_port()}/v1") as url:
        status, _, body = await post(url, chat())
        assert status == 502
        assert body["error"]["code"] == "backend_unavailable"
        assert failures(await metrics(url), "connect") == 1


async def test_no_headers_within_timeout_gives_504_and_drops_the_request(
    backend: FaultyBackend,
) -> None:
    async with router(backend, backend.endpoint("hang"), timeout_s=0.3) as url:
        status, _, body = await post(url, chat())
        assert status == 504
        assert body["error"]["code"] == "backend_timeout"
        assert "0.3s" in body["error"]["message"]
        assert failures(await metrics(url), "timeout") == 1
        await until(lambda: backend.cancelled == 1)


async def test_headers_then_silence_is_an_idle_timeout(backend: FaultyBackend) -> None:
    async with router(backend, backend.endpoint("silent")) as url:
        status, _, body = await post(url, chat())
        assert status == 504
        assert "went silent for 0.3s" in body["error"]["message"]
        assert_stream_broke(await stream(url, chat(stream=True)), "backend_timeout")
        assert failures(await metrics(url), "idle_timeout") == 2
        await until(lambda: backend.cancelled == 2)  # both upstream connections were closed


async def test_idle_timeout_is_separate_from_the_headers_timeout(backend: FaultyBackend) -> None:
    backend.slow_s = 0.2  # 0.2 s before headers, then 0.2 s between events
    async with router(
        backend, backend.endpoint("slow"), timeout_s=1.0, stream_idle_timeout_s=0.1
    ) as url:
        assert (await post(url, chat()))[0] == 200  # headers after 0.2 s: within timeout_s
        assert_stream_broke(await stream(url, chat(stream=True)), "backend_timeout")
    async with router(
        backend, backend.endpoint("slow"), timeout_s=1.0, stream_idle_timeout_s=0.5
    ) as url:
        events = await stream(url, chat(stream=True))
        assert events[-1] == "[DONE]" and all("error" not in e for e in events[:-1])


async def test_connection_closed_mid_body(backend: FaultyBackend) -> None:
    async with router(backend, backend.endpoint("close")) as url:
        status, _, body = await post(url, chat())
        assert status == 502
        assert body["error"]["code"] == "backend_unavailable"
        assert_stream_broke(await stream(url, chat(stream=True)), "backend_unavailable")
        assert failures(await metrics(url), "closed") == 2


async def test_malformed_backend_output(backend: FaultyBackend) -> None:
    async with router(backend, backend.endpoint("notjson")) as url:
        status, _, body = await post(url, chat())
        assert status == 502
        assert body["error"]["code"] == "backend_invalid_response"
    async with router(backend, backend.endpoint("garbage")) as url:
        events = await stream(url, chat(stream=True))
        assert_stream_broke(events, "backend_invalid_response")
        assert len(events) == 3  # the garbage line itself never reaches the client
        assert failures(await metrics(url), "invalid") == 1


async def test_oversized_responses_are_cut_off(backend: FaultyBackend) -> None:
    async with router(backend, backend.endpoint("huge")) as url:
        status, _, body = await post(url, chat())
        assert status == 502
        assert body["error"]["code"] == "backend_response_too_large"
        assert str(LIMITS["max_response_bytes"]) in body["error"]["message"]
        events = await stream(url, chat(stream=True))
        assert_stream_broke(events, "backend_response_too_large")
        assert "an SSE event" in events[-2]["error"]["message"]
        assert failures(await metrics(url), "too_large") == 2


async def test_503_retries_elsewhere_and_retry_after_keeps_the_endpoint_out(
    backend: FaultyBackend,
) -> None:
    backend.retry_after = "2"
    endpoints = [
        {"url": backend.endpoint("r503"), "weight": 1000},
        {"url": backend.endpoint("ok"), "weight": 0.001},
    ]
    async with router(backend, *endpoints, retries=1) as url:
        for _ in range(3):
            assert (await post(url, chat()))[0] == 200
        assert backend.hits["r503"] == 1  # not asked again within its Retry-After
        assert backend.hits["ok"] == 3
        assert failures(await metrics(url), "server_error") == 1


async def test_exhausted_429_gives_429_with_retry_after_then_503_until_then(
    backend: FaultyBackend,
) -> None:
    backend.retry_after = "2"
    async with router(backend, backend.endpoint("r429"), retries=2) as url:
        status, headers, body = await post(url, chat())
        assert status == 429
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert headers["Retry-After"] == "2"
        status, headers, body = await post(url, chat())
        assert status == 503
        assert body["error"]["code"] == "no_backend_available"
        assert headers["Retry-After"] in {"1", "2"}
        assert backend.hits["r429"] == 1


async def test_breaker_opens_then_a_probe_closes_it(backend: FaultyBackend) -> None:
    port = free_port()
    breaker = {"failures": 2, "open_s": 0.5}
    async with router(backend, f"http://127.0.0.1:{port}/ok/v1", breaker=breaker) as url:
        for _ in range(2):
            assert (await post(url, chat()))[0] == 502
        status, headers, body = await post(url, chat())
        assert status == 503  # out of rotation: not even tried
        assert body["error"]["code"] == "no_backend_available"
        assert headers["Retry-After"] == "1"
        assert failures(await metrics(url), "connect") == 2
        revived = FaultyBackend()
        await revived.start(port)
        try:
            await asyncio.sleep(0.5)
            assert (await post(url, chat()))[0] == 200  # the probe
            assert (await post(url, chat()))[0] == 200
        finally:
            await revived.stop()
        text = await metrics(url)
        for state in ("open", "half_open", "closed"):
            assert f'endpoint="http://127.0.0.1:{port}/ok/v1",model="fast",state="{state}"' in text


async def until(condition: Any, seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    assert condition()


@pytest.mark.parametrize("streamed", [False, True])
async def test_client_disconnect_cancels_the_upstream_request(
    backend: FaultyBackend, streamed: bool
) -> None:
    backend.slow_s = 1.0
    async with router(
        backend, backend.endpoint("slow"), timeout_s=5, stream_idle_timeout_s=5
    ) as url:
        async with aiohttp.ClientSession() as session:
            request = session.post(url + "/v1/chat/completions", json=chat(stream=streamed))
            if streamed:
                response = await request
                await response.content.readline()  # the first event: the stream is running
                response.close()
            else:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.3):
                        await request  # no headers yet: the backend is still "thinking"
        await until(lambda: backend.cancelled == 1)
        assert backend.hits["slow"] == 1
