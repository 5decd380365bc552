"""Evaluating a decision's rule tree (AND / OR / NOT over signal names) against fired signals."""

from __future__ import annotations

from collections.abc import Set

from semrouter.config.schema import Condition, RuleNode


def matches(node: RuleNode | Condition, fired: Set[str]) -> bool:
    if isinstance(node, Condition):
        return node.name in fired
    if node.operator == "AND":
        return all(matches(c, fired) for c in node.conditions)
    if node.operator == "OR":
        return any(matches(c, fired) for c in node.conditions)
    return not matches(node.conditions[0], fired)


def used_signals(node: RuleNode | Condition, fired: Set[str]) -> list[str]:
    """The fired signals a matching tree relied on (for explaining a decision)."""
    if isinstance(node, Condition):
        return [node.name] if node.name in fired else []
    if node.operator == "NOT":
        return []
    return [name for c in node.conditions if matches(c, fired) for name in used_signals(c, fired)]
