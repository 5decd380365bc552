"""Thinking budgets: counting across split chunks, the plan per family, the continuation
bodies, usage summing, the header, and the router's mid-stream enforcement against the
thinking stand-in (JSON and SSE)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from semrouter.bench.standin import STREAM_WORDS, StandIn, start_standin
from semrouter.config import ConfigError, load_config, parse_config
from semrouter.config.schema import DEFAULT_REASONING_FAMILIES, ReasoningFamily
from semrouter.pipeline.request import parse_chat_request
from semrouter.pipeline.router import Route, Router
from semrouter.proxy.app import ProxyApp
from semrouter.reasoning.thinking_budget import (
    CAP_ANSWER_TOKENS,
    CLOSE_TAG,
    FORCING_PHRASE,
    OPEN_TAG,
    BudgetPlan,
    ThinkingCounter,
    add_usage,
    apply_budget,
    budget_header,
    continuation_body,
    count_tokens,
    effort_for_budget,
    opens_thought,
    plan_budget,
)
from tests.conftest import minimal_config
from tests.servers import serving

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
REPO = Path(__file__).resolve().parents[2]
QWEN3 = DEFAULT_REASONING_FAMILIES["qwen3"]


# --- counting -------------------------------------------------------------------------------


def test_reasoning_deltas_count_a_token_each_and_words_when_batched() -> None:
    c = ThinkingCounter(budget=4)
    for piece in [" a", "b", ""]:
        c.feed({"reasoning_content": piece})
    assert (c.tokens, c.exhausted, c.reasoning_field) == (2, False, "reasoning_content")
    c.feed({"reasoning": " c d"})  # newer vLLM's field; two words in one delta
    assert c.tokens == 4 and c.exhausted


def test_content_after_reasoning_closes_the_thought() -> None:
    c = ThinkingCounter(budget=2)
    c.feed({"reasoning_content": "x"})
    c.feed({"content": "\n"})  # whitespace does not end it
    assert c.open_thought
    c.feed({"content": "The answer"})
    c.feed({"reasoning_content": "more"})
    assert c.closed and c.tokens == 1 and not c.exhausted


@pytest.mark.parametrize("cut", range(1, len("<think>one two</think>answer")))
def test_think_tags_split_anywhere(cut: int) -> None:
    stream = "<think>one two</think>answer"
    c = ThinkingCounter(budget=100)
    c.feed({"content": stream[:cut]})
    c.feed({"content": stream[cut:]})
    assert c.tokens in (2, 3)  # a word split across deltas counts once per piece
    assert c.closed and not c.exhausted and stream.startswith(c.prefix(forcing=False))


def test_char_by_char_counts_every_delta_and_exhausts() -> None:
    c = ThinkingCounter(budget=5)
    fed = 0
    for ch in "<think>alpha beta gamma delta":
        c.feed({"content": ch})
        fed += 1
        if c.exhausted:
            break
    assert c.exhausted and c.tokens == 5
    assert fed == len("<think>") + 5  # the tag's characters are not thinking


def test_an_answer_first_is_no_thought() -> None:
    c = ThinkingCounter(budget=2)
    c.feed({"content": "plain answer with many words <thi"})
    c.feed({"content": "nk>x y z"})
    assert c.closed and c.tokens == 0 and not c.exhausted


def test_a_prefill_that_opened_the_thought_counts_from_the_first_token() -> None:
    assert opens_thought("Sure. <think>let me")
    assert not opens_thought("<think>done</think> so") and not opens_thought(None)
    c = ThinkingCounter(budget=3, in_thought=True)
    c.feed({"content": "one"})
    c.feed({"content": " two"})
    c.feed({"content": " three"})
    assert c.exhausted and c.open_thought


def test_hostile_deltas_stay_bounded() -> None:
    c = ThinkingCounter(budget=10**9)
    c.feed({"content": "<" * 100_000})
    assert len(c._carry) < len(OPEN_TAG)
    # one endless "word": counted by its length, so the text kept per token is bounded
    assert count_tokens("x" * 1600) == 100
    assert count_tokens("a b c") == 3 and count_tokens("") == 0
    whitespace = ThinkingCounter(budget=50)
    for _ in range(1000):
        whitespace.feed({"content": "  \n"})  # before any thought, still counted
        if whitespace.exhausted:
            break
    assert whitespace.exhausted


# --- plans per family -------------------------------------------------------------------------


def test_plan_per_family() -> None:
    native = ReasoningFamily(
        type="chat_template_kwargs",
        parameter="enable_thinking",
        budget_field="thinking.budget_tokens",
    )
    gpt_oss = DEFAULT_REASONING_FAMILIES["gpt-oss"]
    assert plan_budget(QWEN3, True, 64, midstream=True) == BudgetPlan(64, "router")
    assert plan_budget(QWEN3, True, 64, midstream=False) == BudgetPlan(64, "max_tokens")
    assert plan_budget(native, True, 64, midstream=True) == BudgetPlan(64, "native")
    assert plan_budget(gpt_oss, True, 64, midstream=True) == BudgetPlan(64, "effort")
    assert plan_budget(QWEN3, False, 64, midstream=True) is None
    assert plan_budget(QWEN3, True, None, midstream=True) is None
    assert plan_budget(None, True, 64, midstream=True) is None

    body: dict[str, Any] = {"thinking": {"type": "enabled"}}
    apply_budget(body, BudgetPlan(64, "native"), native, None)
    assert body == {"thinking": {"type": "enabled", "budget_tokens": 64}}
    body = {}
    apply_budget(body, BudgetPlan(1000, "effort"), gpt_oss, None)
    assert body == {"reasoning_effort": "low"}
    body = {"reasoning_effort": "high"}
    apply_budget(body, BudgetPlan(1000, "effort"), gpt_oss, "high")  # the route's own wins
    assert body == {"reasoning_effort": "high"}
    body = {"max_completion_tokens": 10**6}
    apply_budget(body, BudgetPlan(64, "max_tokens"), QWEN3, None)
    assert body == {"max_completion_tokens": 64 + CAP_ANSWER_TOKENS}
    body = {}
    apply_budget(body, BudgetPlan(64, "router"), QWEN3, None)
    assert body == {}
    assert [effort_for_budget(b) for b in (1, 2047, 2048, 16383, 16384)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
    ]


def test_plan_header() -> None:
    assert BudgetPlan(64, "router").header() == "thinking=64,router"
    assert budget_header(64, 64, True) == "thinking=64/64,cut"
    assert budget_header(10, 64, False) == "thinking=10/64"


# --- continuation bodies ---------------------------------------------------------------------


def test_tagged_thought_continues_as_assistant_prefill_with_vllm_flags() -> None:
    c = ThinkingCounter(budget=2)
    c.feed({"content": "<think>partial"})
    c.feed({"content": " thought"})
    out = continuation_body({**BODY, "max_tokens": 100}, c.prefix(forcing=True), 2, False)
    prefix = OPEN_TAG + "partial thought" + FORCING_PHRASE + CLOSE_TAG + "\n\n"
    assert out == {
        **BODY,
        "messages": [BODY["messages"][0], {"role": "assistant", "content": prefix}],
        "continue_final_message": True,
        "add_generation_prompt": False,
        "stream": False,
        "max_tokens": 98,
    }
    assert len(BODY["messages"]) == 1  # the original body is untouched
    assert c.bridge() == {"content": FORCING_PHRASE + CLOSE_TAG + "\n\n"}


def test_reasoning_field_thought_is_rebuilt_in_tags_and_bridged_in_its_field() -> None:
    c = ThinkingCounter(budget=2)
    c.feed({"reasoning_content": "a"})
    c.feed({"reasoning_content": " b"})
    assert c.prefix(forcing=True) == OPEN_TAG + "a b" + FORCING_PHRASE + CLOSE_TAG + "\n\n"
    assert c.bridge() == {"reasoning_content": FORCING_PHRASE}
    c.feed({"content": "The ans"})  # a thought that ended: the answer is continued, unforced
    assert c.prefix(forcing=False) == OPEN_TAG + "a b" + CLOSE_TAG + "\n\nThe ans"


def test_client_prefill_is_extended_not_duplicated() -> None:
    body = {
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>"}],
        "max_completion_tokens": 5,
    }
    out = continuation_body(body, "x y", 9, True)
    assert out["messages"] == [body["messages"][0], {"role": "assistant", "content": "<think>x y"}]
    assert out["max_completion_tokens"] == 1  # never below one


def test_usage_adds_up_nested_counts() -> None:
    first = {"prompt_tokens": 10, "completion_tokens": 64, "total_tokens": 74}
    second = {
        "prompt_tokens": 90,
        "completion_tokens": 6,
        "total_tokens": 96,
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    first_details = {**first, "completion_tokens_details": {"reasoning_tokens": 64}}
    assert add_usage(first_details, second) == {
        "prompt_tokens": 100,
        "completion_tokens": 70,
        "total_tokens": 170,
        "completion_tokens_details": {"reasoning_tokens": 64},
    }
    assert add_usage(None, second) == second and add_usage(first, None) == first


# --- config ---------------------------------------------------------------------------------


def test_budget_needs_reasoning_on() -> None:
    data = minimal_config(default={"model": "fast", "reasoning_budget_tokens": 64})
    data["decisions"][0]["use_reasoning"] = False
    data["decisions"][0]["reasoning_budget_tokens"] = 64
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    assert info.value.errors == [
        "decisions[0].reasoning_budget_tokens: reasoning is off for this route "
        "(use_reasoning: false), so there is no thinking to budget; remove it or set "
        "use_reasoning: true",
        "default.reasoning_budget_tokens: reasoning is off for this route (use_reasoning: "
        "false), so there is no thinking to budget; remove it or set use_reasoning: true",
    ]
    data["decisions"][0].update(use_reasoning=True, reasoning_budget_tokens=0)
    with pytest.raises(ConfigError, match=r"decisions\[0\]\.reasoning_budget_tokens: Input"):
        parse_config(data, env={})


def test_default_config_budgets_the_reasoning_decisions_from_the_environment() -> None:
    path = REPO / "config" / "default.yaml"
    for env, expected in (({}, 4096), ({"SEMROUTER_THINKING_BUDGET": "64"}, 64)):
        config = load_config(path, env=env)
        budgets = {d.name: d.reasoning_budget_tokens for d in config.decisions}
        on = {d.name for d in config.decisions if d.use_reasoning}
        assert on and all(budgets[name] == expected for name in on)
        assert all(budgets[d] is None for d in budgets if d not in on)


def test_rewrite_caps_max_tokens_where_the_transport_cannot_cut() -> None:
    data = minimal_config()
    data["decisions"][0]["reasoning_budget_tokens"] = 64
    router = Router(parse_config(data, env={}))
    chat = parse_chat_request(
        json.dumps({"model": "reasoner", "messages": [{"role": "user", "content": "x"}]}).encode(),
        10**6,
        router.limits,
    )
    assert router.fallback_outcome.reasoning_budget_tokens is None  # the default route
    model = router.resolve_model("reasoner")
    assert model is not None
    routed = Route(model, router.decisions.fallback("math"), None, 0.0)
    assert router.rewrite(chat, routed)["max_tokens"] == 64 + CAP_ANSWER_TOKENS
    assert routed.headers()["x-semrouter-budget"] == "thinking=64,max_tokens"
    assert routed.summary()["reasoning_budget_tokens"] == 64
    router.midstream_budgets = True
    assert "max_tokens" not in router.rewrite(chat, routed)
    assert routed.headers()["x-semrouter-budget"] == "thinking=64,router"


# --- the router's enforcement, against the thinking stand-in ----------------------------------


@asynccontextmanager
async def _router(backend: StandIn, budget: int) -> AsyncIterator[str]:
    runner, port = await start_standin(backend)
    data = minimal_config()
    for model in data["models"]:
        model["endpoints"] = [{"url": f"http://127.0.0.1:{port}/v1"}]
    data["decisions"][0]["reasoning_budget_tokens"] = budget
    try:
        async with serving(ProxyApp(Router(parse_config(data, env={}))).app) as url:
            yield url
    finally:
        await runner.cleanup()


def _request(stream: bool, text: str = "prove it", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": text}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return {**body, **extra}


async def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/chat/completions", json=body) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def _counted(url: str) -> dict[str, float]:
    """semrouter_thinking_budget_total of the reasoner, by outcome."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        text = await response.text()
    found = re.findall(
        r'semrouter_thinking_budget_total\{model="reasoner",outcome="(\w+)"\} (\S+)', text
    )
    return {outcome: float(value) for outcome, value in found}


