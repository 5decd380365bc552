"""Thinking budgets enforced mid-stream by `semrouter serve` (config/default.yaml with
SEMROUTER_THINKING_BUDGET=16), against the thinking stand-in and the real llama.cpp server.

With a budget of N thinking tokens the backend never produces more than N plus the chunk that
reached it, and the client gets one answer after the thought: one chat.completion (JSON) or one
stream (SSE), the final budget state in the `x-semrouter-budget` header (JSON) or the comment
before `[DONE]` (SSE). SmolLM2 does not think by itself: the client's assistant prefill opens
`<think>`, so its output counts as thought until the router cuts it and continues. Through
Envoy + ext_proc the router does not own the upstream connection: the budget is a max_tokens cap.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from semrouter.bench.standin import STREAM_WORDS
from semrouter.reasoning.thinking_budget import CAP_ANSWER_TOKENS, CLOSE_TAG, FORCING_PHRASE
from tests.e2e.client import call
from tests.e2e.conftest import Tap, start_envoy, start_extproc, start_semrouter
from tests.e2e.test_cache import Backend
from tests.servers import free_port

pytestmark = pytest.mark.e2e
BUDGET = 16
MATH = (
    "Solve step by step: a train leaves at 3pm at 60 km/h, another at 4pm at 90 km/h "
    "from the same station. When does the second catch up?"
)
THINK_TOKENS, THINK_RATE = 200, 100.0  # unbudgeted, the stand-in would think for 2 s
FINAL = re.compile(rb"^: x-semrouter-budget: (\S+)$", re.MULTILINE)


def serve(env: dict[str, str], log: Path) -> tuple[Any, str]:
    port = free_port()
    process = start_semrouter(
        ["serve", "--config", "config/default.yaml", "--port", str(port)],
        {"SEMROUTER_THINKING_BUDGET": str(BUDGET), **env},
        log,
        f"http://127.0.0.1:{port}/ready",
    )
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def thinking() -> Iterator[Backend]:
    backend = Backend()
    backend.standin.think_tokens = THINK_TOKENS
    backend.standin.think_delay_s = 1 / THINK_RATE
    yield backend
    backend.stop()


@pytest.fixture(scope="module")
def standin_router(thinking: Backend, log_dir: Path) -> Iterator[str]:
    env = {"SEMROUTER_FAST_URL": thinking.url, "SEMROUTER_REASONER_URL": thinking.url}
    process, url = serve(env, log_dir / "semrouter-thinking-standin.log")
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def llama_router(llama_backends: dict[str, str], reasoner_tap: Tap, log_dir: Path) -> Iterator[str]:
    env = {"SEMROUTER_FAST_URL": llama_backends["fast"], "SEMROUTER_REASONER_URL": reasoner_tap.url}
    process, url = serve(env, log_dir / "semrouter-thinking-llama.log")
    yield url
    process.terminate()
    process.wait(10)


def sse(raw: bytes) -> tuple[list[dict[str, Any]], list[bytes], int]:
    """A stream's parsed data events, its final budget state(s), its number of [DONE]s."""
    events = [
        json.loads(line[6:])
        for line in raw.splitlines()
        if line.startswith(b"data: ") and line != b"data: [DONE]"
    ]
    return events, FINAL.findall(raw), raw.count(b"data: [DONE]")


def cut_at(state: bytes) -> int:
    """USED of a final budget state `thinking=USED/BUDGET,cut`."""
    found = re.fullmatch(rb"thinking=(\d+)/%d,cut" % BUDGET, state)
    assert found, state
    return int(found.group(1))


def deltas(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["choices"][0]["delta"] for e in events if e["choices"]]


