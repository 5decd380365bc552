"""Per-key quotas: requests per minute and tokens per minute, as token buckets in memory.

Each limit is a bucket holding up to one minute's allowance, refilled continuously (so a key at
rest may spend a whole minute's worth at once, then a steady 1/60 of it per second). A request
is let through only if every limit of its key has room for it, and then is charged to all of
them; otherwise it is charged nothing and learns how long until it would fit. Memory is bounded:
the buckets are made once, one set per configured key, never per request or per tenant. They
are per process: N router replicas allow N times the configured rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from semrouter.config.schema import ClientKey


class TokenBucket:
    """Up to `per_minute` units, refilled at per_minute / 60 per second on `clock` (seconds)."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.capacity = float(per_minute)
        self.level = self.capacity
        self._per_s = per_minute / 60.0
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._updated) * self._per_s)
        self._updated = now

    def wait_s(self, cost: float) -> float:
        """Seconds until `cost` units are there (0: now). `cost` must not exceed the capacity."""
        self._refill()
        return max(0.0, (cost - self.level) / self._per_s)

    def take(self, cost: float) -> None:
        self.level -= cost


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request over a limit: which one, and when it would fit (None: never, it is larger
    than the whole limit)."""

    limit: str
    per_minute: int
    cost: int
    retry_after_s: float | None


@dataclass(frozen=True, slots=True)
class _Limit:
    name: str
    per_minute: int
    bucket: TokenBucket
    counts_tokens: bool  # else requests: one unit per request

    def cost(self, tokens: int) -> int:
        return tokens if self.counts_tokens else 1


class Quotas:
    """The buckets of every configured key with a limit."""

    def __init__(
        self, keys: Sequence[ClientKey], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits: dict[str, list[_Limit]] = {}
        for key in keys:
            limits = [
                _Limit(name, per_minute, TokenBucket(per_minute, clock), counts_tokens)
                for name, per_minute, counts_tokens in (
                    ("requests_per_minute", key.requests_per_minute, False),
                    ("tokens_per_minute", key.tokens_per_minute, True),
                )
                if per_minute is not None
            ]
            if limits:
                self._limits[key.name] = limits

    def charge(self, key: str, tokens: int) -> Refusal | None:
        """Charge one request of `tokens` tokens to `key`'s limits, or say why not (and then
        charge nothing). The refusal names the limit that takes longest to have room."""
        limits = self._limits.get(key, [])
        worst: Refusal | None = None
        for limit in limits:
            cost = limit.cost(tokens)
            if cost > limit.per_minute:
                return Refusal(limit.name, limit.per_minute, cost, None)
            wait = limit.bucket.wait_s(cost)
            if wait > 0 and (worst is None or wait > (worst.retry_after_s or 0.0)):
                worst = Refusal(limit.name, limit.per_minute, cost, wait)
        if worst is not None:
            return worst
        for limit in limits:
            limit.bucket.take(limit.cost(tokens))
        return None
