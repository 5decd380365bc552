"""`SloControl`: the SLO controller as the pipeline and the transports use it.

- `adjust(outcome, model)`: a routed request's outcome degraded by its model's level (the
  decision's share of it, semrouter.slo.degrade), the steps applied, and the value of the
  `x-semrouter-slo` response header: `ok` (level 0), `ok;level=<n>` (a level this decision is
  not degraded at yet), or `degraded=<steps>;level=<n>` (steps as a comma list, in the order of
  `slo.degrade_order`; e.g. `degraded=thinking_budget,reasoning_off;level=2`).
- `ticket(model)`: what a transport times one forwarded request with. It calls `first_byte()`
  when the first body byte came (a JSON answer: with its headers), then `succeeded()` or
  `failed()` (a backend failure); a request the client abandoned is just dropped.
- `failover_target(model)`: the model the TTFT watchdog tries once every endpoint missed the
  first byte (`models[].slo.alternative`), and `retarget` to rewrite the body for it.
- `trace(model)`: what /api/v1/classify shows under "slo".

Metrics: semrouter_slo_level{model} (gauge), semrouter_slo_level_changes{model,direction},
semrouter_slo_degraded_requests{model,step}, semrouter_slo_failovers{model,to},
semrouter_slo_window_p95_seconds{model,kind} (ttft, latency; updated when judged).
Off (`slo.enabled: false`, or no model with an SLO) every method is a no-op returning None.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from semrouter.config.schema import DegradeStep, ModelConfig, RouterConfig
from semrouter.decide.engine import Outcome
from semrouter.reasoning.families import apply_reasoning, family_fields, strip_reasoning_controls
from semrouter.slo.controller import Change, ModelControl
from semrouter.slo.degrade import DecisionPlan, degrade, max_level, model_plan

SLO_HEADER = "x-semrouter-slo"


class SloMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.level = Gauge(
            "semrouter_slo_level",
            "The SLO controller's degradation level of each model (0: none).",
            ["model"],
            registry=registry,
        )
        self.changes = Counter(
            "semrouter_slo_level_changes",
            "Level changes of the SLO controller, by model and direction (up, down).",
            ["model", "direction"],
            registry=registry,
        )
        self.degraded = Counter(
            "semrouter_slo_degraded_requests",
            "Routed requests the SLO controller degraded, by model (as routed) and step.",
            ["model", "step"],
            registry=registry,
        )
        self.failovers = Counter(
            "semrouter_slo_failovers",
            "Streamed requests the TTFT watchdog moved to the alternative model, by model.",
            ["model", "to"],
            registry=registry,
        )
        self.p95 = Gauge(
            "semrouter_slo_window_p95_seconds",
            "p95 over the SLO window at the model's current level, by kind (ttft, latency).",
            ["model", "kind"],
            registry=registry,
        )


class Ticket:
    """One forwarded request's timing (see the module docstring)."""

    __slots__ = ("_clock", "_control", "_epoch", "_first", "_started")

    def __init__(self, control: ModelControl, clock: Callable[[], float]) -> None:
        self._control = control
        self._clock = clock
        self._epoch = control.epoch
        self._started = clock()
        self._first: float | None = None

    def start(self) -> None:
        """The request is sent to the backend now (timing starts here; it counts as load)."""
        self._started = self._clock()
        self._control.arrive()

    def first_byte(self) -> None:
        if self._first is None:
            self._first = self._clock()

    def succeeded(self) -> None:
        end = self._clock()
        first = self._first if self._first is not None else end
        self._control.record(
            self._epoch, (first - self._started) * 1000, (end - self._started) * 1000
        )

    def failed(self) -> None:
        self._control.record(self._epoch, None, None)


