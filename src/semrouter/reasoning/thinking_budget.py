"""Mid-stream thinking budgets: counting reasoning tokens as they pass and building the
continuation request that ends the thinking.

Counting is cheap and bounded: one streamed delta ≈ one token for `reasoning_content`; text inside
`<think>…</think>` is counted by whitespace-separated pieces, with tags that arrive split across
chunks recognised by keeping at most `len("</think>") - 1` characters of carry-over.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"
FORCING_PHRASE = "\n\nConsidering the limited time, I have to give the answer now.\n"


@dataclass
class ThinkingCounter:
    """Counts reasoning tokens over a stream; `exhausted` once `budget` is reached."""

    budget: int
    tokens: int = 0
    reasoning: list[str] = field(default_factory=list)
    closed: bool = False
    _in_think: bool = False
    _carry: str = ""

    @property
    def exhausted(self) -> bool:
        return not self.closed and self.tokens >= self.budget

    @property
    def text(self) -> str:
        return "".join(self.reasoning)

    def feed_reasoning_delta(self, delta: str) -> None:
        """A `reasoning_content` delta: one chunk counts as one token."""
        if delta:
            self.tokens += 1
            self.reasoning.append(delta)

    def feed_content(self, text: str) -> None:
        """A `content` delta that may carry `<think>…</think>` (tags may be split)."""
        buf = self._carry + text
        self._carry = ""
        while buf:
            tag = CLOSE_TAG if self._in_think else OPEN_TAG
            at = buf.find(tag)
            if at >= 0:
                if self._in_think:
                    self._add_thought(buf[:at])
                    self.closed = True
                self._in_think = not self._in_think
                buf = buf[at + len(tag) :]
                continue
            keep = _partial_suffix(buf, tag)
            if self._in_think:
                self._add_thought(buf[: len(buf) - keep])
            self._carry = buf[len(buf) - keep :]
            return

    def _add_thought(self, piece: str) -> None:
        if piece:
            self.tokens += max(1, len(piece.split())) if piece.strip() else 0
            self.reasoning.append(piece)


def _partial_suffix(buf: str, tag: str) -> int:
    """Length of the longest suffix of buf that is a proper prefix of tag."""
    for n in range(min(len(tag) - 1, len(buf)), 0, -1):
        if tag.startswith(buf[-n:]):
            return n
    return 0


def continuation_body(body: dict[str, Any], partial_reasoning: str, server: str) -> dict[str, Any]:
    """The request that continues after the thinking was cut at the budget.

    The assistant prefix is the partial reasoning, the `<think>` families' closing of thought
    (Qwen3, DeepSeek; the template kwargs are kept so the template still renders the thought) and
    a forcing phrase. server "vllm" continues it with `continue_final_message`; "llamacpp"
    continues a trailing assistant message by itself (assistant prefill).
    """
    out = copy.deepcopy(body)
    prefix = OPEN_TAG + partial_reasoning + FORCING_PHRASE + CLOSE_TAG + "\n\n"
    out["messages"] = [*out.get("messages", []), {"role": "assistant", "content": prefix}]
    if server == "vllm":
        out["continue_final_message"] = True
        out["add_generation_prompt"] = False
    return out


def budget_header(used: int, budget: int | None, cut: bool) -> str:
    """The `x-semrouter-budget` value: `thinking=USED/BUDGET[,cut]` or `none`."""
    if budget is None:
        return "none"
    return f"thinking={used}/{budget}" + (",cut" if cut else "")