def _sse(raw: bytes) -> tuple[list[dict[str, Any]], list[str], int]:
    """The data events (parsed), the comment lines, and how many [DONE]s."""
    events, comments, done = [], [], 0
    for block in raw.decode().split("\n\n"):
        if block.startswith(":"):
            comments.append(block)
        elif block == "data: [DONE]":
            done += 1
        elif block.startswith("data: "):
            events.append(json.loads(block[6:]))
    return events, comments, done


@pytest.fixture(params=["reasoning_content", "tags"])
async def thinking(request: pytest.FixtureRequest) -> AsyncIterator[tuple[StandIn, str]]:
    backend = StandIn(record=True, think_tokens=40, think_delay_s=0.01, think_style=request.param)
    async with _router(backend, budget=8) as url:
        yield backend, url


async def test_stream_is_cut_at_the_budget_and_continued_in_one_stream(
    thinking: tuple[StandIn, str],
) -> None:
    backend, url = thinking
    status, headers, raw = await _post(url, _request(stream=True))
    assert status == 200 and headers["x-semrouter-budget"] == "thinking=8,router"
    events, comments, done = _sse(raw)
    (comment,) = comments
    found = re.fullmatch(r": x-semrouter-budget: thinking=(\d+)/8,cut", comment)
    assert found and done == 1
    used = int(found.group(1))  # 8, or 9 when two tokens reached the router in one chunk
    assert 8 <= used <= 9
    assert backend.reasoning_sent[0] <= used + 1  # the backend stopped at the cut (+ in flight)
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    assert sum("role" in d for d in deltas) == 1
    text = "".join(d.get("reasoning_content", "") + d.get("content", "") for d in deltas)
    assert text.count("step") == used
    assert text.endswith(
        FORCING_PHRASE + (CLOSE_TAG + "\n\n" if "<think>" in text else "") + "".join(STREAM_WORDS)
    )
    assert len({e["id"] for e in events}) == 1
    second = backend.requests[1]
    assert second["continue_final_message"] is True and second["add_generation_prompt"] is False
    prefix = second["messages"][-1]["content"]
    assert prefix.endswith(FORCING_PHRASE + CLOSE_TAG + "\n\n")
    usage = events[-1]["usage"]
    assert usage["completion_tokens"] == used + len(STREAM_WORDS)  # both calls
    assert usage["completion_tokens_details"] == {"reasoning_tokens": used}
    prompt = 2  # "prove it": the stand-in counts words
    # the cut call's prompt, estimated as the continuation's less the prefix: exactly its own
    assert usage["prompt_tokens"] == (prompt + len(prefix.split())) + prompt


