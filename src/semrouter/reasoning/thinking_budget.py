"""Thinking budgets (`reasoning_budget_tokens`): how each family's budget is enforced, counting
reasoning tokens as they pass, and the continuation that ends a thought at the budget.

Enforcement, best first (`plan_budget`): the family's own budget field (`budget_field`), its
effort levels (`reasoning_effort` families: the budget picks the level when the route gave
none), else the router itself (`semrouter serve`, semrouter.proxy.thinking): it counts reasoning
tokens as they pass and, at the budget, ends the thought with a continuation. Where the router
does not own the upstream connection (ext_proc behind Envoy), the last resort is a `max_tokens`
cap of budget + `CAP_ANSWER_TOKENS`.

Counting: reasoning arrives as `reasoning_content` (or `reasoning`) deltas, or as content
inside `<think>…</think>`. Each non-empty piece counts max(1, its words, its characters / 16):
one per token when the backend streams a token per delta (llama.cpp, vLLM), and never less than
a word count when deltas carry several tokens; counting every 16 characters bounds the text kept
per counted token (a delta of one endless "word" cannot make the counter hold unbounded text).
Tags split across deltas are recognised by keeping at most `len("</think>") - 1` characters back.

The continuation repeats the request with the assistant's partial output as a final assistant
message: the thought so far, a forcing phrase and the closing `</think>` (Qwen3's documented
method), sent with vLLM's `continue_final_message: true, add_generation_prompt: false`; llama.cpp's
`llama-server` continues a final assistant message (prefill) and ignores the flags
(llama-cpp-python's server renders it as a closed turn: docs/configuration.md, "Thinking budgets").
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from semrouter.config.schema import ReasoningEffort, ReasoningFamily

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"
FORCING_PHRASE = "\n\nConsidering the limited time, I have to give the answer now.\n"
BUDGET_HEADER = "x-semrouter-budget"
REASONING_FIELDS = ("reasoning_content", "reasoning")
"""Delta/message fields backends put parsed reasoning in (vLLM, SGLang, llama.cpp: the first;
newer vLLM: the second)."""
MAX_CHARS_PER_TOKEN = 16
CAP_ANSWER_TOKENS = 1024
"""Where only a max_tokens cap can enforce a budget: the tokens allowed after the thinking."""
_EFFORT_BELOW: tuple[tuple[int, ReasoningEffort], ...] = ((2048, "low"), (16384, "medium"))

Enforcement = Literal["native", "effort", "router", "max_tokens"]


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    """How one request's thinking budget is enforced."""

    budget: int
    how: Enforcement

    def header(self) -> str:
        """The planned `x-semrouter-budget` (what a router-enforced request reports at its end
        is `budget_header`)."""
        return f"thinking={self.budget},{self.how}"


def plan_budget(
    family: ReasoningFamily | None, use_reasoning: bool, budget: int | None, midstream: bool
) -> BudgetPlan | None:
    """The enforcement for a route (None: no budget applies). midstream: the transport can
    enforce it itself (`semrouter serve`)."""
    if budget is None or not use_reasoning or family is None:
        return None
    if family.budget_field is not None:
        return BudgetPlan(budget, "native")
    if family.type == "reasoning_effort":
        return BudgetPlan(budget, "effort")
    return BudgetPlan(budget, "router" if midstream else "max_tokens")


def effort_for_budget(budget: int) -> ReasoningEffort:
    for below, effort in _EFFORT_BELOW:
        if budget < below:
            return effort
    return "high"


def apply_budget(
    body: dict[str, Any],
    plan: BudgetPlan,
    family: ReasoningFamily,
    effort: ReasoningEffort | None,
) -> None:
    """Write what the backend needs to know of the plan into body (after `apply_reasoning`):
    the native field, an effort level (unless the route chose one), or the max_tokens cap.
    A router-enforced plan changes nothing here."""
    if plan.how == "native":
        assert family.budget_field is not None
        *parents, leaf = family.budget_field.split(".")
        node = body
        for name in parents:
            child = node.get(name)
            node[name] = child = child if isinstance(child, dict) else {}
            node = child
        node[leaf] = plan.budget
    elif plan.how == "effort" and effort is None:
        body["reasoning_effort"] = effort_for_budget(plan.budget)
    elif plan.how == "max_tokens":
        cap_max_tokens(body, plan.budget + CAP_ANSWER_TOKENS)


def cap_max_tokens(body: dict[str, Any], cap: int) -> None:
    """At most cap output tokens: lowers max_tokens/max_completion_tokens, or sets max_tokens."""
    present = False
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int):
            present = True
            body[key] = min(value, cap)
    if not present:
        body["max_tokens"] = cap


