"""The routing policy of a loaded config as a graph: signals → decisions → models.

Decisions are listed in the order the engine tries them (priority, highest first; then file
order), ending with the default route. A signal has an edge to every decision whose rules name
it, marked `negated` when it sits under an odd number of NOTs (the decision needs it *not* to
fire). A decision has an edge to each of its models, labelled with the reasoning mode it sends.
Only signals some rule names are nodes, plus every named signal the config defines (unused
ones flagged); the built-in domains no rule names are left out. `warnings` lists what the
config cannot mean: decisions that can never be taken because a catch-all comes before them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from semrouter.config.schema import (
    ROUTE_DECISION_DEFAULT,
    Condition,
    Decision,
    RouterConfig,
    RuleNode,
)


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    kind: str
    """'signal', 'decision' or 'model'."""
    label: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    label: str = ""
    negated: bool = False


@dataclass(slots=True)
class PolicyGraph:
    nodes: list[Node]
    edges: list[Edge]
    warnings: list[str]

    def of_kind(self, kind: str) -> list[Node]:
        return [n for n in self.nodes if n.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [asdict(n) for n in self.nodes],
            "edges": [asdict(e) for e in self.edges],
            "warnings": self.warnings,
        }


def signal_id(name: str) -> str:
    return f"signal:{name}"


def decision_id(name: str) -> str:
    return f"decision:{name}"


def model_id(name: str) -> str:
    return f"model:{name}"


def evaluation_order(decisions: list[Decision]) -> list[Decision]:
    """The order semrouter.decide.engine tries decisions in: priority descending, then file."""
    ranked = sorted(enumerate(decisions), key=lambda item: (-item[1].priority, item[0]))
    return [d for _, d in ranked]


def rule_text(node: RuleNode | Condition, top: bool = True) -> str:
    """A rule tree as one line, e.g. `greeting AND NOT reasoning`."""
    if isinstance(node, Condition):
        return node.name
    if node.operator == "NOT":
        return f"NOT {rule_text(node.conditions[0], False)}"
    inner = f" {node.operator} ".join(rule_text(c, False) for c in node.conditions)
    return inner if top or len(node.conditions) == 1 else f"({inner})"


def leaves(node: RuleNode | Condition, negated: bool = False) -> list[tuple[str, bool]]:
    """(signal name, negated) for each leaf, in order; negated under an odd number of NOTs."""
    if isinstance(node, Condition):
        return [(node.name, negated)]
    flip = negated != (node.operator == "NOT")
    return [leaf for c in node.conditions for leaf in leaves(c, flip)]


def reasoning_mode(use_reasoning: bool, effort: str | None) -> str:
    if not use_reasoning:
        return "reasoning off"
    return f"reasoning on ({effort})" if effort else "reasoning on"


def policy_graph(config: RouterConfig) -> PolicyGraph:
    kinds = config.signals.names()
    ordered = evaluation_order(config.decisions)
    used: dict[str, None] = {}
    for decision in ordered:
        if decision.rules is not None:
            used.update(dict.fromkeys(name for name, _ in leaves(decision.rules)))
    s = config.signals
    named: list[str] = [
        *(e.name for e in s.keywords),
        *(e.name for e in s.similarity),
        *(e.name for e in s.context),
        *(e.name for e in s.tools),
        *(e.name for e in s.turns),
    ]
    signals = [
        Node(signal_id(name), "signal", name, {"type": kinds.get(name, "?"), "used": name in used})
        for name in [*used, *(n for n in named if n not in used)]
    ]
    decisions: list[Node] = []
    edges: list[Edge] = []
    warnings: list[str] = []
    catch_all: str | None = None
    for rank, decision in enumerate(ordered, 1):
        if catch_all is not None:
            warnings.append(
                f"decision '{decision.name}' (priority {decision.priority}) is never taken: "
                f"'{catch_all}' has no rules and comes before it"
            )
        elif decision.rules is None:
            catch_all = decision.name
        decisions.append(
            Node(
                decision_id(decision.name),
                "decision",
                decision.name,
                {
                    "rank": rank,
                    "priority": decision.priority,
                    "rules": rule_text(decision.rules) if decision.rules else "always",
                    "reasoning": reasoning_mode(decision.use_reasoning, decision.reasoning_effort),
                    "selector": decision.selector.artifact if decision.selector else None,
                    "system_prompt": decision.system_prompt.mode
                    if decision.system_prompt
                    else None,
                    "max_tokens": decision.max_tokens,
                    "fallback": decision.name == config.router.fallback_decision,
                    "reachable": catch_all is None or catch_all == decision.name,
                },
            )
        )
        if decision.rules is not None:
            for name, negated in dict.fromkeys(leaves(decision.rules)):
                edges.append(
                    Edge(
                        signal_id(name),
                        decision_id(decision.name),
                        "not" if negated else "",
                        negated,
                    )
                )
        mode = reasoning_mode(decision.use_reasoning, decision.reasoning_effort)
        edges.extend(Edge(decision_id(decision.name), model_id(m), mode) for m in decision.models)
    default = config.default
    decisions.append(
        Node(
            decision_id(ROUTE_DECISION_DEFAULT),
            "decision",
            ROUTE_DECISION_DEFAULT,
            {
                "rank": len(ordered) + 1,
                "priority": None,
                "rules": "when no decision matches",
                "reasoning": reasoning_mode(default.use_reasoning, default.reasoning_effort),
                "reachable": catch_all is None,
                "fallback": config.router.fallback_decision is None,
            },
        )
    )
    edges.append(
        Edge(
            decision_id(ROUTE_DECISION_DEFAULT),
            model_id(default.model),
            reasoning_mode(default.use_reasoning, default.reasoning_effort),
        )
    )
    models = [
        Node(
            model_id(m.name),
            "model",
            m.name,
            {
                "upstream_id": m.upstream_id,
                "reasoning_family": m.reasoning_family,
                "endpoints": len(m.endpoints),
            },
        )
        for m in config.models
    ]
    return PolicyGraph([*signals, *decisions, *models], edges, warnings)
