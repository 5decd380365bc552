"""The HTTP contract through a real socket, against the stand-in backend (no model needed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from semrouter.bench.standin import StandIn, start_standin
from semrouter.config import parse_config
from semrouter.pipeline.router import Router
from semrouter.proxy.app import ProxyApp
from tests.conftest import minimal_config
from tests.servers import free_port, serving


def config_for(backend: str, **overrides: Any) -> Any:
    data = minimal_config(**overrides)
    for model in data["models"]:
        model["endpoints"] = [{"url": f"{backend}/v1"}]
    data["router"] = {"max_body_bytes": 20_000}
    return parse_config(data, env={})


@pytest.fixture
async def standin() -> AsyncIterator[tuple[StandIn, str]]:
    backend = StandIn(record=True, chunk_delay_s=0.05)
    runner, port = await start_standin(backend)
    yield backend, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def router_url(standin: tuple[StandIn, str]) -> AsyncIterator[str]:
    app = ProxyApp(Router(config_for(standin[1]))).app
    async with serving(app) as url:
        yield url


async def post(url: str, payload: Any, raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else json.dumps(payload).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url + "/v1/chat/completions", data=data, headers={"content-type": "application/json"}
        ) as response,
    ):
        return response.status, dict(response.headers), await response.json(content_type=None)


def chat(text: str, model: str = "auto", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def test_auto_routes_and_rewrites_in_family_dialect(router_url: str, standin: Any) -> None:
    status, headers, body = await post(
        router_url,
        chat("prove this integral converges", chat_template_kwargs={"enable_thinking": False}),
    )
    assert status == 200
    assert headers["x-semrouter-model"] == "reasoner"
    assert headers["x-semrouter-decision"] == "math"
    assert headers["x-semrouter-reasoning"] == "on"
    assert float(headers["x-semrouter-route-ms"]) >= 0
    assert body["echo"]["model"] == "qwen3-id"
    assert body["echo"]["chat_template_kwargs"] == {"enable_thinking": True}


async def test_default_route_and_direct_model_bypass(router_url: str) -> None:
    _, headers, body = await post(router_url, chat("hello there"))
    assert headers["x-semrouter-model"] == "fast"
    assert headers["x-semrouter-decision"] == "default"
    assert body["echo"]["model"] == "fast-id"
    _, headers, body = await post(
        router_url, chat("prove it", model="reasoner", reasoning_effort="low")
    )
    assert headers["x-semrouter-decision"] == "direct"
    assert headers["x-semrouter-reasoning"] == "unchanged"
    assert body["echo"]["reasoning_effort"] == "low"
    assert "chat_template_kwargs" not in body["echo"]


async def test_sse_streams_chunk_by_chunk(router_url: str) -> None:
    arrivals: list[float] = []
    loop = asyncio.get_running_loop()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            router_url + "/v1/chat/completions", json=chat("prove the integral", stream=True)
        ) as response,
    ):
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-semrouter-reasoning"] == "on"
        assert response.headers["cache-control"] == "no-cache"
        events = []
        async for line in response.content:
            if line.startswith(b"data: "):
                arrivals.append(loop.time())
                events.append(line[6:].strip())
    assert events[-1] == b"[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "Hello from the stand-in backend."
    # chunks are 50 ms apart at the backend: a buffering proxy would deliver them together
    assert arrivals[-1] - arrivals[0] > 0.2


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b'{"model": "auto"}', 400, "missing_messages"),
        (b'{"model": "auto", "messages": "hi"}', 400, "invalid_messages"),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": 5}]}',
            400,
            "invalid_messages",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}',
            400,
            "invalid_messages",
        ),
        (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', 400, "invalid_model"),
        (
            b'{"model": "auto", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}',
            400,
            "invalid_stream",
        ),
        (
            b'{"model": "auto", "max_tokens": -3, "messages": [{"role": "user", "content": "x"}]}',
            400,
            "invalid_max_tokens",
        ),
        (
            b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "model_not_found",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "'
            + b"x" * 30_000
            + b'"}]}',
            413,
            "request_too_large",
        ),
    ],
)
async def test_bad_input_gets_openai_error(
    router_url: str, raw: bytes, status: int, code: str
) -> None:
    got_status, _, body = await post(router_url, None, raw=raw)
    assert got_status == status
    assert set(body["error"]) == {"message", "type", "code"}
    assert body["error"]["code"] == code
    # the server is still up
    assert (await post(router_url, chat("hello")))[0] == 200


async def test_dead_backend_gives_502_and_router_stays_up() -> None:
    config = config_for(f"http://127.0.0.1:{free_port()}")
    async with serving(ProxyApp(Router(config)).app) as url:
        status, headers, body = await post(url, chat("hello"))
        assert status == 502
        assert body["error"]["code"] == "backend_unavailable"
        assert headers["x-semrouter-model"] == "fast"
        async with aiohttp.ClientSession() as session, session.get(url + "/health") as health:
            assert health.status == 200


async def test_slow_backend_gives_504() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    data = minimal_config()
    for model in data["models"]:
        model["endpoints"] = [{"url": f"http://127.0.0.1:{port}/v1"}]
        model["timeout_s"] = 0.3
        model["retries"] = 0
    async with serving(ProxyApp(Router(parse_config(data, env={}))).app) as url:
        status, _, body = await post(url, chat("hello"))
    server.close()
    assert status == 504
    assert body["error"]["code"] == "backend_timeout"


async def test_retry_goes_to_next_endpoint(standin: tuple[StandIn, str]) -> None:
    _backend, good = standin
    data = minimal_config()
    for model in data["models"]:
        model["endpoints"] = [
            {"url": f"http://127.0.0.1:{free_port()}/v1", "weight": 1000},
            {"url": f"{good}/v1", "weight": 0.001},
        ]
        model["retries"] = 1
    async with serving(ProxyApp(Router(parse_config(data, env={}))).app) as url:
        for _ in range(3):
            assert (await post(url, chat("hello")))[0] == 200


async def test_client_disconnect_cancels_upstream_stream(router_url: str, standin: Any) -> None:
    backend, _ = standin
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            router_url + "/v1/chat/completions", json=chat("hello", stream=True)
        )
        await response.content.readline()
        response.close()
    for _ in range(50):
        if backend.cancelled_streams:
            break
        await asyncio.sleep(0.05)
    assert backend.cancelled_streams == 1


async def test_models_health_ready_metrics_and_404(router_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(router_url + "/v1/models") as response:
            ids = [m["id"] for m in (await response.json())["data"]]
            assert ids == ["auto", "fast", "reasoner"]
        async with session.get(router_url + "/ready") as response:
            assert (await response.json()) == {"status": "ready"}
        await post(router_url, chat("prove it"))
        async with session.get(router_url + "/metrics") as response:
            text = await response.text()
            assert (
                'semrouter_requests_total{decision="math",model="reasoner",reasoning="on"}' in text
            )
        async with session.get(router_url + "/v2/nothing") as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "not_found"


async def test_classify_endpoint(router_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            router_url + "/api/v1/classify", json={"text": "prove it"}
        ) as response:
            result = await response.json()
            assert result["model"] == "reasoner"
            assert result["decision"] == "math"
            assert result["reasoning"] is True
            assert "math_words" in result["signals"]["fired"]
        async with session.post(router_url + "/api/v1/classify", json={"txt": 1}) as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "missing_input"
