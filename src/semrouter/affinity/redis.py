"""The shared session store: one Redis key per session (`PREFIX:s:ID`, its state as JSON, with
the session TTL), so every replica behind a load balancer routes a conversation the same way.

Each call is bounded by `affinity.redis.timeout_ms`; a failure or timeout raises
AffinityUnavailable and for `retry_s` afterwards every call does so at once, so a dead or slow
Redis costs requests only their affinity (they are routed on their own), never an error. Redis
bounds the number of sessions by their TTL (and its own maxmemory policy).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from semrouter.affinity.store import AffinityStore, AffinityUnavailable, SessionState
from semrouter.config.schema import RedisAffinityConfig

T = TypeVar("T")


class RedisStore(AffinityStore):
    name = "redis"

    def __init__(self, config: RedisAffinityConfig, ttl_s: float) -> None:
        self.config = config
        self.ttl_ms = max(1, int(ttl_s * 1000))
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

    async def _call(self, op: str, work: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        if self._client is None or time.monotonic() < self._down_until:
            raise AffinityUnavailable(f"redis {op}: skipped after a recent failure")
        try:
            async with asyncio.timeout(self._timeout_s):
                return await work(self._client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = time.monotonic() + self.config.retry_s
            raise AffinityUnavailable(f"redis {op}: {exc or type(exc).__name__}") from None

    def _key(self, key: str) -> str:
        return f"{self.config.prefix}:s:{key}"

    async def get(self, key: str) -> SessionState | None:
        async def run(client: aioredis.Redis) -> bytes | None:
            raw = await client.get(self._key(key))
            return raw.encode() if isinstance(raw, str) else raw

        raw = await self._call("get", run)
        if raw is None:
            return None
        try:
            return SessionState.from_bytes(raw)
        except (ValueError, KeyError, TypeError):
            return None  # a foreign or corrupt value: the session starts afresh

    async def put(self, key: str, state: SessionState) -> None:
        blob = state.to_bytes()

        async def run(client: aioredis.Redis) -> None:
            await client.set(self._key(key), blob, px=self.ttl_ms)

        await self._call("put", run)