async def test_json_is_capped_at_the_budget_and_continued(thinking: tuple[StandIn, str]) -> None:
    backend, url = thinking
    status, headers, raw = await _post(url, _request(stream=False))
    assert status == 200 and headers["x-semrouter-budget"] == "thinking=8/8,cut"
    assert await _counted(url) == {"cut": 1.0}
    first, second = backend.requests
    assert first["max_tokens"] == 8 and "max_tokens" not in second
    assert backend.reasoning_sent == [8, 0]
    body = json.loads(raw)
    message = body["choices"][0]["message"]
    thought = message.get("reasoning_content") or message["content"].split(CLOSE_TAG)[0]
    assert thought.count("step") == 8 and FORCING_PHRASE in thought
    assert message["content"].endswith("".join(STREAM_WORDS))
    assert body["choices"][0]["finish_reason"] == "stop"
    prompt = [sum(len(m["content"].split()) for m in r["messages"]) for r in (first, second)]
    assert body["usage"] == {
        "prompt_tokens": sum(prompt),
        "completion_tokens": 8 + len(STREAM_WORDS),
        "total_tokens": sum(prompt) + 8 + len(STREAM_WORDS),
        "completion_tokens_details": {"reasoning_tokens": 8},  # the cut call's, all thought
    }


async def test_a_thought_within_the_budget_is_one_call() -> None:
    backend = StandIn(record=True, think_tokens=2, think_style="tags")  # + 6 answer tokens
    async with _router(backend, budget=8) as url:
        _, headers, raw = await _post(url, _request(stream=False))
        assert headers["x-semrouter-budget"] == "thinking=2/8"
        assert json.loads(raw)["choices"][0]["message"]["content"].endswith("backend.")
        _, headers, raw = await _post(url, _request(stream=True))
        assert headers["x-semrouter-budget"] == "thinking=8,router"
        assert _sse(raw)[1:] == ([": x-semrouter-budget: thinking=2/8"], 1)
        _, headers, _ = await _post(url, _request(stream=False, text="hello"))
        assert headers["x-semrouter-budget"] == "none"  # reasoning off: no budget
        assert await _counted(url) == {"within": 2.0}
    assert len(backend.requests) == 3  # no continuation