def count_tokens(text: str) -> int:
    """The tokens a piece of streamed text counts for (0 for an empty one)."""
    if not text:
        return 0
    return max(1, len(text.split()), -(-len(text) // MAX_CHARS_PER_TOKEN))


def prefill(messages: list[dict[str, Any]]) -> str | None:
    """The client's assistant prefill: the content of a final assistant message."""
    if messages and messages[-1].get("role") == "assistant":
        content = messages[-1].get("content")
        return content if isinstance(content, str) else None
    return None


def opens_thought(text: str | None) -> bool:
    """Whether text (a prefill) leaves a `<think>` open, so the output starts inside it."""
    return text is not None and text.rfind(OPEN_TAG) > text.rfind(CLOSE_TAG)


@dataclass
class ThinkingCounter:
    """Counts the reasoning tokens of one response (stream deltas, or a whole message) and keeps
    what the continuation needs: the thought so far and the content around it.

    `closed`: the thought ended (`</think>`, or content after reasoning deltas), or the response
    began with an answer, not a thought: nothing more is counted or kept."""

    budget: int
    in_thought: bool = False
    """The output starts inside a thought (a prefill left `<think>` open)."""
    tokens: int = 0
    closed: bool = False
    reasoning_field: str | None = None
    """The field reasoning came in (None: none came, or it came as `<think>` text)."""
    _reasoning: list[str] = field(default_factory=list)
    _content: list[str] = field(default_factory=list)
    _carry: str = ""

    @property
    def exhausted(self) -> bool:
        return not self.closed and self.tokens >= self.budget

    @property
    def open_thought(self) -> bool:
        """The output so far ends inside a thought."""
        return not self.closed and (self.in_thought or self.reasoning_field is not None)

    def feed(self, delta: dict[str, Any]) -> None:
        """A stream delta or a whole message (`content` and/or a reasoning field)."""
        if self.closed:
            return
        for name in REASONING_FIELDS:
            text = delta.get(name)
            if isinstance(text, str) and text:
                self.reasoning_field = name
                self._reasoning.append(text)
                self.tokens += count_tokens(text)
        content = delta.get("content")
        if isinstance(content, str) and content:
            if self.reasoning_field is not None:
                self._content.append(content)
                self.closed = bool(content.strip())
            else:
                self._feed_tagged(content)

    def _feed_tagged(self, text: str) -> None:
        self._content.append(text)
        buf = self._carry + text
        self._carry = ""
        while buf and not self.closed:
            tag = CLOSE_TAG if self.in_thought else OPEN_TAG
            at = buf.find(tag)
            if at >= 0:
                self._piece(buf[:at])
                if self.in_thought:
                    self.closed = True
                elif not self.closed:
                    self.in_thought = True
                buf = buf[at + len(tag) :]
                continue
            keep = _partial_suffix(buf, tag)
            self._piece(buf[: len(buf) - keep])
            self._carry = buf[len(buf) - keep :]
            return

    def _piece(self, piece: str) -> None:
        if not self.in_thought and piece.strip():
            self.closed = True  # an answer before any thought: this response does not think
            return
        self.tokens += count_tokens(piece)  # whitespace before a thought too: it stays bounded

    def prefix(self, forcing: bool) -> str:
        """The assistant output so far as the continuation's prefix (after the prefill); with
        forcing, the thought is ended by the forcing phrase and the closing tag."""
        content = "".join(self._content)
        if self.reasoning_field is None:
            return content + (FORCING_PHRASE + CLOSE_TAG + "\n\n" if forcing else "")
        thought = "".join(self._reasoning) + (FORCING_PHRASE if forcing else "")
        return OPEN_TAG + thought + CLOSE_TAG + "\n\n" + content

    def bridge(self) -> dict[str, str]:
        """The delta the client gets between the cut output and the continuation's, so that what
        it saw reads as the prefix the backend continued."""
        if self.reasoning_field is None:
            return {"content": FORCING_PHRASE + CLOSE_TAG + "\n\n"}
        return {self.reasoning_field: FORCING_PHRASE}


def _partial_suffix(buf: str, tag: str) -> int:
    """Length of the longest suffix of buf that is a proper prefix of tag."""
    for n in range(min(len(tag) - 1, len(buf)), 0, -1):
        if tag.startswith(buf[-n:]):
            return n
    return 0


def continuation_body(
    body: dict[str, Any], prefix: str, used_tokens: int, stream: bool
) -> dict[str, Any]:
    """The request that continues body's answer after `prefix` (the assistant output so far).

    The prefix is appended to the client's prefill, or becomes a final assistant message; the
    client's max_tokens (or max_completion_tokens) shrinks by the tokens already generated."""
    out = copy.deepcopy(body)
    messages = list(out.get("messages", []))
    before = prefill(messages)
    if before is not None:
        messages[-1] = {**messages[-1], "content": before + prefix}
    else:
        messages.append({"role": "assistant", "content": prefix})
    out["messages"] = messages
    out["continue_final_message"] = True
    out["add_generation_prompt"] = False
    out["stream"] = stream
    for key in ("max_tokens", "max_completion_tokens"):
        value = out.get(key)
        if isinstance(value, int):
            out[key] = max(1, value - used_tokens)
    return out


def add_usage(first: dict[str, Any] | None, second: dict[str, Any] | None) -> dict[str, Any] | None:
    """Two calls' `usage` added up, nested `*_details` counts too (None when neither has one)."""
    if first is None or second is None:
        return second if first is None else first
    total: dict[str, Any] = dict(second)
    for key, value in first.items():
        other = total.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and isinstance(other, int | None) and not isinstance(other, bool):
            total[key] = value + (other or 0)
        elif isinstance(value, dict) and isinstance(other, dict | None):
            total[key] = add_usage(value, other or {})
    return total


def budget_header(used: int, budget: int, cut: bool) -> str:
    """The final `x-semrouter-budget` of a router-enforced request: `thinking=USED/BUDGET`,
    `,cut` when the router ended the thought."""
    return f"thinking={used}/{budget}" + (",cut" if cut else "")
