"""What a degradation level means for each decision routed to a model, and applying it.

A model's level L (0: none) is shared by every decision that routes to it, and each decision
takes its own share of it: its applicable steps (`slo.degrade_order`, less those that would
change nothing for it: an effort it does not set, reasoning it does not use, an alternative the
model lacks) in order, starting past its `offset`. Unprotected decisions have the rank of their
priority among them as offset (the default route is the lowest), so a higher priority is
degraded later; protected decisions start only once every unprotected one is fully degraded.
At level L a decision has its first `clamp(L - offset, 0, len(steps))` steps applied.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from semrouter.config.schema import (
    ROUTE_DECISION_DEFAULT,
    DegradeStep,
    ModelConfig,
    ReasoningEffort,
    RouterConfig,
)
from semrouter.decide.engine import Outcome


@dataclass(frozen=True, slots=True)
class DecisionPlan:
    offset: int
    steps: tuple[DegradeStep, ...]

    def at(self, level: int) -> tuple[DegradeStep, ...]:
        """The steps this decision takes at the model's level."""
        return self.steps[: min(max(level - self.offset, 0), len(self.steps))]


@dataclass(frozen=True, slots=True)
class _Routed:
    """A decision's reasoning as configured, whichever of Decision or DefaultRoute it is."""

    name: str
    priority: int
    protected: bool
    use_reasoning: bool
    effort: ReasoningEffort | None
    budget: int | None


def applicable(
    order: list[DegradeStep],
    use_reasoning: bool,
    effort: ReasoningEffort | None,
    budget: int | None,
    alternative: str | None,
) -> tuple[DegradeStep, ...]:
    """The steps of `order` that change a request routed this way."""
    changes = {
        "effort": use_reasoning and effort not in (None, "low"),
        "thinking_budget": use_reasoning and budget is not None,
        "reasoning_off": use_reasoning,
        "alternative": alternative is not None,
    }
    return tuple(step for step in order if changes[step])


def model_plan(config: RouterConfig, model: ModelConfig) -> dict[str, DecisionPlan]:
    """Per decision name that may route to `model`: its offset and steps."""
    assert model.slo is not None
    lowest = min((d.priority for d in config.decisions), default=0) - 1
    routed = [
        _Routed(
            d.name,
            d.priority,
            d.protected,
            d.use_reasoning,
            d.reasoning_effort,
            d.reasoning_budget_tokens,
        )
        for d in config.decisions
        if model.name in d.models
    ]
    default = config.default
    if default.model == model.name:
        routed.append(
            _Routed(
                ROUTE_DECISION_DEFAULT,
                lowest,
                False,
                default.use_reasoning,
                default.reasoning_effort,
                default.reasoning_budget_tokens,
            )
        )
    order = config.slo.degrade_order
    steps = {
        r.name: applicable(order, r.use_reasoning, r.effort, r.budget, model.slo.alternative)
        for r in routed
    }
    ordinary = sorted({r.priority for r in routed if not r.protected and steps[r.name]})
    plans = {
        r.name: DecisionPlan(ordinary.index(r.priority), steps[r.name])
        for r in routed
        if not r.protected and steps[r.name]
    }
    last = max((p.offset + len(p.steps) for p in plans.values()), default=0)
    plans.update(
        (r.name, DecisionPlan(last, steps[r.name])) for r in routed if r.protected and steps[r.name]
    )
    return plans


def max_level(plans: dict[str, DecisionPlan]) -> int:
    return max((p.offset + len(p.steps) for p in plans.values()), default=0)


def degrade(
    outcome: Outcome,
    steps: tuple[DegradeStep, ...],
    alternative: ModelConfig | None,
    alternative_reasons: bool,
    budget_factor: float,
) -> tuple[Outcome, tuple[DegradeStep, ...]]:
    """The outcome with `steps` applied, and the steps that changed it (in order).
    alternative_reasons: the alternative model has a reasoning family (else its requests
    cannot reason)."""
    applied: list[DegradeStep] = []
    for step in steps:
        if (
            step == "effort"
            and outcome.use_reasoning
            and outcome.reasoning_effort
            in (
                "medium",
                "high",
            )
        ):
            outcome = replace(outcome, reasoning_effort="low")
        elif step == "thinking_budget" and outcome.use_reasoning:
            budget = outcome.reasoning_budget_tokens
            if budget is None:
                continue
            smaller = max(1, int(budget * budget_factor))
            outcome = replace(outcome, reasoning_budget_tokens=smaller)
        elif step == "reasoning_off" and outcome.use_reasoning:
            outcome = replace(outcome, use_reasoning=False, reasoning_effort=None)
        elif step == "alternative" and alternative is not None:
            outcome = replace(outcome, model=alternative.name)
            if outcome.use_reasoning and not alternative_reasons:
                outcome = replace(outcome, use_reasoning=False, reasoning_effort=None)
        else:
            continue
        applied.append(step)
    return outcome, tuple(applied)