async def test_a_client_cap_below_the_budget_is_left_alone() -> None:
    backend = StandIn(record=True, think_tokens=40)
    async with _router(backend, budget=8) as url:
        _, headers, raw = await _post(url, _request(stream=False, max_tokens=5))
        assert headers["x-semrouter-budget"] == "thinking=5/8"
        assert json.loads(raw)["choices"][0]["finish_reason"] == "length"
    assert [r.get("max_tokens") for r in backend.requests] == [5]


async def test_several_choices_are_capped_not_cut() -> None:
    backend = StandIn(record=True, think_tokens=40)
    async with _router(backend, budget=8) as url:
        for stream in (False, True):
            _, headers, _ = await _post(url, _request(stream=stream, n=2))
            assert headers["x-semrouter-budget"] == "thinking=8,max_tokens"
    assert [r["max_tokens"] for r in backend.requests] == [8 + CAP_ANSWER_TOKENS] * 2


async def test_a_failed_continuation_is_a_backend_failure() -> None:
    """JSON: 502 before anything was sent; SSE: an error event after the cut thought."""
    backend = StandIn(record=True, think_tokens=40, think_delay_s=0.01)
    original = backend._think

    async def failing(request: web.Request, body: dict[str, Any], model: str) -> Any:
        if body["messages"][-1]["role"] == "assistant":  # the continuation
            return web.json_response({"error": {"message": "no prefill"}}, status=400)
        return await original(request, body, model)

    backend._think = failing  # type: ignore[method-assign]
    async with _router(backend, budget=8) as url:
        status, _, raw = await _post(url, _request(stream=False))
        assert status == 502 and b"continuation failed (HTTP 400)" in raw
        status, _, raw = await _post(url, _request(stream=True))
        events, comments, done = _sse(raw)
        assert status == 200 and comments == [] and done == 1
        assert "continuation failed" in events[-1]["error"]["message"]
        assert sum(1 for e in events if e.get("choices")) == 1 + 8  # role + the cut thought


async def test_a_translated_api_is_enforced_as_chat() -> None:
    backend = StandIn(record=True, think_tokens=40, think_delay_s=0.01)
    async with _router(backend, budget=8) as url, aiohttp.ClientSession() as session:
        body = {
            "model": "auto",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "prove it"}],
        }
        for stream in (False, True):
            async with session.post(
                url + "/v1/messages", json={**body, "stream": stream}
            ) as response:
                raw = await response.read()
            assert response.status == 200 and b"Considering the limited time" in raw
            assert b'"thinking"' in raw and b"Hello" in raw  # a thinking block, then the answer
    json_cut, json_continued, sse_cut, sse_continued = backend.reasoning_sent
    assert (json_cut, json_continued, sse_continued) == (8, 0, 0) and 8 <= sse_cut <= 9
