"""The decision trace the playground shows: every decision, in the order the engine tries them,
with its rule tree evaluated node by node against the signals that fired.

The first decision whose rules match is the one the rules choose (`first_match`); the route may
still differ (the fallback after a deadline, session affinity), which the playground shows
beside it. Evaluation is `semrouter.decide.rules.matches`, the engine's own.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from semrouter.config.schema import ROUTE_DECISION_DEFAULT, Condition, RouterConfig, RuleNode
from semrouter.dashboard.policy import evaluation_order, rule_text
from semrouter.decide.rules import matches


def explain(node: RuleNode | Condition, fired: Set[str]) -> dict[str, Any]:
    """A rule tree as data, each node with whether it matched."""
    if isinstance(node, Condition):
        return {"signal": node.name, "matched": node.name in fired}
    return {
        "operator": node.operator,
        "matched": matches(node, fired),
        "conditions": [explain(c, fired) for c in node.conditions],
    }


def decision_trace(config: RouterConfig, fired: Set[str]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    first: str | None = None
    for decision in evaluation_order(config.decisions):
        matched = decision.rules is None or matches(decision.rules, fired)
        if matched and first is None:
            first = decision.name
        steps.append(
            {
                "decision": decision.name,
                "priority": decision.priority,
                "rules": rule_text(decision.rules) if decision.rules else "always",
                "matched": matched,
                "tree": explain(decision.rules, fired) if decision.rules else None,
            }
        )
    return {"steps": steps, "first_match": first or ROUTE_DECISION_DEFAULT}
