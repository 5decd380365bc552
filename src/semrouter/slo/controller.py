"""The degradation level of each model with an SLO, from its live traffic, with hysteresis.

Per model: a `RollingWindow` of the requests routed at its current level, and the level. The
window is judged (at most every `slot_s / 2`, on the request path; a few microseconds) as
- breach: some p95 (or the error rate) over `breach_ratio` of its SLO (a margin for the time a
  reaction takes), with at least `min_samples` requests, or however few once a whole window
  has passed since the last change;
- calm: every one at or below `recover_ratio` of its SLO, with as many requests; or no request
  at all in a whole window (the degraded traffic went elsewhere);
- neither (between the two thresholds, or too few requests yet): the level stays.
A breach raises the level by one, calm lowers it by one; never sooner than `hold_s` (at least
half the window) after the last change, so the level changes at most twice per window, and a
step back only after a whole window at the level. After
a change the window is emptied and requests routed before it are no longer recorded (their
`epoch` is past): the next verdict is on the new level's traffic only. A step back that ends
in a breach doubles the hold before the next step back (up to `max_backoff` times), so under a
constant load between what two levels can carry, the level settles instead of flapping;
reaching level 0 resets it.

Load memory: a breach remembers the arrival rate (requests sent to the model per second) the
level broke at. A step back to that level waits until the window's arrivals are clearly under
`LOAD_MARGIN` of what that rate gives: the level below is not probed at the load that just
broke it, only once the load fell (or its traffic went elsewhere). The memory lasts the
longest backoff (`hold x max_backoff`), after which a step back is tried at any load, so a
backend that gained capacity is found again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from semrouter.config.schema import ModelSlo, SloConfig
from semrouter.slo.window import RollingWindow, WindowStats

LOAD_MARGIN = 0.9
"""A step back to a level waits until the window's arrivals are under this share of what the
rate it broke at gives over the window, by two standard deviations of a Poisson count (at a
few requests per second, a window's count alone varies by a fifth at a constant load)."""


class Verdict(StrEnum):
    BREACH = "breach"
    CALM = "calm"
    HOLD = "hold"


def judge(
    stats: WindowStats,
    slo: ModelSlo,
    min_samples: int,
    recover_ratio: float,
    breach_ratio: float = 1.0,
) -> Verdict:
    if stats.requests < min_samples:
        return Verdict.HOLD
    pairs = (
        (stats.ttft_p95_ms, slo.ttft_p95_ms),
        (stats.latency_p95_ms, slo.latency_p95_ms),
        (stats.error_rate, slo.max_error_rate),
    )
    judged = [(value, target) for value, target in pairs if value is not None and target]
    if any(value > breach_ratio * target for value, target in judged):
        return Verdict.BREACH
    if all(value <= recover_ratio * target for value, target in judged):
        return Verdict.CALM
    return Verdict.HOLD


@dataclass(slots=True)
class Change:
    """A level change, as `ModelControl.evaluate` reports it."""

    model: str
    before: int
    after: int
    stats: WindowStats


class ModelControl:
    """One model's window and level. Single event loop: no locking."""

    def __init__(
        self,
        name: str,
        slo: ModelSlo,
        config: SloConfig,
        top: int,
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self.slo = slo
        self.config = config
        self.top = top
        self.level = 0
        self.epoch = 0
        self.window = RollingWindow(config.window_s, config.slots)
        self._clock = clock
        self.changed_at = clock()
        self._next_judgement = 0.0
        self._backoff = 1
        self._stepped_back = False
        self._broke_at: dict[int, tuple[float, float]] = {}  # level: (arrival rate, when)
        self.last_stats = WindowStats(0, 0, None, None)

    def arrive(self) -> None:
        """A request is sent to the model now."""
        self.window.arrive(self._clock())

    def record(self, epoch: int, ttft_ms: float | None, latency_ms: float | None) -> None:
        """A finished request routed at `epoch` (latency None: it failed)."""
        if epoch == self.epoch:
            self.window.record(self._clock(), ttft_ms, latency_ms)

    def evaluate(self) -> Change | None:
        """Judge the window if it is time to; the level change it made, if any."""
        now = self._clock()
        if now < self._next_judgement:
            return None
        self._next_judgement = now + self.window.slot_s / 2
        stats = self.last_stats = self.window.stats(now)
        since = now - self.changed_at
        if since < self.config.hold:
            return None
        # Once a whole window has passed since the change, its samples are all the evidence
        # there will be: judged however few; none at all (the traffic went elsewhere) is calm.
        full = since >= self.config.window_s
        needed = 1 if full else self.config.min_samples
        verdict = judge(
            stats, self.slo, needed, self.config.recover_ratio, self.config.breach_ratio
        )
        if full and stats.requests == 0:
            verdict = Verdict.CALM
        before = self.level
        if verdict is Verdict.BREACH and self.level < self.top:
            if self._stepped_back:
                self._backoff = min(self._backoff * 2, self.config.max_backoff)
            self._broke_at[self.level] = (stats.arrival_rate(since), now)
            self.level += 1
            self._stepped_back = False
        elif verdict is Verdict.CALM and self.level > 0:
            # A step back is judged on a whole window at this level: right after a step up
            # the queue built before it drains, and those first requests look faster than the
            # level carries.
            if since < max(self.config.hold * self._backoff, self.config.window_s):
                return None
            if self._load_broke(self.level - 1, stats, since, now):
                return None
            self.level -= 1
            self._stepped_back = True
            if self.level == 0:
                self._backoff = 1
        else:
            return None
        self.epoch += 1
        self.changed_at = now
        self.window.clear()
        return Change(self.name, before, self.level, stats)

    def _load_broke(self, level: int, stats: WindowStats, since: float, now: float) -> bool:
        """Whether `level` broke, within the memory's life, at a load the window's arrivals are
        not clearly under (see `LOAD_MARGIN`); no arrivals at all never count as load."""
        memory = self._broke_at.get(level)
        if memory is None or stats.arrivals == 0:
            return False
        broke_rate, when = memory
        if now - when >= self.config.hold * self.config.max_backoff:
            del self._broke_at[level]
            return False
        expected = broke_rate * min(stats.span_s, since)
        return stats.arrivals > LOAD_MARGIN * expected - 2 * math.sqrt(expected)
