"""Each family's exact upstream body, and that client reasoning controls are replaced."""

from __future__ import annotations

from typing import Any

import pytest

from semrouter.config.schema import DEFAULT_REASONING_FAMILIES, ReasoningFamily
from semrouter.reasoning.families import apply_reasoning, strip_reasoning_controls

BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def rewritten(
    family: ReasoningFamily, on: bool, effort: Any = None, **client: Any
) -> dict[str, Any]:
    body = {**BASE, **client}
    strip_reasoning_controls(body, ("think",))
    apply_reasoning(body, family, on, effort)
    return body


@pytest.mark.parametrize("on", [True, False])
def test_qwen3_sends_enable_thinking_explicitly(on: bool) -> None:
    body = rewritten(DEFAULT_REASONING_FAMILIES["qwen3"], on)
    assert body == {**BASE, "chat_template_kwargs": {"enable_thinking": on}}


@pytest.mark.parametrize("on", [True, False])
def test_deepseek_uses_thinking_kwarg(on: bool) -> None:
    body = rewritten(DEFAULT_REASONING_FAMILIES["deepseek"], on)
    assert body == {**BASE, "chat_template_kwargs": {"thinking": on}}


def test_gpt_oss_effort_levels() -> None:
    family = DEFAULT_REASONING_FAMILIES["gpt-oss"]
    assert rewritten(family, True, "high") == {**BASE, "reasoning_effort": "high"}
    assert rewritten(family, True, None) == {**BASE, "reasoning_effort": "medium"}
    assert rewritten(family, False, "high") == BASE


def test_effort_family_can_send_an_explicit_off_effort() -> None:
    family = ReasoningFamily(type="reasoning_effort", off_effort="low")
    assert rewritten(family, False) == {**BASE, "reasoning_effort": "low"}


def test_generic_field_family() -> None:
    family = ReasoningFamily(type="field", parameter="think")
    assert rewritten(family, True) == {**BASE, "think": True}
    assert rewritten(family, False, think=True) == {**BASE, "think": False}


def test_client_controls_are_replaced_not_merged() -> None:
    body = rewritten(
        DEFAULT_REASONING_FAMILIES["qwen3"],
        False,
        reasoning_effort="high",
        reasoning={"effort": "high"},
        chat_template_kwargs={"enable_thinking": True, "thinking": True, "custom": 1},
    )
    assert body == {**BASE, "chat_template_kwargs": {"custom": 1, "enable_thinking": False}}


def test_strip_drops_empty_or_malformed_template_kwargs() -> None:
    body = {**BASE, "chat_template_kwargs": {"thinking": True}}
    strip_reasoning_controls(body)
    assert body == BASE
    body = {**BASE, "chat_template_kwargs": "garbage"}
    strip_reasoning_controls(body)
    assert body == BASE