@pytest.mark.parametrize("style", ["reasoning_content", "tags"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_standin_thought_is_cut_at_the_budget_then_answered(
    standin_router: str, thinking: Backend, style: str, stream: bool
) -> None:
    thinking.standin.think_style = style  # type: ignore[assignment]
    before = len(thinking.standin.requests)
    body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": MATH}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    started = time.perf_counter()
    status, headers, raw = call(standin_router, body)
    elapsed = time.perf_counter() - started
    assert status == 200, raw
    assert headers["x-semrouter-decision"] == "stem_reasoning"
    first, second = thinking.standin.requests[before:]
    assert second["continue_final_message"] is True and second["add_generation_prompt"] is False
    assert second["messages"][-1]["content"].endswith(FORCING_PHRASE + CLOSE_TAG + "\n\n")
    if stream:
        assert headers["x-semrouter-budget"] == f"thinking={BUDGET},router"
        events, final, done = sse(raw)
        assert len(final) == 1 and done == 1
        used = cut_at(final[0])  # BUDGET, or one more when two tokens came in one chunk
        assert BUDGET <= used <= BUDGET + 1
        parts = deltas(events)
        assert sum("role" in d for d in parts) == 1
        text = "".join(d.get("reasoning_content", "") + d.get("content", "") for d in parts)
        usage = events[-1]["usage"]
    else:
        assert first["max_tokens"] == BUDGET
        used = cut_at(headers["x-semrouter-budget"].encode())
        assert used == BUDGET  # the cap: exactly
        completion = json.loads(raw)
        message = completion["choices"][0]["message"]
        text = message.get("reasoning_content", "") + message["content"]
        usage = completion["usage"]
    cut_call, continuation = thinking.standin.reasoning_sent[before:]
    assert used <= cut_call <= used + 1 and continuation == 0  # the backend stopped at the cut
    thought, answer = text.split(FORCING_PHRASE)
    assert thought.count(" step") == used
    assert answer.removeprefix(CLOSE_TAG + "\n\n") == "".join(STREAM_WORDS)
    assert usage["completion_tokens"] == used + len(STREAM_WORDS)
    # bounded by the budget: far below the THINK_TOKENS / THINK_RATE an uncut thought takes
    assert elapsed < THINK_TOKENS / THINK_RATE, elapsed


def prefilled(stream: bool) -> dict[str, Any]:
    """MATH with an assistant prefill that opens the thought (SmolLM2 does not think itself)."""
    return {
        "model": "auto",
        "messages": [
            {"role": "user", "content": MATH},
            {"role": "assistant", "content": "<think>\n"},
        ],
        "temperature": 0,
        "max_tokens": 64,
        "stream": stream,
    }


def check_continuation(tap: Tap, before: int, stream: bool) -> None:
    cut, continuation = tap.bodies[before:]
    assert cut["messages"][-1] == {"role": "assistant", "content": "<think>\n"}
    assert cut["max_tokens"] == (64 if stream else BUDGET)
    last = continuation["messages"][-1]
    assert last["role"] == "assistant" and last["content"].startswith("<think>\n")
    assert last["content"].endswith(FORCING_PHRASE + CLOSE_TAG + "\n\n")
    assert len(continuation["messages"]) == len(cut["messages"])  # the prefill was extended
    assert continuation["continue_final_message"] is True
    assert continuation["max_tokens"] < 64  # what the thought used is taken off


def test_llama_json_is_capped_at_the_budget_and_continued_by_prefill(
    llama_router: str, reasoner_tap: Tap
) -> None:
    before = len(reasoner_tap.bodies)
    status, headers, raw = call(llama_router, prefilled(stream=False))
    assert status == 200, raw
    assert headers["x-semrouter-budget"] == f"thinking={BUDGET}/{BUDGET},cut"
    check_continuation(reasoner_tap, before, stream=False)
    completion = json.loads(raw)
    thought, answer = completion["choices"][0]["message"]["content"].split(CLOSE_TAG)
    assert thought.endswith(FORCING_PHRASE) and answer.strip()  # an answer after the thought
    assert completion["object"] == "chat.completion"
    usage = completion["usage"]
    assert BUDGET < usage["completion_tokens"] <= 64  # the cut call's 16 + the answer's
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_llama_stream_is_cut_mid_stream_and_continued_in_one_stream(
    llama_router: str, reasoner_tap: Tap
) -> None:
    before = len(reasoner_tap.bodies)
    status, headers, raw = call(llama_router, prefilled(stream=True))
    assert status == 200, raw
    assert headers["x-semrouter-budget"] == f"thinking={BUDGET},router"
    events, final, done = sse(raw)
    assert done == 1 and len(final) == 1
    assert BUDGET <= cut_at(final[0]) <= BUDGET + 1
    check_continuation(reasoner_tap, before, stream=True)
    contents = [d.get("content") or "" for d in deltas(events)]
    bridge = next(i for i, c in enumerate(contents) if c.startswith(FORCING_PHRASE))
    # llama.cpp streams a token per delta: what reached the router before the cut
    assert sum(1 for c in contents[:bridge] if c) <= BUDGET + 1
    assert contents[bridge] == FORCING_PHRASE + CLOSE_TAG + "\n\n"
    assert "".join(contents[bridge + 1 :]).strip()  # the continuation's answer, same stream
    assert len({e["id"] for e in events}) == 1


@pytest.fixture(scope="module")
def gateway(thinking: Backend, log_dir: Path) -> Iterator[str]:
    endpoints = [{"url": thinking.url}]
    config = {
        "models": [
            {"name": "fast", "endpoints": endpoints},
            {"name": "reasoner", "reasoning_family": "qwen3", "endpoints": endpoints},
        ],
        "signals": {
            "domain": {"enabled": False},
            "reasoning": {"enabled": False},
            "keywords": [{"name": "multi_step", "patterns": ["step by step"]}],
        },
        "decisions": [
            {
                "name": "multi_step",
                "rules": {"conditions": [{"name": "multi_step"}]},
                "model": "reasoner",
                "use_reasoning": True,
                "reasoning_budget_tokens": BUDGET,
            }
        ],
        "default": {"model": "fast"},
    }
    path = log_dir / "thinking-envoy-router.yaml"
    path.write_text(yaml.safe_dump(config))
    extproc, port = start_extproc(path, log_dir / "thinking-extproc.log")
    envoy, url = start_envoy(path, port, log_dir / "thinking-envoy.log")
    yield url
    envoy.terminate()
    envoy.wait(10)
    extproc.terminate()
    extproc.wait(10)


def test_through_envoy_the_budget_is_a_max_tokens_cap(gateway: str, thinking: Backend) -> None:
    thinking.standin.think_style = "reasoning_content"
    before = len(thinking.standin.requests)
    status, headers, raw = call(
        gateway, {"model": "auto", "messages": [{"role": "user", "content": MATH}]}
    )
    assert status == 200, raw
    assert headers["x-semrouter-budget"] == f"thinking={BUDGET},max_tokens"
    (sent,) = thinking.standin.requests[before:]
    assert sent["max_tokens"] == BUDGET + CAP_ANSWER_TOKENS
    assert "continue_final_message" not in sent
    # the cap bounds thought and answer together; it cannot end the thought at the budget
    assert thinking.standin.reasoning_sent[-1] == THINK_TOKENS
