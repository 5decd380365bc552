"""Prometheus metrics of the guards, on the pipeline's registry (`/metrics`). Labels are guard
names, actions and entity types: never content. /api/v1/classify probes are not counted."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class GuardMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.actions = Counter(
            "semrouter_guard_actions",
            "Chat requests a guard acted on, by guard (jailbreak, pii) and action (block, "
            "redact, route, flag; error: the guard gave no verdict, see guards.on_error).",
            ["guard", "action"],
            registry=registry,
        )
        self.entities = Counter(
            "semrouter_guard_pii_entities",
            "PII entities found in chat requests, by type.",
            ["type"],
            registry=registry,
        )
