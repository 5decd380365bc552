"""Choosing a decision: the highest-priority decision whose rules match, else the default route.

The outcome names the model (by its config name), whether and how hard it reasons (effort and
thinking budget), the optional system prompt and max_tokens cap. With several models and a
learned selector, the selector picks, at the decision's cost weight or, with a `budget`, at the
weight its budget plans
(semrouter.decide.budget; the tenant is the one `CURRENT_TENANT` holds for this request).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from semrouter.config.schema import (
    ROUTE_DECISION_DEFAULT,
    Decision,
    ReasoningEffort,
    RouterConfig,
    SystemPrompt,
)
from semrouter.decide.budget import CURRENT_TENANT, BudgetBook
from semrouter.decide.rules import matches, used_signals
from semrouter.signals.engine import SignalReport

if TYPE_CHECKING:
    from semrouter.decide.selector import LearnedSelector

DEFAULT_DECISION = ROUTE_DECISION_DEFAULT


@dataclass(frozen=True, slots=True)
class Outcome:
    decision: str
    model: str
    use_reasoning: bool
    reasoning_effort: ReasoningEffort | None
    system_prompt: SystemPrompt | None = None
    max_tokens: int | None = None
    reasoning_budget_tokens: int | None = None
    """Most reasoning tokens (with use_reasoning; semrouter.reasoning.thinking_budget)."""
    matched_signals: tuple[str, ...] = ()
    model_probabilities: dict[str, float] | None = None
    model_expected_costs: dict[str, float] | None = None


class DecisionEngine:
    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        order = sorted(enumerate(config.decisions), key=lambda item: (-item[1].priority, item[0]))
        self.decisions: list[Decision] = [d for _, d in order]
        self.selectors: dict[str, LearnedSelector] = {}
        self.budgets = BudgetBook(config.budget) if config.budget is not None else None
        for decision in self.decisions:
            if decision.selector is not None:
                from semrouter.decide.selector import load_selector

                self.selectors[decision.name] = load_selector(
                    decision.selector.artifact, decision.models
                )
        default = config.default
        self.default_outcome = Outcome(
            decision=DEFAULT_DECISION,
            model=default.model,
            use_reasoning=default.use_reasoning,
            reasoning_effort=default.reasoning_effort,
            reasoning_budget_tokens=default.reasoning_budget_tokens,
        )

    def fallback(self, name: str | None) -> Outcome:
        """The outcome used without signals: decision `name` (its first model, its reasoning,
        prompt and cap), or the default route when name is None."""
        decision = next((d for d in self.decisions if d.name == name), None)
        if decision is None:
            return self.default_outcome
        return Outcome(
            decision=decision.name,
            model=decision.models[0],
            use_reasoning=decision.use_reasoning,
            reasoning_effort=decision.reasoning_effort,
            system_prompt=decision.system_prompt,
            max_tokens=decision.max_tokens,
            reasoning_budget_tokens=decision.reasoning_budget_tokens,
        )

    def decide(self, signals: SignalReport, prompt_chars: int) -> Outcome:
        for decision in self.decisions:
            if decision.rules is None or matches(decision.rules, signals.fired):
                return self._outcome(decision, signals, prompt_chars)
        return self.default_outcome

    def _outcome(self, decision: Decision, signals: SignalReport, prompt_chars: int) -> Outcome:
        model = decision.models[0]
        choice = None
        selector = self.selectors.get(decision.name)
        if selector is not None and decision.selector is not None and signals.features is not None:
            if self.budgets is None:
                choice = selector.choose(
                    signals.features, prompt_chars, decision.selector.cost_weight
                )
            else:
                prediction = selector.predict(signals.features, prompt_chars)
                cost = prediction.expected_cost[0]
                scale = selector.cost_scale
                if self.budgets.config.tokens_per_minute is not None:  # tokens, not x params
                    cost = cost / selector.active_params_b
                    scale = scale / float(selector.active_params_b.mean())
                budget = self.budgets.get(
                    decision.name, CURRENT_TENANT.get(), scale, decision.selector.cost_weight
                )
                choice = selector.choice(prediction, budget.choose(prediction.p_correct[0], cost))
            model = choice.model
        used = used_signals(decision.rules, signals.fired) if decision.rules else []
        return Outcome(
            decision=decision.name,
            model=model,
            use_reasoning=decision.use_reasoning,
            reasoning_effort=decision.reasoning_effort,
            system_prompt=decision.system_prompt,
            max_tokens=decision.max_tokens,
            reasoning_budget_tokens=decision.reasoning_budget_tokens,
            matched_signals=tuple(dict.fromkeys(used)),
            model_probabilities=choice.probabilities if choice else None,
            model_expected_costs=choice.expected_costs if choice else None,
        )
