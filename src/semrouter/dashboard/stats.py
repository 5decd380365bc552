"""Live traffic from the router's own Prometheus registry, as the dashboard's JSON (/api/v1/stats).

The registry is read as it is, whatever series it holds: each poll takes a snapshot (every sample
of every family), and a bounded history of them (`dashboard.history_points`, at most one per
`dashboard.sample_interval_s`) gives rates and latency percentiles over a window. Requests,
errors and in-flight come from their known series; every histogram in seconds is a latency, and
every counter or histogram about tokens a token count, so series other modules add later (stage
latencies, TTFT, token usage) appear without changes here. Percentiles interpolate inside the
bucket the rank falls in, as Prometheus' histogram_quantile does.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from semrouter.config.schema import DashboardConfig

REQUESTS = "semrouter_requests"
ERRORS = "semrouter_errors"
IN_FLIGHT = "semrouter_in_flight_requests"
QUANTILES = (0.5, 0.95, 0.99)
MAX_SERIES = 50
"""Label sets listed per family at most (the busiest first): a bounded answer."""

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Family:
    kind: str
    help: str
    samples: Mapping[tuple[str, Labels], float]
    """(sample name, labels) → value, e.g. ('semrouter_requests_total', (('decision', ...),))."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    time: float
    families: Mapping[str, Family]

    def value(self, family: str, sample: str, labels: Labels) -> float:
        found = self.families.get(family)
        return found.samples.get((sample, labels), 0.0) if found is not None else 0.0


def snapshot(registry: CollectorRegistry, now: float | None = None) -> Snapshot:
    families: dict[str, Family] = {}
    for metric in registry.collect():
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): float(s.value)
            for s in metric.samples
            if not s.name.endswith("_created")
        }
        families[metric.name] = Family(metric.type, metric.documentation, samples)
    return Snapshot(time.time() if now is None else now, families)


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The q-quantile of (upper bound, cumulative count) buckets; None without observations.
    A rank in the +Inf bucket answers the largest finite bound."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            share = (rank - lower_count) / (count - lower_count)
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def _without(labels: Labels, name: str) -> Labels:
    return tuple((k, v) for k, v in labels if k != name)


def _counter_deltas(new: Snapshot, old: Snapshot | None, family: str) -> dict[Labels, float]:
    """labels → increase of a counter's `_total` samples since old (its value without old)."""
    found = new.families.get(family)
    if found is None:
        return {}
    total = f"{family}_total"
    deltas: dict[Labels, float] = {}
    for (sample, labels), value in found.samples.items():
        if sample in (total, family):
            before = old.value(family, sample, labels) if old is not None else 0.0
            deltas[labels] = max(value - before, 0.0)  # a restart resets counters
    return deltas


def _histogram_deltas(
    new: Snapshot, old: Snapshot | None, family: str
) -> dict[Labels, tuple[list[tuple[float, float]], float, float]]:
    """labels (without `le`) → (buckets, count, sum), increases since old."""
    found = new.families[family]
    series: dict[Labels, tuple[list[tuple[float, float]], float, float]] = {}
    for (sample, labels), value in found.samples.items():
        delta = value - (old.value(family, sample, labels) if old is not None else 0.0)
        delta = max(delta, 0.0)
        if sample == f"{family}_bucket":
            le = dict(labels)["le"]
            key = _without(labels, "le")
            buckets, count, total = series.get(key, ([], 0.0, 0.0))
            buckets.append((float(le), delta))
            series[key] = (buckets, count, total)
        elif sample in (f"{family}_count", f"{family}_sum"):
            buckets, count, total = series.get(labels, ([], 0.0, 0.0))
            if sample.endswith("_count"):
                count = delta
            else:
                total = delta
            series[labels] = (buckets, count, total)
    return series


