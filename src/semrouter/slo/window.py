"""Rolling latency and error statistics of one model's live traffic, in bounded memory.

A `RollingWindow` covers `window_s` seconds as a ring of `slots` time slots. Each slot holds
two fixed log-spaced histograms (TTFT and latency: `BINS` counts from `LOW_MS` up, each bin
about 9.5% wide; a quantile is interpolated inside its bin), its request and error counts, and
its arrivals (requests sent to the backend, counted when sent: the load, whatever the latency).
A sample goes into the slot of the moment it is recorded, reusing that ring entry once its
slot is older than the window; reading merges the live slots. Memory is `slots x 2 x BINS`
counters whatever the traffic, recording is a logarithm and two increments, and reading is
`slots x BINS` additions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LOW_MS = 0.5
"""The lowest bin's lower edge; anything faster counts in the first bin."""
BINS = 160
_LOG_RATIO = math.log(2_000_000) / BINS  # the top bin starts near 1,000 s
_LOG_LOW = math.log(LOW_MS)


def bin_of(ms: float) -> int:
    """The histogram bin of a duration in milliseconds."""
    if ms <= LOW_MS:
        return 0
    return min(int((math.log(ms) - _LOG_LOW) / _LOG_RATIO), BINS - 1)


def bin_value(index: int) -> float:
    """A bin's representative duration (its geometric middle), in milliseconds."""
    return math.exp(_LOG_LOW + (index + 0.5) * _LOG_RATIO)


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What a window holds: requests, failed ones, the p95s (None without samples), and the
    arrivals over the seconds the window spans."""

    requests: int
    errors: int
    ttft_p95_ms: float | None
    latency_p95_ms: float | None
    arrivals: int = 0
    span_s: float = 0.0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def arrival_rate(self, since_s: float) -> float:
        """Arrivals per second, over the window or the `since_s` seconds since it was cleared."""
        seconds = min(self.span_s, since_s)
        return self.arrivals / seconds if seconds > 0 else 0.0


class _Slot:
    __slots__ = ("arrivals", "errors", "index", "latency", "requests", "ttft")

    def __init__(self) -> None:
        self.index = -1
        self.requests = 0
        self.errors = 0
        self.arrivals = 0
        self.ttft = [0] * BINS
        self.latency = [0] * BINS

    def reset(self, index: int) -> None:
        self.index = index
        self.requests = self.errors = self.arrivals = 0
        self.ttft = [0] * BINS
        self.latency = [0] * BINS


class RollingWindow:
    """The last `window_s` seconds of one model's requests (times in seconds, any monotonic
    origin; the caller passes `now`)."""

    def __init__(self, window_s: float, slots: int) -> None:
        self.slot_s = window_s / slots
        self._ring = [_Slot() for _ in range(slots)]

    def _slot(self, now: float) -> _Slot:
        index = int(now // self.slot_s)
        slot = self._ring[index % len(self._ring)]
        if slot.index != index:
            slot.reset(index)
        return slot

    def record(self, now: float, ttft_ms: float | None, latency_ms: float | None) -> None:
        """One request: a success has its latency (and TTFT when known); a failure neither."""
        slot = self._slot(now)
        slot.requests += 1
        if ttft_ms is not None:
            slot.ttft[bin_of(ttft_ms)] += 1
        if latency_ms is None:
            slot.errors += 1
        else:
            slot.latency[bin_of(latency_ms)] += 1

    def arrive(self, now: float) -> None:
        """One request sent to the backend."""
        self._slot(now).arrivals += 1

    def clear(self) -> None:
        for slot in self._ring:
            slot.index = -1

    def stats(self, now: float, quantile: float = 0.95) -> WindowStats:
        oldest = int(now // self.slot_s) - len(self._ring)
        live = [s for s in self._ring if s.index > oldest]
        return WindowStats(
            requests=sum(s.requests for s in live),
            errors=sum(s.errors for s in live),
            ttft_p95_ms=_quantile([s.ttft for s in live], quantile),
            latency_p95_ms=_quantile([s.latency for s in live], quantile),
            arrivals=sum(s.arrivals for s in live),
            span_s=now - (oldest + 1) * self.slot_s,
        )


def _quantile(histograms: list[list[int]], quantile: float) -> float | None:
    counts = [sum(column) for column in zip(*histograms, strict=True)] if histograms else []
    total = sum(counts)
    if not total:
        return None
    rank = quantile * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            # Interpolated inside the bin (log-uniformly): within a few percent, not ~10%.
            return math.exp(_LOG_LOW + (index + (rank - seen) / count) * _LOG_RATIO)
        seen += count
    return bin_value(BINS - 1)
