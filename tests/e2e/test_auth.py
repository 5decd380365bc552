"""Client authentication and quotas through real processes: `semrouter serve`, and Envoy with
`semrouter extproc`, in front of the recording stand-in backend.

A real LLM adds nothing here: what matters is who gets in, what the backend receives (the
stand-in records every request's headers) and that no secret ever shows up in an answer, a log
line or a metric. Both transports run the same tests with the same config.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from semrouter.bench.standin import StandIn, start_standin
from tests.e2e.client import call, chat
from tests.e2e.conftest import start_envoy, start_extproc, start_semrouter
from tests.servers import free_port

pytestmark = pytest.mark.e2e

SECRETS = {
    "E2E_WEB_KEY": "sk-e2e-web-5a1f0c9e7b3d4a2f8e6c1b0d9a7f3e5c",
    "E2E_GATEWAY_KEY": "sk-e2e-gw-0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a",
    "E2E_BURST_KEY": "sk-e2e-burst-11aa22bb33cc44dd55ee66ff77889900",
    "E2E_ADMIN_KEY": "sk-e2e-admin-a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5",
    "E2E_BACKEND_KEY": "sk-e2e-backend-ffeeddccbbaa99887766554433221100",
}
WEB, GATEWAY, BURST = (SECRETS[k] for k in ("E2E_WEB_KEY", "E2E_GATEWAY_KEY", "E2E_BURST_KEY"))
BURST_PER_MINUTE = 2
MULTI_STEP = "Solve step by step: how many weekdays are there in March 2027?"


class Backend:
    """The stand-in backend on its own event loop in a thread (the router runs in another
    process); `standin.headers` holds what every request brought."""

    def __init__(self) -> None:
        self.standin = StandIn(record=True)
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        started = asyncio.run_coroutine_threadsafe(start_standin(self.standin), self._loop)
        self._runner, port = started.result(10)
        self.url = f"http://127.0.0.1:{port}/v1"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    running = Backend()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def secrets_in_env() -> Iterator[None]:
    """The keys as the router processes read them: from their (inherited) environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SECRETS.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def auth_config(backend: Backend, log_dir: Path, secrets_in_env: None) -> Path:
    config = {
        "router": {
            "auth": {
                "enabled": True,
                "admin_key_env": "E2E_ADMIN_KEY",
                "keys": [
                    {"name": "web", "key_env": "E2E_WEB_KEY", "tenant": "acme", "models": ["fast"]},
                    {"name": "gateway", "key_env": "E2E_GATEWAY_KEY", "trusted": True},
                    {
                        "name": "burst",
                        "key_env": "E2E_BURST_KEY",
                        "requests_per_minute": BURST_PER_MINUTE,
                    },
                ],
            }
        },
        "models": [
            {
                "name": "fast",
                "endpoints": [{"url": backend.url}],
                "api_key_env": "E2E_BACKEND_KEY",
                "retries": 0,
            },
            {
                "name": "reasoner",
                "reasoning_family": "qwen3",
                "endpoints": [{"url": backend.url}],
                "retries": 0,
            },
        ],
        "signals": {
            "domain": {"enabled": False},
            "reasoning": {"enabled": False},
            "keywords": [{"name": "multi_step", "patterns": ["step by step"]}],
        },
        "decisions": [
            {
                "name": "multi_step",
                "rules": {"conditions": [{"name": "multi_step"}]},
                "model": "reasoner",
                "use_reasoning": True,
            }
        ],
        "default": {"model": "fast"},
    }
    path = log_dir / "auth-router.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def serve(auth_config: Path, log_dir: Path) -> Iterator[str]:
    port = free_port()
    process = start_semrouter(
        ["serve", "--config", str(auth_config), "--port", str(port), "--log-level", "debug"],
        {},
        log_dir / "auth-serve.log",
        f"http://127.0.0.1:{port}/ready",
    )
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def envoy(auth_config: Path, log_dir: Path) -> Iterator[str]:
    extproc, port = start_extproc(auth_config, log_dir / "auth-extproc.log")
    gateway, url = start_envoy(auth_config, port, log_dir / "auth-envoy.log")
    yield url
    for process in (gateway, extproc):
        process.terminate()
        process.wait(10)


ANSWERS: list[tuple[int, dict[str, str], bytes]] = []
"""Every answer any test here got, for the check that none contains a secret."""


@dataclass(frozen=True)
class Router:
    transport: str  # "serve" or "envoy"
    url: str


@pytest.fixture(scope="module", params=["serve", "envoy"])
def router(request: pytest.FixtureRequest) -> Router:
    return Router(request.param, request.getfixturevalue(request.param))


