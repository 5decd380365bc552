"""Thinking-token counting across split chunks and the exact continuation bodies."""

from __future__ import annotations

import pytest

from semrouter.reasoning.thinking_budget import (
    CLOSE_TAG,
    FORCING_PHRASE,
    OPEN_TAG,
    ThinkingCounter,
    budget_header,
    continuation_body,
)

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def test_reasoning_content_chunks_count_one_each() -> None:
    c = ThinkingCounter(budget=3)
    for piece in ["a b", "c", ""]:
        c.feed_reasoning_delta(piece)
    assert (c.tokens, c.exhausted) == (2, False)
    c.feed_reasoning_delta("d")
    assert c.exhausted and c.text == "a bcd"


@pytest.mark.parametrize("cut", range(1, len("<think>one two</think>answer")))
def test_think_tags_split_anywhere(cut: int) -> None:
    stream = "<think>one two</think>answer"
    c = ThinkingCounter(budget=100)
    c.feed_content(stream[:cut])
    c.feed_content(stream[cut:])
    assert c.text.split() == ["one", "two"]
    assert c.closed and not c.exhausted


def test_char_by_char_counts_words_and_exhausts() -> None:
    c = ThinkingCounter(budget=3)
    for ch in "<think>alpha beta gamma delta":
        c.feed_content(ch)
        if c.exhausted:
            break
    assert c.exhausted
    assert c.tokens >= 3


def test_text_outside_think_is_not_counted() -> None:
    c = ThinkingCounter(budget=2)
    c.feed_content("plain answer with many words <thi")
    c.feed_content("nk>x")
    assert c.text == "x" and c.tokens == 1


def test_carry_is_bounded() -> None:
    c = ThinkingCounter(budget=10**9)
    c.feed_content("<" * 100_000)
    assert len(c._carry) < len(OPEN_TAG)


def test_llamacpp_continuation_is_assistant_prefill() -> None:
    out = continuation_body(BODY, "partial", "llamacpp")
    assert out == {
        **BODY,
        "messages": [
            BODY["messages"][0],
            {
                "role": "assistant",
                "content": OPEN_TAG + "partial" + FORCING_PHRASE + CLOSE_TAG + "\n\n",
            },
        ],
    }
    assert len(BODY["messages"]) == 1  # the original body is untouched


def test_vllm_continuation_flags() -> None:
    out = continuation_body(BODY, "p", "vllm")
    assert out["continue_final_message"] is True and out["add_generation_prompt"] is False
    assert out["messages"][-1]["role"] == "assistant"


def test_budget_header() -> None:
    assert budget_header(64, 64, True) == "thinking=64/64,cut"
    assert budget_header(10, 64, False) == "thinking=10/64"
    assert budget_header(0, None, False) == "none"
