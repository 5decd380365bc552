"""Prometheus metrics of the HTTP proxy's backend calls: how backends answered and failed.

They join the pipeline's registry (`semrouter.pipeline.metrics`), so /metrics shows both.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.backend_failures = Counter(
            "semrouter_backend_failures",
            "Failed backend attempts (retried or not), by model and kind of fault.",
            ["model", "kind"],
            registry=self.registry,
        )
        self.breaker_transitions = Counter(
            "semrouter_breaker_transitions",
            "Circuit breaker state changes, by model, endpoint URL and the new state.",
            ["model", "endpoint", "state"],
            registry=self.registry,
        )
        self.thinking_budgets = Counter(
            "semrouter_thinking_budget",
            "Requests whose thinking budget the router enforced (semrouter.proxy.thinking), by "
            "model and outcome: cut (the thought was ended at the budget) or within.",
            ["model", "outcome"],
            registry=self.registry,
        )
        self.upstream_seconds = Histogram(
            "semrouter_upstream_seconds",
            "Time until the backend's response headers, by model.",
            ["model"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
