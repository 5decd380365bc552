"""A circuit breaker per backend endpoint, and the endpoint's Retry-After hold.

closed ──(`failures` consecutive failed attempts)──▶ open ──(`open_s` later)──▶ half-open
half-open lets exactly one request through (the probe): its success closes the breaker, its
failure opens it again for another `open_s`. A probe that ends without a verdict (the client
went away first) frees the slot for the next request.

Separately, an endpoint that answered with `Retry-After` is held out of rotation until then,
whatever the breaker's state. Time comes from an injected clock, so tests need no sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from semrouter.config.schema import BreakerConfig


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """One endpoint's health. Single event loop, so no locking."""

    def __init__(
        self,
        config: BreakerConfig,
        on_change: Callable[[BreakerState], None] = lambda _state: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._on_change = on_change
        self._clock = clock
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._held_until = 0.0

    def _set(self, state: BreakerState) -> None:
        if state is not self.state:
            self.state = state
            self._on_change(state)

    def acquire(self) -> bool:
        """May a request go to this endpoint now? In half-open, a yes makes it the probe."""
        now = self._clock()
        if now < self._held_until:
            return False
        if self.state is BreakerState.OPEN:
            if now < self._opened_at + self._config.open_s:
                return False
            self._set(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN:
            if self._probing:
                return False
            self._probing = True
        return True

    def success(self) -> None:
        self._failures = 0
        self._probing = False
        self._set(BreakerState.CLOSED)

    def failure(self) -> None:
        self._probing = False
        if self.state is BreakerState.OPEN:
            return  # a request that started before the breaker opened
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or (
            self._config.enabled and self._failures >= self._config.failures
        ):
            self._opened_at = self._clock()
            self._set(BreakerState.OPEN)

    def release(self) -> None:
        """The request ended without a verdict on the endpoint (e.g. the client went away)."""
        self._probing = False

    def hold(self, seconds: float) -> None:
        """Keep the endpoint out of rotation for `seconds` (its Retry-After)."""
        self._held_until = max(self._held_until, self._clock() + seconds)

    def ready_in(self) -> float:
        """Seconds until `acquire` can say yes again (0 if it may now or a probe is running)."""
        now = self._clock()
        wait = self._held_until - now
        if self.state is BreakerState.OPEN:
            wait = max(wait, self._opened_at + self._config.open_s - now)
        return max(wait, 0.0)
