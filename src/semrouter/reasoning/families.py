"""Reasoning control in each model family's dialect.

Applied only when semrouter made the decision (`model: auto`). Every reasoning control a client
may have sent (any family's) is removed first, so the decision is what the backend sees: the
client's conflicting fields are replaced, never merged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from semrouter.config.schema import ReasoningEffort, ReasoningFamily

# Template switches known to mean "think" in chat_template_kwargs, whichever family sent them.
_TEMPLATE_SWITCHES = ("enable_thinking", "thinking")
# Top-level fields clients use to ask for reasoning in various APIs.
_TOP_LEVEL_CONTROLS = ("reasoning_effort", "reasoning", "thinking", "enable_thinking")


def strip_reasoning_controls(body: dict[str, Any], extra_fields: Iterable[str] = ()) -> None:
    for key in (*_TOP_LEVEL_CONTROLS, *extra_fields):
        body.pop(key, None)
    kwargs = body.get("chat_template_kwargs")
    if isinstance(kwargs, dict):
        kwargs = {k: v for k, v in kwargs.items() if k not in _TEMPLATE_SWITCHES}
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        else:
            body.pop("chat_template_kwargs")
    elif kwargs is not None:
        body.pop("chat_template_kwargs")


def apply_reasoning(
    body: dict[str, Any],
    family: ReasoningFamily,
    use_reasoning: bool,
    effort: ReasoningEffort | None,
) -> None:
    """Write the family's reasoning control into body (already stripped of client controls)."""
    if family.type == "chat_template_kwargs":
        assert family.parameter is not None
        kwargs = body.setdefault("chat_template_kwargs", {})
        kwargs[family.parameter] = use_reasoning
    elif family.type == "field":
        assert family.parameter is not None
        body[family.parameter] = use_reasoning
    elif use_reasoning:
        body["reasoning_effort"] = effort or "medium"
    elif family.off_effort is not None:
        body["reasoning_effort"] = family.off_effort


def family_fields(families: Iterable[ReasoningFamily]) -> tuple[str, ...]:
    """Top-level field names the configured 'field' families use (stripped from client bodies)."""
    return tuple(f.parameter for f in families if f.type == "field" and f.parameter)