class SloControl:
    def __init__(
        self,
        config: RouterConfig,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._clock = clock
        settings = config.slo
        self._models = {m.name: m for m in config.models}
        self._plans: dict[str, dict[str, DecisionPlan]] = {}
        self._controls: dict[str, ModelControl] = {}
        if settings.enabled:
            for model in config.models:
                if model.slo is None:
                    continue
                plans = self._plans[model.name] = model_plan(config, model)
                self._controls[model.name] = ModelControl(
                    model.name, model.slo, settings, max_level(plans), clock
                )
        self.enabled = bool(self._controls)
        self.metrics = SloMetrics(registry) if self.enabled else None
        self._reasoning_fields = family_fields(
            f for m in config.models if (f := config.family(m)) is not None
        )

    def adjust(
        self, outcome: Outcome, model: ModelConfig, probe: bool = False
    ) -> tuple[Outcome, tuple[DegradeStep, ...], str] | None:
        """The degraded outcome (its `model` may be the alternative), the steps applied and
        the header value; None when the model has no SLO. probe: judge nothing, count
        nothing (/api/v1/classify)."""
        control = self._controls.get(model.name)
        if control is None:
            return None
        if not probe:
            self._judge(control)
        plan = self._plans[model.name].get(outcome.decision)
        steps = plan.at(control.level) if plan is not None else ()
        ok = f"ok;level={control.level}" if control.level else "ok"
        if not steps:
            return outcome, (), ok
        name = model.slo.alternative if model.slo is not None else None
        alternative = self._models.get(name) if name is not None else None
        reasons = alternative is not None and alternative.reasoning_family is not None
        degraded, applied = degrade(
            outcome, steps, alternative, reasons, self.config.slo.budget_factor
        )
        if not applied:
            return outcome, (), ok
        if not probe and self.metrics is not None:
            for step in dict.fromkeys(applied):  # a repeated thinking_budget counts once
                self.metrics.degraded.labels(model.name, step).inc()
        return degraded, applied, f"degraded={','.join(applied)};level={control.level}"

    def _judge(self, control: ModelControl) -> None:
        change = control.evaluate()
        if change is None or self.metrics is None:
            return
        self._changed(change)

    def _changed(self, change: Change) -> None:
        assert self.metrics is not None
        self.metrics.level.labels(change.model).set(change.after)
        direction = "up" if change.after > change.before else "down"
        self.metrics.changes.labels(change.model, direction).inc()
        for kind, value in (
            ("ttft", change.stats.ttft_p95_ms),
            ("latency", change.stats.latency_p95_ms),
        ):
            if value is not None:
                self.metrics.p95.labels(change.model, kind).set(value / 1000)

    def ticket(self, model: ModelConfig) -> Ticket | None:
        control = self._controls.get(model.name)
        return Ticket(control, self._clock) if control is not None else None

    def level(self, model: str) -> int:
        control = self._controls.get(model)
        return control.level if control is not None else 0

    def failover_target(self, model: ModelConfig) -> ModelConfig | None:
        """Where the watchdog sends a request whose every endpoint missed the first byte."""
        if not self.enabled or model.slo is None or model.slo.alternative is None:
            return None
        return self._models.get(model.slo.alternative)

    def first_byte_timeout_s(self, model: ModelConfig) -> float | None:
        """The TTFT watchdog's limit for a streamed request to `model` (None: no watchdog)."""
        if not self.enabled or model.slo is None or model.slo.first_byte_timeout_ms is None:
            return None
        return model.slo.first_byte_timeout_ms / 1000

    def failed_over(self, model: ModelConfig, target: ModelConfig) -> None:
        if self.metrics is not None:
            self.metrics.failovers.labels(model.name, target.name).inc()

    def retarget(self, body: dict[str, Any], outcome: Outcome | None, target: ModelConfig) -> None:
        """Rewrite a prepared body (in place) for the failover model: its id, and the routed
        reasoning in its family's dialect (a direct request's controls are the client's)."""
        body["model"] = target.upstream_id
        if outcome is None:
            return
        strip_reasoning_controls(body, self._reasoning_fields)
        family = self.config.family(target)
        if family is not None:
            apply_reasoning(body, family, outcome.use_reasoning, outcome.reasoning_effort)

    def trace(self, model: ModelConfig, steps: tuple[DegradeStep, ...]) -> dict[str, Any] | None:
        """What /api/v1/classify shows: the level, the window and what this request got."""
        control = self._controls.get(model.name)
        if control is None:
            return None
        stats = control.window.stats(self._clock())
        return {
            "model": model.name,
            "level": control.level,
            "max_level": control.top,
            "degraded": list(steps),
            "window": {
                "requests": stats.requests,
                "arrivals": stats.arrivals,
                "error_rate": stats.error_rate,
                "ttft_p95_ms": _round(stats.ttft_p95_ms),
                "latency_p95_ms": _round(stats.latency_p95_ms),
            },
            "slo": model.slo.model_dump(exclude_none=True) if model.slo else None,
        }


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None
