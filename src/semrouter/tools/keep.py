"""Which of a request's tools survive: the keeping rules, apart from how tools are scored.

kept = the top_k tools scoring at least min_score
     + the tool `tool_choice` names, the `always_keep` names, and the tools the conversation
       already called (assistant `tool_calls`, legacy `function_call`)
all of them when `tool_choice` is 'required' or names a tool and the catalog is within top_k;
the best-scoring tool when that leaves nothing (unless allow_empty, and never when tool_choice
requires a call). The result is in the request's order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semrouter.config.schema import ToolKeeping, ToolsConfig


@dataclass(frozen=True, slots=True)
class Keeping:
    """The keeping rules in force for one decision."""

    top_k: int
    min_score: float
    always_keep: frozenset[str]
    allow_empty: bool

    @classmethod
    def of(cls, config: ToolsConfig, override: ToolKeeping | None = None) -> Keeping | None:
        """The rules with a decision's overrides applied; None where selection is off."""
        o = override or ToolKeeping()
        if not (config.enabled if o.enabled is None else o.enabled):
            return None
        return cls(
            top_k=config.top_k if o.top_k is None else o.top_k,
            min_score=config.min_score if o.min_score is None else o.min_score,
            always_keep=frozenset(config.always_keep if o.always_keep is None else o.always_keep),
            allow_empty=config.allow_empty if o.allow_empty is None else o.allow_empty,
        )


def named_choice(tool_choice: object) -> str | None:
    """The tool a `tool_choice` object names ({"type": "function", "function": {"name": ...}})."""
    if not isinstance(tool_choice, dict):
        return None
    inner = tool_choice.get(str(tool_choice.get("type", "function")))
    name = inner.get("name") if isinstance(inner, dict) else tool_choice.get("name")
    return name if isinstance(name, str) else None


def called_tools(messages: Sequence[dict[str, Any]]) -> Iterator[str]:
    """Names of the tools the conversation's assistant turns called."""
    for message in messages:
        if message.get("role") != "assistant":
            continue
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict) and (name := named_choice(call)) is not None:
                yield name
        if (name := named_choice({"function": message.get("function_call")})) is not None:
            yield name


def kept_indices(
    names: Sequence[str],
    scores: np.ndarray,
    keeping: Keeping,
    tool_choice: object,
    messages: Sequence[dict[str, Any]],
) -> list[int]:
    """Indices of the tools to forward, ascending (the request's order)."""
    named = named_choice(tool_choice)
    must_call = tool_choice == "required" or named is not None
    if must_call and len(names) <= keeping.top_k:
        return list(range(len(names)))
    best_first = np.argsort(-scores, kind="stable")
    keep = {int(i) for i in best_first[: keeping.top_k] if scores[i] >= keeping.min_score}
    pinned = {*keeping.always_keep, *called_tools(messages), named}
    keep.update(i for i, name in enumerate(names) if name in pinned)
    if not keep and names and (must_call or not keeping.allow_empty):
        keep.add(int(best_first[0]))
    return sorted(keep)
