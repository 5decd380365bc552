"""Prometheus metrics of the request path, the same whichever transport serves it.

`Pipeline` records what was routed where, why a fallback answered and how long routing took;
each transport records its errors here and adds its own series (the HTTP proxy: backend calls)
to the same registry, which it exports at /metrics (`semrouter serve`) or on its metrics port
(`semrouter extproc --metrics-port`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from semrouter.observe import current_observation
from semrouter.pipeline.errors import RouterError
from semrouter.pipeline.router import Route


class PipelineMetrics:
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
        self.fallbacks = Counter(
            "semrouter_fallbacks",
            "Requests routed by the fallback decision, by reason (deadline, embedding_error).",
            ["reason"],
            registry=self.registry,
        )
        self.route_seconds = Histogram(
            "semrouter_route_seconds",
            "Time to classify and decide one request.",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.client_requests = Counter(
            "semrouter_client_requests",
            "Chat requests by client key name (router.auth on) and outcome: 'routed' or the "
            "error code (rate_limit_exceeded, forbidden, ...).",
            ["key", "outcome"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "semrouter_in_flight_requests",
            "API requests being served (streams until their last byte).",
            registry=self.registry,
        )

    def routed(self, route: Route) -> None:
        self.requests.labels(route.decision, route.model.name, route.reasoning).inc()
        self.route_seconds.observe(route.route_ms / 1000)
        if route.fallback is not None:
            self.fallbacks.labels(route.fallback).inc()

    def failed(self, error: RouterError) -> None:
        self.errors.labels(str(error.status), error.code).inc()
        if (observation := current_observation()) is not None:
            observation.failed(error.code)  # for the request's log line and spans
