"""Conversation-shape signals: `turns` rules, `tool_loop` and `reask`.

They read the messages' roles (no text is encoded) and, for `reask`, the routing text's
embedding from the one encoder pass against the embeddings of the session's earlier user
turns, which the session store kept from their own requests' passes: nothing is encoded twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from semrouter.config.schema import REASK_SIGNAL, TOOL_LOOP_SIGNAL, SignalsConfig
from semrouter.signals.engine import SignalReport

_TOOL_ROLES = frozenset({"tool", "function"})


def user_turns(messages: Sequence[Mapping[str, Any]]) -> int:
    return sum(1 for m in messages if m.get("role") == "user")


def in_tool_loop(messages: Sequence[Mapping[str, Any]]) -> bool:
    """The conversation ends with tool results answering the assistant's tool calls: the last
    message is a tool result and the first message before the results is an assistant turn
    that called a tool."""
    if not messages or messages[-1].get("role") not in _TOOL_ROLES:
        return False
    for message in reversed(messages):
        role = message.get("role")
        if role in _TOOL_ROLES:
            continue
        return role == "assistant" and bool(
            message.get("tool_calls") or message.get("function_call")
        )
    return False


def reask_score(embedding: np.ndarray | None, earlier: Sequence[np.ndarray]) -> float:
    """The best cosine of the last user turn to an earlier one (unit-norm vectors); -1 with
    nothing to compare (an earlier embedding of another width, from another encoder, is
    skipped)."""
    same = [e for e in earlier if embedding is not None and e.shape == embedding.shape]
    if embedding is None or not same:
        return -1.0
    matrix = np.stack([np.asarray(e, dtype=np.float32) for e in same])
    return float((matrix @ embedding.astype(np.float32)).max())


def conversation_signals(
    report: SignalReport,
    messages: Sequence[Mapping[str, Any]],
    config: SignalsConfig,
    earlier: Sequence[np.ndarray] = (),
    reask_threshold: float = 1.0,
) -> None:
    """Adds the conversation signals to `report` (scores and fired)."""
    turns = user_turns(messages)
    for rule in config.turns:
        report.scores[rule.name] = float(turns)
        if turns >= rule.min_turns and (rule.max_turns is None or turns <= rule.max_turns):
            report.fired.add(rule.name)
    loop = in_tool_loop(messages)
    report.scores[TOOL_LOOP_SIGNAL] = float(loop)
    if loop:
        report.fired.add(TOOL_LOOP_SIGNAL)
    score = reask_score(report.embedding, earlier)
    report.scores[REASK_SIGNAL] = score
    if score >= reask_threshold:
        report.fired.add(REASK_SIGNAL)
