"""The shared cache backend: a Redis 8 server, its native vector sets, entries in hashes.

Several `semrouter serve` / `extproc` replicas pointed at one server share one cache, and a
restart of any of them loses nothing. Keys, under `cache.redis.prefix`:

  PREFIX:v:SCOPE   a vector set (VADD/VSIM, unquantised) of the scope's entry ids
  PREFIX:e:ID      a hash {scope, text, answer} with the entry's TTL
  PREFIX:lru       a sorted set "SCOPE|ID" by last use: past max_entries the least recently
                   used entries are removed (hash and vector set element alike)

A search is one VSIM in the scope's own set (no other scope's entry can come back) and one
pipelined read of the candidates' hashes; a vector whose hash expired is removed then. Every
call is bounded by `timeout_ms`; a failure or timeout raises CacheUnavailable, and for
`retry_s` afterwards every call does so at once, so a dead or slow Redis costs requests
nothing but the cache.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from semrouter.cache.backend import CacheBackend, CacheUnavailable, Candidate, Entry
from semrouter.config.schema import RedisCacheConfig

T = TypeVar("T")


class RedisBackend(CacheBackend):
    name = "redis"

    def __init__(
        self,
        config: RedisCacheConfig,
        max_entries: int,
        ttl_s: float,
        on_error: Callable[[str], None] = lambda _op: None,
    ) -> None:
        self.config = config
        self.max_entries = max_entries
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._on_error = on_error
        self._prefix = config.prefix
        self._timeout_s = config.timeout_ms / 1000
        self._down_until = 0.0
        self._client: aioredis.Redis | None = None

    async def start(self) -> None:
        self._client = aioredis.Redis.from_url(
            self.config.url,
            socket_timeout=self._timeout_s,
            socket_connect_timeout=self.config.connect_timeout_ms / 1000,
            max_connections=self.config.max_connections,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}:{kind}:{name}"

    async def _call(self, op: str, work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """One bounded exchange with Redis; CacheUnavailable on failure (and for retry_s)."""
        if self._client is None or time.monotonic() < self._down_until:
            raise CacheUnavailable(f"redis {op}: skipped after a recent failure")
        try:
            async with asyncio.timeout(self._timeout_s):
                return await work(self._client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = time.monotonic() + self.config.retry_s
            self._on_error(op)
            raise CacheUnavailable(f"redis {op}: {exc or type(exc).__name__}") from None

    async def search(
        self, scope: str, vector: np.ndarray, count: int, min_similarity: float
    ) -> list[Candidate]:
        blob = np.asarray(vector, dtype=np.float32).tobytes()
        vectors = self._key("v", scope)

        async def run(client: aioredis.Redis) -> list[Candidate]:
            scored = await _command(
                client, "VSIM", vectors, "FP32", blob, "WITHSCORES", "COUNT", count
            )
            if not scored:
                return []
            pairs = _pairs(scored)
            # VSIM's score is (1 + cosine) / 2.
            near = [(i, 2 * s - 1) for i, s in pairs if 2 * s - 1 >= min_similarity]
            if not near:
                return []
            async with client.pipeline(transaction=False) as pipe:
                for ident, _ in near:
                    pipe.hgetall(self._key("e", ident))
                rows = await pipe.execute()
            found, gone = [], []
            for (ident, similarity), row in zip(near, rows, strict=True):
                if not row:
                    gone.append(ident)
                    continue
                entry = Entry(row[b"scope"].decode(), row[b"text"].decode(), row[b"answer"])
                if entry.scope == scope:
                    found.append(Candidate(entry, similarity, f"{scope}|{ident}"))
            if gone:
                await _command(client, "VREM", vectors, *gone)
            return found

        return await self._call("search", run)

    async def store(self, entry: Entry, vector: np.ndarray) -> None:
        ident = uuid.uuid4().hex
        blob = np.asarray(vector, dtype=np.float32).tobytes()
        vectors = self._key("v", entry.scope)
        lru = self._key("lru", "all")

        async def run(client: aioredis.Redis) -> None:
            async with client.pipeline(transaction=False) as pipe:
                key = self._key("e", ident)
                pipe.hset(key, mapping={"scope": entry.scope, "text": entry.text})
                pipe.hset(key, "answer", entry.answer)
                pipe.pexpire(key, self.ttl_ms)
                _command(pipe, "VADD", vectors, "FP32", blob, ident, "NOQUANT")
                pipe.pexpire(vectors, self.ttl_ms)
                pipe.zadd(lru, {f"{entry.scope}|{ident}": time.time()})
                pipe.zcard(lru)
                *_, held = await pipe.execute()
            if held > self.max_entries:
                await self._evict(client, lru, held - self.max_entries)

        await self._call("store", run)

    async def _evict(self, client: aioredis.Redis, lru: str, excess: int) -> None:
        oldest: list[tuple[bytes, float]] = await client.zpopmin(lru, excess)  # type: ignore[assignment]
        async with client.pipeline(transaction=False) as pipe:
            for member, _ in oldest:
                scope, _, ident = member.decode().partition("|")
                pipe.delete(self._key("e", ident))
                _command(pipe, "VREM", self._key("v", scope), ident)
            await pipe.execute()

    async def touch(self, candidate: Candidate) -> None:
        lru = self._key("lru", "all")
        await self._call(
            "touch", lambda client: client.zadd(lru, {candidate.key: time.time()}, xx=True)
        )

    async def size(self) -> int:
        lru = self._key("lru", "all")
        return int(await self._call("size", lambda client: client.zcard(lru)))


def _command(target: Any, *args: Any) -> Any:
    """A raw command (redis-py has no typed methods for vector sets): on a client, awaitable;
    on a pipeline, queued."""
    return target.execute_command(*args)


def _pairs(scored: Any) -> list[tuple[str, float]]:
    """VSIM WITHSCORES answers a flat list (RESP2) or a mapping (RESP3)."""
    if isinstance(scored, dict):
        items = list(scored.items())
    else:
        items = list(zip(scored[::2], scored[1::2], strict=True))
    return [(_text(k), float(v)) for k, v in items]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