def _merged(series: Iterable[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    merged: dict[float, float] = {}
    for buckets in series:
        for bound, count in buckets:
            merged[bound] = merged.get(bound, 0.0) + count
    return list(merged.items())


def _per_s(value: float, seconds: float | None) -> float | None:
    return round(value / seconds, 4) if seconds else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _is_latency(name: str, family: Family) -> bool:
    return family.kind == "histogram" and name.endswith("_seconds")


def _is_tokens(name: str, family: Family) -> bool:
    return (
        "token" in name
        and family.kind in ("counter", "histogram")
        and not name.endswith("_seconds")
    )


@dataclass(frozen=True, slots=True)
class Interval:
    """The traffic between two snapshots, computed once (the history's intervals are cached)."""

    time: float
    requests_per_s: Mapping[str, float | None]
    """'decision → model' → requests/s."""
    errors_per_s: float | None
    latency_ms: Mapping[str, float | None]
    """'<histogram> p95' → milliseconds, all labels together, for histograms observed in it."""


def interval(old: Snapshot, new: Snapshot) -> Interval:
    seconds = new.time - old.time
    routes: dict[str, float] = {}
    for labels, delta in _counter_deltas(new, old, REQUESTS).items():
        names = dict(labels)
        key = f"{names.get('decision', '?')} → {names.get('model', '?')}"
        routes[key] = routes.get(key, 0.0) + delta
    latency: dict[str, float | None] = {}
    for name, family in new.families.items():
        if _is_latency(name, family):
            series = _histogram_deltas(new, old, name).values()
            if any(count for _, count, _ in series):
                merged = _merged(buckets for buckets, _, _ in series)
                latency[f"{name} p95"] = _ms(histogram_quantile(0.95, merged))
    return Interval(
        new.time,
        {k: _per_s(v, seconds) for k, v in routes.items()},
        _per_s(sum(_counter_deltas(new, old, ERRORS).values()), seconds),
        latency,
    )


class Stats:
    """The snapshots of one registry and what the dashboard shows of them. Thread-safe: the
    dashboard computes reports off the event loop."""

    def __init__(self, registry: CollectorRegistry, config: DashboardConfig) -> None:
        self.registry = registry
        self.interval_s = config.sample_interval_s
        self.history: deque[Snapshot] = deque(maxlen=config.history_points)
        self.intervals: deque[Interval] = deque(maxlen=config.history_points - 1)
        """Between consecutive snapshots of the history."""
        self._lock = threading.Lock()

    def sample(self, now: float | None = None) -> Snapshot:
        """A snapshot now; kept in the history unless the last kept one is too recent."""
        current = snapshot(self.registry, now)
        if not self.history or current.time - self.history[-1].time >= self.interval_s:
            if self.history:
                self.intervals.append(interval(self.history[-1], current))
            self.history.append(current)
        return current

    def report(self, window_s: float = 60.0, now: float | None = None) -> dict[str, Any]:
        with self._lock:
            return self._report(window_s, now)

    def _report(self, window_s: float, now: float | None) -> dict[str, Any]:
        current = self.sample(now)
        earlier = [s for s in self.history if s.time < current.time]
        within = [s for s in earlier if current.time - s.time <= window_s]
        base = within[0] if within else (earlier[-1] if earlier else None)
        seconds = current.time - base.time if base is not None else None
        requests = _counter_deltas(current, base, REQUESTS)
        totals = _counter_deltas(current, None, REQUESTS)
        errors = _counter_deltas(current, base, ERRORS)
        error_totals = _counter_deltas(current, None, ERRORS)
        return {
            "time": current.time,
            "window_s": round(seconds, 3) if seconds is not None else None,
            "totals": {
                "requests": sum(totals.values()),
                "errors": sum(error_totals.values()),
                "in_flight": current.value(IN_FLIGHT, IN_FLIGHT, ()),
            },
            "rates": {
                "requests_per_s": _per_s(sum(requests.values()), seconds),
                "errors_per_s": _per_s(sum(errors.values()), seconds),
            },
            "requests": _rows(totals, requests, seconds),
            "errors": _rows(error_totals, errors, seconds),
            "latency": self._latency(current, base),
            "tokens": self._tokens(current, base, seconds),
            "timeline": self._timeline(current),
            "metrics": [
                {"name": name, "type": f.kind, "help": f.help, "samples": len(f.samples)}
                for name, f in sorted(current.families.items())
            ],
        }

    def _latency(self, current: Snapshot, base: Snapshot | None) -> list[dict[str, Any]]:
        """Per histogram in seconds and label set: count and percentiles over the window, or
        since start when the window saw none."""
        rows: list[dict[str, Any]] = []
        for name, family in sorted(current.families.items()):
            if not _is_latency(name, family):
                continue
            window = _histogram_deltas(current, base, name)
            overall = _histogram_deltas(current, None, name)
            busiest = sorted(overall.items(), key=lambda item: -item[1][1])[:MAX_SERIES]
            for labels, (all_buckets, all_count, _) in busiest:
                buckets, count, _ = window.get(labels, ([], 0.0, 0.0))
                scope = "window"
                if count <= 0:
                    buckets, count, scope = all_buckets, all_count, "total"
                rows.append(
                    {
                        "metric": name,
                        "labels": dict(labels),
                        "count": count,
                        "scope": scope,
                        **{
                            f"p{round(q * 100)}_ms": _ms(histogram_quantile(q, buckets))
                            for q in QUANTILES
                        },
                    }
                )
        return rows

    def _tokens(
        self, current: Snapshot, base: Snapshot | None, seconds: float | None
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for name, family in sorted(current.families.items()):
            if not _is_tokens(name, family):
                continue
            if family.kind == "counter":
                totals = _counter_deltas(current, None, name)
                window = _counter_deltas(current, base, name)
            else:
                totals = {k: v[2] for k, v in _histogram_deltas(current, None, name).items()}
                window = {k: v[2] for k, v in _histogram_deltas(current, base, name).items()}
            rows.extend({"metric": name, **row} for row in _rows(totals, window, seconds))
        return rows

    def _timeline(self, current: Snapshot) -> dict[str, Any]:
        """Per interval between kept snapshots (and from the last one to now, when now was not
        kept): requests/s by decision → model (0 where a route had none), errors/s, and the
        p95 of each latency histogram (None where it had no observation)."""
        points = [*self.intervals]
        if self.history and self.history[-1] is not current:
            points.append(interval(self.history[-1], current))
        routes = dict.fromkeys(k for p in points for k in p.requests_per_s)
        latency = dict.fromkeys(k for p in points for k in p.latency_ms)
        return {
            "time": [p.time for p in points],
            "requests_per_s": {k: [p.requests_per_s.get(k, 0.0) for p in points] for k in routes},
            "errors_per_s": [p.errors_per_s for p in points],
            "latency_ms": {k: [p.latency_ms.get(k) for p in points] for k in latency},
        }


def _rows(
    totals: Mapping[Labels, float], window: Mapping[Labels, float], seconds: float | None
) -> list[dict[str, Any]]:
    """One row per label set: its labels, total and rate over the window; the busiest first."""
    busiest = sorted(totals.items(), key=lambda item: -item[1])[:MAX_SERIES]
    return [
        {**dict(labels), "total": total, "per_s": _per_s(window.get(labels, 0.0), seconds)}
        for labels, total in busiest
    ]