def ask(router: Router, payload: Any, **headers: str) -> tuple[int, dict[str, str], Any]:
    status, got, raw = call(router.url, payload, headers=headers)
    ANSWERS.append((status, got, raw))
    return status, got, json.loads(raw)


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def assert_error(answer: tuple[int, dict[str, str], Any], status: int, code: str) -> None:
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"] == "application/json"
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}
    assert body["error"]["code"] == code


def test_no_key_or_a_wrong_one_is_401(router: Router, backend: Backend) -> None:
    before = len(backend.standin.headers)
    assert_error(ask(router, chat("hello")), 401, "invalid_api_key")
    assert_error(ask(router, chat("hello"), **bearer("sk-" + "0" * 32)), 401, "invalid_api_key")
    assert_error(ask(router, chat("hello"), **{"x-api-key": WEB[:-1]}), 401, "invalid_api_key")
    assert len(backend.standin.headers) == before  # nothing reached the backend


def test_a_model_the_key_may_not_use_is_403(router: Router, backend: Backend) -> None:
    before = len(backend.standin.headers)
    answer = ask(router, chat("hello", model="reasoner"), **bearer(WEB))
    assert_error(answer, 403, "forbidden")
    assert answer[2]["error"]["message"] == "API key 'web' may not use model 'reasoner'"
    assert_error(ask(router, chat(MULTI_STEP), **bearer(WEB)), 403, "forbidden")  # routed there
    assert len(backend.standin.headers) == before


def test_over_the_rate_limit_is_429_with_retry_after(router: Router) -> None:
    # serve and Envoy are separate processes with separate buckets: each allows the burst
    for _ in range(BURST_PER_MINUTE):
        assert ask(router, chat("hello"), **bearer(BURST))[0] == 200
    answer = ask(router, chat("hello"), **bearer(BURST))
    assert_error(answer, 429, "rate_limit_exceeded")
    assert 1 <= int(answer[1]["retry-after"]) <= 60 // BURST_PER_MINUTE


def test_the_backend_gets_its_own_key_never_the_clients(router: Router, backend: Backend) -> None:
    client = {**bearer(WEB), "x-api-key": WEB}
    status, headers, body = ask(router, chat("hello"), **client)
    assert status == 200, body
    assert headers["x-semrouter-model"] == "fast"
    received = backend.standin.headers[-1]
    assert received["authorization"] == f"Bearer {SECRETS['E2E_BACKEND_KEY']}"
    assert "x-api-key" not in received

    client = {**bearer(GATEWAY), "x-api-key": GATEWAY}
    status, headers, _ = ask(router, chat(MULTI_STEP), **client)
    assert (status, headers["x-semrouter-model"]) == (200, "reasoner")
    received = backend.standin.headers[-1]
    assert "authorization" not in received and "x-api-key" not in received  # no key configured
    assert not [h for h in backend.standin.headers for k in (WEB, GATEWAY) if k in json.dumps(h)]


def test_tenant_header_from_a_trusted_key_only(router: Router, backend: Backend) -> None:
    tenant = {"x-semrouter-tenant": "t7"}
    status, headers, _ = ask(router, chat("hello"), **bearer(GATEWAY), **tenant)
    assert (status, headers["x-semrouter-tenant"]) == (200, "t7")
    status, headers, _ = ask(router, chat("hello"), **bearer(WEB), **tenant)
    assert (status, headers["x-semrouter-tenant"]) == (200, "acme")  # ignored: the key's tenant
    received = [h.get("x-semrouter-tenant") for h in backend.standin.headers[-2:]]
    # Through Envoy the backend gets the request's headers, the tenant as authenticated; serve
    # sends a backend only content-type, accept and credentials.
    assert received == (["t7", "acme"] if router.transport == "envoy" else [None, None])


def test_metrics_need_the_admin_key(serve: str) -> None:
    for headers, status in [({}, 401), (bearer(WEB), 401)]:
        assert call(serve, path="/metrics", headers=headers)[0] == status
    status, _, raw = call(serve, path="/metrics", headers=bearer(SECRETS["E2E_ADMIN_KEY"]))
    assert status == 200
    ANSWERS.append((status, {}, raw))
    assert b'semrouter_client_requests_total{key="web",outcome="forbidden"}' in raw
    assert call(serve, path="/health")[0] == 200 and call(serve, path="/ready")[0] == 200


def test_no_secret_in_any_answer_or_log(serve: str, envoy: str, log_dir: Path) -> None:
    """Runs last in this module: every answer above, and every log the processes wrote."""
    assert len(ANSWERS) > 20
    said = [json.dumps(headers) + raw.decode() for _, headers, raw in ANSWERS]
    logs = list(log_dir.glob("auth-*"))  # serve, extproc and Envoy logs, configs, bootstrap
    assert len(logs) >= 5
    said += [p.read_text(errors="replace") for p in logs]
    leaked = [name for name, value in SECRETS.items() for text in said if value in text]
    assert not leaked
