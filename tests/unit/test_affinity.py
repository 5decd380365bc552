"""Session affinity and the conversation signals: store bounds, keys, locks, escalation, reask,
Redis shared by two pipelines and Redis failure (routed per request, never an error)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from semrouter.affinity import MemoryStore, SessionState
from semrouter.affinity.hook import SESSION_HEADER, session_key
from semrouter.config import ConfigError, parse_config
from semrouter.config.schema import REASK_SIGNAL, TOOL_LOOP_SIGNAL
from semrouter.pipeline.flow import Pipeline, Prepared
from semrouter.pipeline.router import Router
from semrouter.signals.conversation import conversation_signals, in_tool_loop, reask_score
from semrouter.signals.engine import SignalReport
from tests.conftest import minimal_config
from tests.redis_server import RedisServer
from tests.unit.test_cache import WordEmbedder, needs_redis, redis_server, unit

__all__ = ["redis_server"]  # the fixture, used by name

CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
TOOL_TURNS = [
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": "42"},
]


def state(model: str = "fast", turns: int = 1) -> SessionState:
    return SessionState(model, False, None, "default", turns)


def affinity_config(**affinity: Any) -> Any:
    data = minimal_config(affinity={"backend": "memory", "escalate_on": ["math_words"], **affinity})
    return parse_config(data, env={})


def pipeline(**affinity: Any) -> Pipeline:
    return Pipeline(Router(affinity_config(**affinity)))


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


async def send(
    target: Pipeline, messages: list[dict[str, Any]], session: str | None = "s1", **body: Any
) -> Prepared:
    headers = {SESSION_HEADER: session} if session else {}
    raw = orjson.dumps({"model": "auto", "messages": messages, **body})
    return await target.prepare(raw, headers)


# --- the store --------------------------------------------------------------------------


async def test_memory_store_keeps_at_most_max_sessions_lru() -> None:
    store = MemoryStore(max_sessions=100, ttl_s=60)
    for i in range(10_000):
        await store.put(f"k{i}", state())
        if i == 50:
            assert await store.get("k0") is not None  # used: moves to the recent end
    assert len(store) == 100
    assert await store.get("k9999") is not None
    assert await store.get("k1") is None
    assert await store.get("k0") is None  # 10,000 newer sessions evicted it all the same


async def test_memory_store_entries_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("semrouter.affinity.store.time.monotonic", lambda: now[0])
    store = MemoryStore(max_sessions=10, ttl_s=5)
    await store.put("a", state())
    now[0] += 4.9
    assert await store.get("a") is not None
    now[0] += 0.2
    assert await store.get("a") is None
    assert len(store) == 0


def test_state_round_trips_through_bytes() -> None:
    original = SessionState("reasoner", True, "high", "math", 3, [unit(1), unit(2)])
    copy = SessionState.from_bytes(original.to_bytes())
    assert (copy.model, copy.reasoning, copy.effort, copy.decision, copy.turns) == (
        "reasoner",
        True,
        "high",
        "math",
        3,
    )
    assert np.allclose(copy.embeddings[1], unit(2), atol=1e-3)


def test_session_keys_are_fixed_size_and_partitioned() -> None:
    huge = {SESSION_HEADER: "x" * 1_000_000}
    messages = [user("hello")]
    assert len(session_key(messages, huge, None, 2000)) == 32
    assert session_key(messages, huge, None, 2000) != session_key(messages, huge, "acme", 2000)
    # without the header: the system prompt and the first user turn, later turns ignored
    first = [{"role": "system", "content": "be brief"}, user("hello")]
    later = [*first, {"role": "assistant", "content": "hi"}, user("more")]
    assert session_key(first, {}, None, 2000) == session_key(later, {}, None, 2000)
    other = [{"role": "system", "content": "be long"}, user("hello")]
    assert session_key(first, {}, None, 2000) != session_key(other, {}, None, 2000)


def test_escalation_signals_must_exist() -> None:
    with pytest.raises(ConfigError, match=r"affinity\.escalate_on\[0\]: unknown signal 'nope'"):
        parse_config(minimal_config(affinity={"escalate_on": ["nope"]}), env={})


# --- conversation signals ---------------------------------------------------------------


def test_tool_loop_is_a_tool_result_after_an_assistant_tool_call() -> None:
    assert in_tool_loop([user("q"), *TOOL_TURNS])
    assert in_tool_loop([user("q"), *TOOL_TURNS, {"role": "tool", "content": "2nd result"}])
    assert not in_tool_loop([user("q"), *TOOL_TURNS, {"role": "assistant", "content": "a"}])
    assert not in_tool_loop([user("q"), {"role": "tool", "content": "orphan"}])
    assert not in_tool_loop([])


def test_turns_rules_and_reask() -> None:
    config = parse_config(
        minimal_config(
            signals={
                "domain": {"enabled": False},
                "reasoning": {"enabled": False},
                "turns": [{"name": "long_chat", "min_turns": 3}],
            },
            decisions=[],
        ),
        env={},
    ).signals
    report = SignalReport(embedding=unit(1))
    conversation_signals(report, [user("a"), user("b")], config, [unit(2), unit(1)], 0.9)
    assert report.scores["long_chat"] == 2.0 and "long_chat" not in report.fired
    assert REASK_SIGNAL in report.fired and report.scores[REASK_SIGNAL] == pytest.approx(1.0)
    assert TOOL_LOOP_SIGNAL not in report.fired
    again = SignalReport(embedding=unit(1))
    conversation_signals(again, [user("a")] * 3 + TOOL_TURNS, config, [unit(2)], 0.9)
    assert {"long_chat", TOOL_LOOP_SIGNAL} <= again.fired and REASK_SIGNAL not in again.fired
    assert reask_score(None, [unit(1)]) == -1.0
    assert reask_score(unit(1), [unit(1, dim=32)]) == -1.0  # stored by another encoder


# --- affinity through the pipeline -------------------------------------------------------


async def test_a_session_sticks_to_its_first_route_until_it_escalates() -> None:
    target = pipeline()
    first = await send(target, [user("hello there")])
    assert (first.route.model.name, first.headers["x-semrouter-affinity"]) == ("fast", "new")
    history = [user("hello there"), {"role": "assistant", "content": "hi"}]
    escalated = await send(target, [*history, user("now prove it")])
    assert escalated.route.model.name == "reasoner"
    assert escalated.headers["x-semrouter-affinity"] == "escalated"
    follow = [*history, user("now prove it"), {"role": "assistant", "content": "done"}]
    sticky = await send(target, [*follow, user("and shorter?")])
    # the turn alone routes to fast; the session stays on the reasoner, thinking on, before
    # the rewrite: the backend gets the reasoner's id and its reasoning control
    assert sticky.headers["x-semrouter-affinity"] == "sticky"
    assert sticky.route.model.name == "reasoner" and sticky.route.reasoning == "on"
    body = orjson.loads(sticky.body)
    assert body["model"] == "qwen3-id"
    assert body["chat_template_kwargs"] == {"enable_thinking": True}


async def test_without_an_escalation_rule_a_session_does_not_leave_its_route() -> None:
    target = pipeline(escalate_on=[])
    await send(target, [user("hello")])
    prepared = await send(
        target, [user("hello"), {"role": "assistant", "content": "hi"}, user("prove x")]
    )
    assert (prepared.route.model.name, prepared.headers["x-semrouter-affinity"]) == (
        "fast",
        "sticky",
    )


async def test_a_tool_loop_goes_back_to_the_model_that_called_the_tool() -> None:
    target = pipeline()
    await send(target, [user("hello")])  # the session is on fast
    # its signals say reasoner and escalate, but the tool result belongs to fast
    prepared = await send(target, [user("prove the integral"), *TOOL_TURNS])
    assert prepared.headers["x-semrouter-affinity"] == "lock"
    assert prepared.route.model.name == "fast"
    assert orjson.loads(prepared.body)["model"] == "fast-id"


async def test_a_continuation_id_stays_on_the_sessions_model() -> None:
    target = pipeline()
    await send(target, [user("hello")])
    prepared = await send(target, [user("prove it")], previous_response_id="resp_1")
    assert (prepared.route.model.name, prepared.headers["x-semrouter-affinity"]) == (
        "fast",
        "lock",
    )


async def test_hostile_sessions_stay_within_max_sessions() -> None:
    target = pipeline(max_sessions=50)
    for i in range(500):
        await send(target, [user("hello")], session=f"{i}-" + "z" * 10_000)
    store = target.affinity.store
    assert isinstance(store, MemoryStore) and len(store) == 50


async def test_classify_reports_affinity_and_stores_nothing() -> None:
    target = pipeline()
    raw = orjson.dumps({"messages": [user("hello")]})
    summary, headers = await target.classify(raw, {SESSION_HEADER: "s9"})
    assert summary["affinity"] == "new" and headers["x-semrouter-affinity"] == "new"
    store = target.affinity.store
    assert isinstance(store, MemoryStore) and len(store) == 0


async def test_affinity_off_routes_each_turn_and_sends_no_header() -> None:
    target = Pipeline(Router(parse_config(minimal_config(), env={})))
    prepared = await send(target, [user("hello")])
    assert "x-semrouter-affinity" not in prepared.headers and prepared.route.affinity is None


async def test_reask_compares_with_earlier_turns_from_the_one_encoder_pass() -> None:
    data = minimal_config(
        affinity={"backend": "memory"},
        signals={
            "domain": {"enabled": False},
            "reasoning": {"enabled": False},
            "similarity": [{"name": "geo", "examples": ["capital city"], "threshold": 0.9}],
        },
        decisions=[
            {"name": "retry", "rules": {"conditions": [{"name": "reask"}]}, "model": "fast"}
        ],
    )
    embedder = WordEmbedder()
    target = Pipeline(Router(parse_config(data, env={}), embedder))
    await target.start()
    try:
        question = user("what is the capital of australia")
        answer = {"role": "assistant", "content": "Sydney"}
        await send(target, [question])
        other = await send(target, [question, answer, user("tell me a joke about cats")])
        assert REASK_SIGNAL not in (other.route.signals or SignalReport()).fired
        again = [question, answer, user("tell me a joke"), answer]
        reasked = await send(target, [*again, user("again what is the capital of australia")])
        assert reasked.route.decision == "retry"
        looped = await send(target, [*again, user("x y z"), *TOOL_TURNS])
        assert REASK_SIGNAL not in (looped.route.signals or SignalReport()).fired
        # one text encoded per request (plus the similarity examples at start)
        assert len(embedder.texts) == 1 + 4
    finally:
        await target.close()


async def test_a_dead_redis_routes_each_turn_without_an_error() -> None:
    target = pipeline(backend="redis", redis={"url": "redis://127.0.0.1:9/0", "timeout_ms": 50})
    await target.start()
    try:
        prepared = await send(target, [user("prove it")])
        assert prepared.route.model.name == "reasoner"
        assert prepared.headers["x-semrouter-affinity"] == "unavailable"
    finally:
        await target.close()


@needs_redis
async def test_two_replicas_share_sessions_through_redis(redis_server: RedisServer) -> None:
    settings = {"backend": "redis", "redis": {"url": redis_server.url, "timeout_ms": 500}}
    first, second = pipeline(**settings), pipeline(**settings)
    await first.start()
    await second.start()
    try:
        await send(first, [user("prove the integral")])
        await first.affinity.close()  # its write is done
        prepared = await send(second, [user("prove the integral"), *TOOL_TURNS[:1], user("ok")])
        assert prepared.headers["x-semrouter-affinity"] == "sticky"
        assert prepared.route.model.name == "reasoner"
    finally:
        await first.close()
        await second.close()


async def test_a_fallback_route_does_not_start_a_session() -> None:
    target = pipeline()
    session = await target.affinity.open([user("hello")], {SESSION_HEADER: "s1"}, None)
    outcome = target.router.fallback_outcome
    target.affinity.record(session, outcome, None)  # no signals: the deadline fallback
    store = target.affinity.store
    assert isinstance(store, MemoryStore) and len(store) == 0
    target.affinity.record(session, outcome, SignalReport())
    assert len(store) == 1


# --- the classification text ------------------------------------------------------------


def conversation_router(embedder: WordEmbedder, **conversation: Any) -> Router:
    data = minimal_config(
        signals={
            "domain": {"enabled": False},
            "reasoning": {"enabled": False},
            "similarity": [{"name": "geo", "examples": ["capital city"], "threshold": 0.9}],
        },
        decisions=[],
    )
    data["router"] = {"conversation": conversation}
    router = Router(parse_config(data, env={}), embedder)
    router.signals.start_sync()  # the similarity examples' embeddings
    embedder.texts.clear()
    return router


HISTORY = [user("which capital city"), answer := {"role": "assistant", "content": "a"}]


async def test_text_mode_appends_earlier_user_turns_to_the_routing_text() -> None:
    embedder = WordEmbedder()
    router = conversation_router(embedder, context_turns=2, context_chars=9)
    chat = chat_of([*HISTORY, user("second one"), answer, user("and the last?")])
    route = await router.route(chat)
    assert embedder.texts == ["and the last?\nsecond on"]  # newest first, cut to context_chars
    assert route.input is not None and route.input.prompt_chars == len("and the last?")


async def test_embedding_mode_encodes_the_context_in_the_same_batch() -> None:
    embedder = WordEmbedder()
    router = conversation_router(embedder, context_turns=1, context_mode="embedding")
    route = await router.route(chat_of([*HISTORY, user("and the last?")]))
    assert embedder.texts == ["and the last?", "which capital city"]  # one call, two rows
    own = embedder.encode_sync(["and the last?"]).embeddings[0]
    assert route.signals is not None and np.allclose(route.signals.embedding, own)
    # the learned signals read the mix: the context's words bring it closer to the example
    alone = await conversation_router(WordEmbedder()).route(chat_of([user("and the last?")]))
    assert alone.signals is not None
    assert route.signals.scores["geo"] > alone.signals.scores["geo"] + 0.1


def chat_of(messages: list[dict[str, Any]]) -> Any:
    from semrouter.pipeline.request import chat_request_from_body

    return chat_request_from_body({"model": "auto", "messages": messages})
