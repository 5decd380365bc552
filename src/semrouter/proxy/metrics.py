"""Prometheus metrics: what was routed where, how long routing took, how backends answered."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "semrouter_requests",
            "Chat requests by routing decision, chosen model and reasoning mode.",
            ["decision", "model", "reasoning"],
            registry=self.registry,
        )
        self.errors = Counter(
            "semrouter_errors",
            "Requests answered with an error, by status and code.",
            ["status", "code"],
            registry=self.registry,
        )
        self.route_seconds = Histogram(
            "semrouter_route_seconds",
            "Time to classify and decide one request.",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.upstream_seconds = Histogram(
            "semrouter_upstream_seconds",
            "Time until the backend's response headers, by model.",
            ["model"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
