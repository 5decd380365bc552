from __future__ import annotations

from semrouter.config.schema import Condition, RuleNode
from semrouter.decide.rules import matches, used_signals


def tree(data: dict) -> RuleNode:
    return RuleNode.model_validate(data)


def test_and_or_not_nested() -> None:
    rule = tree(
        {
            "operator": "AND",
            "conditions": [
                {"operator": "OR", "conditions": [{"name": "math"}, {"name": "physics"}]},
                {"operator": "NOT", "conditions": [{"name": "greeting"}]},
            ],
        }
    )
    assert matches(rule, {"math"})
    assert matches(rule, {"physics", "reasoning"})
    assert not matches(rule, {"math", "greeting"})
    assert not matches(rule, {"reasoning"})


def test_used_signals_explain_the_match() -> None:
    rule = tree({"operator": "OR", "conditions": [{"name": "a"}, {"name": "b"}, {"name": "c"}]})
    assert used_signals(rule, {"a", "c"}) == ["a", "c"]
    assert used_signals(Condition(name="x"), {"y"}) == []
