"""The response cache: verification, keys and scopes, stored answers (JSON and reassembled
streams), the memory backend's bounds, and the stage through the HTTP transport against the
stand-in backend (hits answered without a backend call, misses stored, what is never cached)."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpHeaders,
    ProcessingRequest,
)

from semrouter.bench.cache import PAIRS, at, load_pairs, safe_threshold, sweep
from semrouter.bench.standin import STREAM_WORDS, StandIn, start_standin
from semrouter.cache import CacheStage, CacheUnavailable, Entry, verify
from semrouter.cache.keys import scope_of, tenant_of
from semrouter.cache.memory import GRAPH_AT, MemoryBackend
from semrouter.cache.redis import RedisBackend
from semrouter.cache.responses import Answer, stored_answer
from semrouter.config import ConfigError, parse_config
from semrouter.config.schema import RedisCacheConfig
from semrouter.embed.base import Embedder, Encoded
from semrouter.extproc.server import ExtProcServicer
from semrouter.pipeline.flow import Pipeline
from semrouter.pipeline.router import Router
from semrouter.proxy.app import ProxyApp
from semrouter.stages import CompletedResponse, ResponseCapture
from tests.conftest import minimal_config
from tests.faulty_backend import FaultyBackend
from tests.redis_server import RedisServer, redis_binary
from tests.servers import serving
from tests.unit.test_extproc import (
    drive,
    header_map,
    mutations,
    request_body,
    request_headers,
    response_body,
    response_headers,
)

DIM = 64


class WordEmbedder(Embedder):
    """Deterministic: each word hashes to a direction; records the texts it encoded."""

    dim = DIM
    feature_dim = DIM

    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode_sync(self, texts: Sequence[str]) -> Encoded:
        self.texts.extend(texts)
        rows = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in zip(rows, texts, strict=True):
            for word in text.lower().replace("?", " ").split():
                row[zlib.crc32(word.encode()) % DIM] += 1.0
            row /= max(float(np.linalg.norm(row)), 1e-9)
        return Encoded(rows, rows, np.array([len(t.split()) for t in texts]))

    async def encode(self, texts: Sequence[str]) -> Encoded:
        return self.encode_sync(texts)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def unit(seed: int, dim: int = DIM) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


# --- verification -------------------------------------------------------------------------

SAME = [
    ("How do I reverse a list in Python?", "how can i reverse a list in Python"),
    ("how do i reverse a list in pyhton", "What is the way to reverse a list in python?"),
    ("What is the capital of France?", "Tell me the capital of France."),
    ("Explain how photosynthesis works", "How does photosynthesis work?"),
    ("List three risks of this plan", "List 3 risks of this plan"),
    ("Bake a cake with two cups of flour", "bake a cake with 2 cups of flour"),
    ("How do I turn off the firewall?", "how do i disable the firewall"),
]
DIFFERENT = [
    (
        "How do I enable dark mode in VS Code?",
        "How do I disable dark mode in VS Code?",
        "substitution",
    ),
    ("Why can't I connect to the wifi?", "Why can I connect to the wifi?", "negation"),
    ("Make coffee with milk", "Make coffee without milk", "negation"),
    ("Bake a cake with 2 cups of flour", "Bake a cake with 3 cups of flour", "numbers"),
    ("What is 15% of 80?", "What is 80% of 15?", "numbers"),
    ("Convert Celsius to Fahrenheit", "Convert Fahrenheit to Celsius", "order"),
    ("Deploy a Flask app on Heroku", "Deploy a Flask app on AWS Lambda", "entity"),
    ("Is a cat bigger than a dog?", "Is a cat smaller than a dog?", "substitution"),
    (
        "What happened before the French Revolution?",
        "What happened after the French Revolution?",
        "substitution",
    ),
    ("how to sort an array in golang", "how to sort an array in haskell", "substitution"),
    (
        "List the planets in order from the sun",
        "List the planets in reverse order from the sun",
        "polarity",
    ),
    ("Delete the files", "Delete all the files", "polarity"),
    ("how do I sort a list", "how do I sort a list in zig", "rare"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_verification_accepts_paraphrases(a: str, b: str) -> None:
    assert verify(a, b).check is None
    assert verify(b, a).check is None


@pytest.mark.parametrize(("a", "b", "check"), DIFFERENT)
def test_verification_rejects_answer_changing_edits(a: str, b: str, check: str) -> None:
    assert verify(a, b).check == check
    assert verify(b, a).check is not None


def test_wording_differences_cost_similarity() -> None:
    assert verify("Summarise this article", "Summarise this article").penalty == 0
    assert verify("Summarise this article", "Summarise this article for a child").penalty > 0


# --- keys ---------------------------------------------------------------------------------


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


def test_scope_ignores_the_last_turn_and_delivery_but_nothing_else() -> None:
    base = scope_of(body("a"), "fast", "shared")
    assert (
        scope_of(body("b", stream=True, stream_options={"include_usage": True}), "fast", "shared")
        == base
    )
    assert scope_of(body("a"), "reasoner", "shared") != base
    assert scope_of(body("a"), "fast", "tenant:x") != base
    for field, value in [
        ("temperature", 0.5),
        ("max_tokens", 9),
        ("seed", 1),
        ("tools", []),
        ("response_format", {"type": "json_object"}),
        ("stop", ["x"]),
    ]:
        assert scope_of(body("a", **{field: value}), "fast", "shared") != base, field
    system = {
        "model": "m",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a"}],
    }
    assert scope_of(system, "fast", "shared") != base
    earlier = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "a"},
        ],
    }
    assert scope_of(earlier, "fast", "shared") != base


def test_tenant_from_auth_then_header_then_authorization() -> None:
    assert tenant_of("acme", {"x-semrouter-tenant": "other"}) == "tenant:acme"
    assert tenant_of(None, {"x-semrouter-tenant": "t1"}) == "tenant:t1"
    one = tenant_of(None, {"authorization": "Bearer one"})
    assert one.startswith("key:") and "one" not in one
    assert one != tenant_of(None, {"authorization": "Bearer two"})
    assert tenant_of(None, {}) == "shared"


# --- stored answers -----------------------------------------------------------------------


def events(*chunks: dict[str, Any], done: bool = True) -> bytes:
    raw = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return raw + (b"data: [DONE]\n\n" if done else b"")


def delta(fields: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {
        "id": "c1",
        "model": "m",
        "choices": [{"index": index, "delta": fields, "finish_reason": finish}],
    }


SSE = "text/event-stream"


def test_a_stream_is_reassembled_and_replayed_in_either_mode() -> None:
    raw = events(
        delta({"role": "assistant", "content": ""}),
        delta({"content": "Hel"}),
        delta({"content": "lo"}),
        delta({}, "stop"),
    )
    answer = stored_answer(CompletedResponse(200, SSE, raw))
    assert answer is not None and answer.message["content"] == "Hello"
    completion = json.loads(answer.completion())
    assert completion["choices"][0]["message"]["content"] == "Hello"
    assert completion["choices"][0]["finish_reason"] == "stop"
    replay = answer.events(include_usage=False)
    assert replay.endswith(b"data: [DONE]\n\n")
    again = stored_answer(CompletedResponse(200, SSE, replay))
    assert again is not None and again.message == answer.message


def test_tool_call_deltas_are_joined() -> None:
    raw = events(
        delta(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "t",
                        "type": "function",
                        "function": {"name": "get", "arguments": '{"a"'},
                    }
                ]
            }
        ),
        delta({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
        delta({}, "stop"),
    )
    answer = stored_answer(CompletedResponse(200, SSE, raw))
    assert answer is not None
    assert answer.message["tool_calls"][0]["function"] == {"name": "get", "arguments": '{"a": 1}'}


@pytest.mark.parametrize(
    "response",
    [
        CompletedResponse(500, "application/json", b'{"error": {"message": "x"}}'),
        CompletedResponse(200, "application/json", b'{"error": {"message": "x"}}'),
        CompletedResponse(200, SSE, events(delta({"content": "a"}), delta({}, "stop"), done=False)),
        CompletedResponse(200, SSE, events(delta({"content": "a"}), delta({}, "content_filter"))),
        CompletedResponse(200, SSE, events(delta({"content": "a"}, "stop", index=1))),
        CompletedResponse(200, SSE, events({"error": {"message": "backend died"}})),
        CompletedResponse(200, "application/json", b"not json"),
    ],
)
def test_failed_truncated_or_multi_choice_answers_are_not_stored(
    response: CompletedResponse,
) -> None:
    assert stored_answer(response) is None


def test_capture_drops_a_body_over_the_limit() -> None:
    seen: list[CompletedResponse] = []

    class Watcher:
        max_bytes = 10

        def wants(self, status: int, content_type: str) -> bool:
            return status == 200

        def completed(self, response: CompletedResponse) -> None:
            seen.append(response)

    small = ResponseCapture([Watcher()], 200, SSE)  # type: ignore[list-item]
    small.feed(b"12345")
    small.finish()
    big = ResponseCapture([Watcher()], 200, SSE)  # type: ignore[list-item]
    big.feed(b"123456789012")
    big.finish()
    assert not ResponseCapture([Watcher()], 500, SSE).active  # type: ignore[list-item]
    assert [r.body for r in seen] == [b"12345"]


# --- the memory backend -------------------------------------------------------------------


def entry(scope: str, text: str) -> Entry:
    return Entry(
        scope, text, Answer({"role": "assistant", "content": text}, "stop", "m", "i").dumps()
    )


async def test_memory_backend_never_returns_another_scope() -> None:
    backend = MemoryBackend(100, 60)
    for i in range(30):
        backend.store_sync(entry(f"s{i % 3}", f"t{i}"), unit(i))
    found = await backend.search("s1", unit(4), 4, -1.0)
    assert found[0].entry.text == "t4" and found[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert {c.entry.scope for c in found} == {"s1"}
    assert await backend.search("s1", unit(4), 4, 0.99) == found[:1]
    assert await backend.search("nope", unit(4), 4, -1.0) == []


async def test_memory_backend_evicts_lru_and_expired() -> None:
    now = [0.0]
    backend = MemoryBackend(3, 10, clock=lambda: now[0])
    for i in range(3):
        backend.store_sync(entry("s", f"t{i}"), unit(i))
    (first,) = await backend.search("s", unit(0), 1, 0.99)
    await backend.touch(first)  # t0 is now the most recent: t1 goes next
    backend.store_sync(entry("s", "t3"), unit(3))
    assert await backend.size() == 3
    assert await backend.search("s", unit(1), 1, 0.99) == []
    assert [c.entry.text for c in await backend.search("s", unit(0), 1, 0.99)] == ["t0"]
    now[0] = 11.0
    assert await backend.search("s", unit(0), 1, 0.99) == []
    backend.store_sync(entry("s", "t4"), unit(4))
    assert await backend.size() == 1  # the expired ones went first
    backend.store_sync(entry("s", "t4"), unit(5))  # same scope and text: replaced
    assert await backend.size() == 1


async def test_memory_backend_grows_to_its_cap_only() -> None:
    backend = MemoryBackend(1500, 60)
    for i in range(2000):
        backend.store_sync(entry("s", f"t{i}"), unit(i))
    assert await backend.size() == 1500
    index = backend._scopes["s"].index  # past GRAPH_AT entries: an HNSW index of its own
    assert index is not None and index.get_max_elements() == 1500
    assert [c.entry.text for c in await backend.search("s", unit(1999), 1, 0.99)] == ["t1999"]
    backend.store_sync(entry("other", "t"), unit(1))
    assert set(backend._scopes) == {"s", "other"}
    for i in range(1500):  # the other scope's only entry becomes the least recent, then goes
        backend.store_sync(entry("s", f"u{i}"), unit(i))
    assert set(backend._scopes) == {"s"}  # its index went with it


# --- config -------------------------------------------------------------------------------


def test_config_rejects_unknown_decisions() -> None:
    with pytest.raises(ConfigError, match=r"cache\.decisions\.nope: unknown decision"):
        parse_config(minimal_config(cache={"backend": "memory", "decisions": {"nope": {}}}), env={})


# --- the stage through `semrouter serve` ----------------------------------------------------


def cached_config(backend_url: str, **cache: Any) -> Any:
    data = minimal_config(cache={"backend": "memory", **cache})
    for model in data["models"]:
        model["endpoints"] = [{"url": f"{backend_url}/v1"}]
    return parse_config(data, env={})


@pytest.fixture
async def standin() -> AsyncIterator[tuple[StandIn, str]]:
    backend = StandIn(record=True)
    runner, port = await start_standin(backend)
    yield backend, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def cached(standin: tuple[StandIn, str]) -> AsyncIterator[tuple[str, ProxyApp]]:
    proxy = ProxyApp(Router(cached_config(standin[1]), WordEmbedder()))
    async with serving(proxy.app) as url:
        yield url, proxy


async def ask(
    url: str, payload: dict[str, Any], **headers: str
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/chat/completions", json=payload, headers=headers) as response,
    ):
        headers = {k.lower(): v for k, v in response.headers.items()}
        return response.status, headers, await response.read()


async def stored(proxy: ProxyApp, count: int) -> None:
    """Until the cache holds `count` entries (stores run in the background)."""
    stage = next(s for s in proxy.pipeline.stages if isinstance(s, CacheStage))
    assert stage.backend is not None
    for _ in range(200):
        if await stage.backend.size() >= count and not stage._pending:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the cache holds {await stage.backend.size()} entries, not {count}")


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "fast", "messages": [{"role": "user", "content": text}], **extra}


def content_of(raw: bytes) -> str:
    return str(json.loads(raw)["choices"][0]["message"]["content"])


def sse_content(raw: bytes) -> str:
    text = ""
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    return text


async def test_a_miss_is_stored_and_a_paraphrase_hits_without_the_backend(
    cached: tuple[str, ProxyApp], standin: tuple[StandIn, str]
) -> None:
    url, proxy = cached
    status, headers, raw = await ask(url, chat("How do I reverse a list in Python?"))
    assert (status, headers["x-semrouter-cache"]) == (200, "miss")
    await stored(proxy, 1)
    status, headers, hit = await ask(url, chat("how do I reverse a list in Python"))
    assert (status, headers["x-semrouter-cache"]) == (200, "hit")
    assert headers["x-semrouter-model"] == "fast"
    assert content_of(hit) == content_of(raw)
    assert len(standin[0].requests) == 1
    _, headers, _ = await ask(url, chat("How do I reverse a list in Rust?"))
    assert headers["x-semrouter-cache"] == "miss"  # close, but another question
    assert len(standin[0].requests) == 2


async def test_a_streamed_miss_replays_as_sse_and_as_json(
    cached: tuple[str, ProxyApp], standin: tuple[StandIn, str]
) -> None:
    url, proxy = cached
    _, headers, raw = await ask(url, chat("Tell me a joke about cats", stream=True))
    assert headers["x-semrouter-cache"] == "miss"
    assert sse_content(raw) == "".join(STREAM_WORDS)
    await stored(proxy, 1)
    _, headers, replay = await ask(
        url, chat("Tell me a joke about cats", stream=True, stream_options={"include_usage": True})
    )
    assert headers["x-semrouter-cache"] == "hit"
    assert headers["content-type"].startswith("text/event-stream")
    assert sse_content(replay) == "".join(STREAM_WORDS)
    assert replay.endswith(b"data: [DONE]\n\n")
    _, headers, whole = await ask(url, chat("Tell me a joke about cats"))
    assert headers["x-semrouter-cache"] == "hit"
    assert content_of(whole) == "".join(STREAM_WORDS)
    assert len(standin[0].requests) == 1


async def test_cache_control_and_n(
    cached: tuple[str, ProxyApp], standin: tuple[StandIn, str]
) -> None:
    url, proxy = cached
    _, headers, _ = await ask(url, chat("What is a monad?"), **{"cache-control": "no-store"})
    assert headers["x-semrouter-cache"] == "bypass"
    _, headers, _ = await ask(url, chat("What is a monad?", n=2))
    assert headers["x-semrouter-cache"] == "bypass"
    await asyncio.sleep(0.05)
    assert await proxy.pipeline.stages[-1].backend.size() == 0  # type: ignore[attr-defined]
    _, headers, _ = await ask(url, chat("What is a monad?"), **{"cache-control": "no-cache"})
    assert headers["x-semrouter-cache"] == "miss"
    await stored(proxy, 1)
    _, headers, _ = await ask(url, chat("What is a monad?"), **{"cache-control": "no-cache"})
    assert headers["x-semrouter-cache"] == "miss"  # not looked up
    _, headers, _ = await ask(url, chat("What is a monad?"))
    assert headers["x-semrouter-cache"] == "hit"
    assert len(standin[0].requests) == 4


async def test_tenants_and_parameters_are_separate_scopes(
    cached: tuple[str, ProxyApp], standin: tuple[StandIn, str]
) -> None:
    url, proxy = cached
    question = chat("Summarise the plot of Hamlet")
    await ask(url, question, **{"x-semrouter-tenant": "a"})
    await stored(proxy, 1)
    _, headers, _ = await ask(url, question, **{"x-semrouter-tenant": "b"})
    assert headers["x-semrouter-cache"] == "miss"
    _, headers, _ = await ask(url, question, authorization="Bearer k1")
    assert headers["x-semrouter-cache"] == "miss"
    _, headers, _ = await ask(url, {**question, "temperature": 1.5}, **{"x-semrouter-tenant": "a"})
    assert headers["x-semrouter-cache"] == "miss"
    _, headers, _ = await ask(url, question, **{"x-semrouter-tenant": "a"})
    assert headers["x-semrouter-cache"] == "hit"


async def test_classify_reports_without_storing(
    cached: tuple[str, ProxyApp], standin: tuple[StandIn, str]
) -> None:
    url, proxy = cached
    async with aiohttp.ClientSession() as session:
        payload = {"messages": [{"role": "user", "content": "What is a monad?"}]}
        async with session.post(url + "/api/v1/classify", json=payload) as response:
            summary = await response.json()
    assert summary["cache"] == {"action": "miss", "reason": "not_found"}
    await asyncio.sleep(0.05)
    assert await proxy.pipeline.stages[-1].backend.size() == 0  # type: ignore[attr-defined]


async def test_a_decision_can_turn_the_cache_off(standin: tuple[StandIn, str]) -> None:
    config = cached_config(standin[1], decisions={"direct": {"enabled": False}})
    async with serving(ProxyApp(Router(config, WordEmbedder())).app) as url:
        _, headers, _ = await ask(url, chat("What is a monad?"))
    assert headers["x-semrouter-cache"] == "bypass"


async def test_off_is_a_bypass(standin: tuple[StandIn, str]) -> None:
    config = cached_config(standin[1], backend="off")
    async with serving(ProxyApp(Router(config)).app) as url:
        _, headers, _ = await ask(url, chat("What is a monad?"))
    assert headers["x-semrouter-cache"] == "bypass"


async def test_errors_and_broken_streams_are_never_cached() -> None:
    faulty = FaultyBackend()
    await faulty.start()
    try:
        data = minimal_config(cache={"backend": "memory"})
        for model in data["models"]:
            model["endpoints"] = [{"url": faulty.endpoint("r503")}]
            model["retries"] = 0
        data["models"][1]["endpoints"] = [{"url": faulty.endpoint("close")}]
        proxy = ProxyApp(Router(parse_config(data, env={}), WordEmbedder()))
        async with serving(proxy.app) as url:
            for _ in range(2):
                status, _, _ = await ask(url, chat("What is a monad?"))
                assert status >= 500
                await ask(url, chat("What is a monad?", model="reasoner", stream=True))
                await asyncio.sleep(0.05)
            stage = proxy.pipeline.stages[-1]
            assert await stage.backend.size() == 0  # type: ignore[attr-defined]
        assert faulty.hits["r503"] >= 1 and faulty.hits["close"] >= 1
    finally:
        await faulty.stop()


# --- the Redis backend (a real Redis 8) ---------------------------------------------------

needs_redis = pytest.mark.skipif(redis_binary() is None, reason="no redis-server (setup.sh)")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


def redis_backend(server: RedisServer, max_entries: int = 100, ttl_s: float = 60) -> RedisBackend:
    config = RedisCacheConfig(url=server.url, prefix="t", timeout_ms=200, retry_s=0.3)
    return RedisBackend(config, max_entries, ttl_s)


@needs_redis
async def test_redis_backend_keeps_scopes_apart_and_bounds_entries(
    redis_server: RedisServer,
) -> None:
    backend = redis_backend(redis_server, max_entries=5)
    await backend.start()
    try:
        for i in range(8):
            await backend.store(entry(f"s{i % 2}", f"t{i}"), unit(i))
        assert await backend.size() == 5
        found = await backend.search("s1", unit(7), 4, 0.99)
        assert [c.entry.text for c in found] == ["t7"]
        assert found[0].similarity == pytest.approx(1.0, abs=1e-4)
        assert await backend.search("s0", unit(7), 4, 0.99) == []
        assert await backend.search("s1", unit(1), 4, 0.99) == []  # evicted (least recent)
    finally:
        await backend.close()


@needs_redis
async def test_redis_entries_expire(redis_server: RedisServer) -> None:
    backend = redis_backend(redis_server, ttl_s=0.2)
    await backend.start()
    try:
        await backend.store(entry("s", "t"), unit(1))
        assert len(await backend.search("s", unit(1), 4, 0.9)) == 1
        await asyncio.sleep(0.4)
        assert await backend.search("s", unit(1), 4, 0.9) == []
    finally:
        await backend.close()


@needs_redis
async def test_a_dead_redis_is_skipped_fast_and_retried_later(redis_server: RedisServer) -> None:
    errors: list[str] = []
    config = RedisCacheConfig(url=redis_server.url, prefix="t", timeout_ms=200, retry_s=0.3)
    backend = RedisBackend(config, 100, 60, on_error=errors.append)
    await backend.start()
    try:
        await backend.store(entry("s", "t"), unit(1))
        redis_server.kill()
        started = time.perf_counter()
        with pytest.raises(CacheUnavailable):
            await backend.search("s", unit(1), 4, 0.9)
        with pytest.raises(CacheUnavailable):  # within retry_s: not even tried
            await backend.store(entry("s", "u"), unit(2))
        assert time.perf_counter() - started < 0.5
        assert errors == ["search"]
        redis_server.start()  # the same folder: the entry was saved
        await asyncio.sleep(0.35)
        assert [c.entry.text for c in await backend.search("s", unit(1), 4, 0.9)] == ["t"]
    finally:
        await backend.close()


@needs_redis
async def test_serving_goes_on_without_redis(
    redis_server: RedisServer, standin: tuple[StandIn, str]
) -> None:
    config = cached_config(
        standin[1], backend="redis", redis={"url": redis_server.url, "timeout_ms": 100}
    )
    proxy = ProxyApp(Router(config, WordEmbedder()))
    async with serving(proxy.app) as url:
        _, headers, _ = await ask(url, chat("What is a monad?"))
        assert headers["x-semrouter-cache"] == "miss"
        await stored(proxy, 1)
        _, headers, _ = await ask(url, chat("What is a monad?"))
        assert headers["x-semrouter-cache"] == "hit"
        redis_server.kill()
        status, headers, _ = await ask(url, chat("What is a monad?"))
        assert (status, headers["x-semrouter-cache"]) == (200, "bypass")
        async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
            metrics = await response.text()
    assert 'semrouter_cache_backend_errors_total{backend="redis",op="search"} 1.0' in metrics
    assert 'semrouter_cache_lookups_total{reason="backend_unavailable",result="bypass"}' in metrics
    assert len(standin[0].requests) == 2


# --- the stage through the ext_proc server (real protobuf messages, no Envoy) ---------------


async def test_extproc_asks_for_a_storable_response_and_answers_the_hit_itself() -> None:
    """As `semrouter envoy-config` sets the filter up with the cache on: the request body
    BUFFERED, response headers sent (Envoy honours mode overrides only then)."""
    servicer = ExtProcServicer(
        Pipeline(Router(cached_config("http://127.0.0.1:9"), WordEmbedder()))
    )
    raw = json.dumps(chat("What is a monad?")).encode()
    completion = Answer(
        {"role": "assistant", "content": "A monoid."}, "stop", "m", "c"
    ).completion()
    replies = await drive(
        servicer,
        [
            request_headers(),
            request_body(raw),
            response_headers("application/json"),
            response_body(completion[:10], end=False),
            response_body(completion[10:], end=True),
        ],
    )
    kinds = [r.WhichOneof("response") for r in replies]
    assert kinds == [
        "request_headers",
        "request_body",
        "response_headers",
        "response_body",
        "response_body",
    ]
    assert mutations(replies[1].request_body.response)["x-semrouter-cache"] == "miss"
    assert replies[2].mode_override.response_body_mode == ProcessingMode.STREAMED
    assert not replies[3].response_body.response.HasField("body_mutation")  # passed unchanged
    stage = servicer.pipeline.stages[-1]
    assert isinstance(stage, CacheStage) and stage.backend is not None
    for _ in range(100):
        if await stage.backend.size():
            break
        await asyncio.sleep(0.01)
    again = json.dumps(chat("what is a monad", stream=True)).encode()
    replies = await drive(servicer, [request_headers(), request_body(again)])
    assert [r.WhichOneof("response") for r in replies] == ["request_headers", "immediate_response"]
    answer = replies[1].immediate_response
    assert answer.status.code == 200
    assert answer.body.endswith(b"data: [DONE]\n\n") and b"A monoid." in answer.body
    headers = {o.header.key: o.header.raw_value.decode() for o in answer.headers.set_headers}
    assert headers["x-semrouter-cache"] == "hit"
    assert headers["content-type"] == "text/event-stream"


async def test_extproc_leaves_other_responses_alone() -> None:
    servicer = ExtProcServicer(
        Pipeline(Router(cached_config("http://127.0.0.1:9"), WordEmbedder()))
    )
    raw = json.dumps(chat("What is a monad?")).encode()
    replies = await drive(
        servicer,
        [
            request_headers(**{"cache-control": "no-store"}),
            request_body(raw),
            response_headers("application/json"),
        ],
    )
    assert mutations(replies[1].request_body.response)["x-semrouter-cache"] == "bypass"
    assert not replies[2].HasField("mode_override")
    error = ProcessingRequest(
        response_headers=HttpHeaders(
            headers=header_map({":status": "500", "content-type": "application/json"})
        )
    )
    replies = await drive(servicer, [request_headers(), request_body(raw), error])
    assert mutations(replies[1].request_body.response)["x-semrouter-cache"] == "miss"
    assert not replies[2].HasField("mode_override")  # a 500 is not stored: its body not wanted


# --- the benchmark's harness ---------------------------------------------------------------


def test_the_evaluation_set_and_its_split() -> None:
    pairs = load_pairs(PAIRS)
    assert len(pairs) >= 300
    kinds = {p.kind for p in pairs if not p.same}
    assert {"negation", "number", "entity", "comparison", "scope", "system", "history"} <= kinds
    by_question: dict[str, set[str]] = {}
    for pair in pairs:
        by_question.setdefault(json.dumps(pair.a, sort_keys=True), set()).add(pair.split)
    assert all(len(splits) == 1 for splits in by_question.values())  # no question in both
    validation = sum(p.split == "validation" for p in pairs)
    assert 0.2 < validation / len(pairs) < 0.4


def test_the_safe_threshold_is_the_lowest_without_false_hits() -> None:
    curve = sweep([0.95, 0.9, 0.7, 0.8], [True, True, True, False])
    assert safe_threshold(curve) == pytest.approx(0.805)
    point = at(curve, 0.805)
    assert (point["hit_rate"], point["false_hits"]) == (pytest.approx(2 / 3, abs=1e-3), 0)
    assert safe_threshold(sweep([1.0], [False])) > 1.0  # never: a cache that cannot hit


async def test_the_key_reuses_the_routers_one_encoder_pass(standin: tuple[StandIn, str]) -> None:
    data = minimal_config(cache={"backend": "memory"})
    data["signals"]["similarity"] = [{"name": "greeting", "examples": ["hello there"]}]
    for model in data["models"]:
        model["endpoints"] = [{"url": f"{standin[1]}/v1"}]
    embedder = WordEmbedder()
    proxy = ProxyApp(Router(parse_config(data, env={}), embedder))
    async with serving(proxy.app) as url:
        started = len(embedder.texts)  # the similarity examples, encoded at start
        question = {"model": "auto", "messages": [{"role": "user", "content": "What is a monad?"}]}
        _, headers, _ = await ask(url, question)
        assert headers["x-semrouter-cache"] == "miss"
        await stored(proxy, 1)
        _, headers, _ = await ask(url, question)
        assert headers["x-semrouter-cache"] == "hit"
    assert embedder.texts[started:] == ["What is a monad?"] * 2  # one pass per request


async def test_a_growing_scope_gets_its_index_built_off_the_loop() -> None:
    backend = MemoryBackend(5000, 60)
    for i in range(GRAPH_AT - 1):
        await backend.store(entry("big", f"t{i}"), unit(i))
    await backend.store(entry("small", "s"), unit(99_999))
    assert backend._scopes["big"].index is None  # scanned exactly so far
    await backend.store(entry("big", "last"), unit(GRAPH_AT))
    await backend.store(entry("big", "t0"), unit(0))  # replaces t0: deleted, then added
    index = backend._scopes["big"].index
    assert index is not None and backend._scopes["small"].index is None
    assert index.get_current_count() == GRAPH_AT  # t0's slot was reused
    for i in (1, 500, GRAPH_AT - 2):
        assert [c.entry.text for c in await backend.search("big", unit(i), 1, 0.99)] == [f"t{i}"]
    assert [c.entry.text for c in await backend.search("big", unit(0), 2, 0.99)] == ["t0"]
    assert await backend.size() == GRAPH_AT + 1
