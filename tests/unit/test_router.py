"""The transport-free pipeline: decisions, rewriting, offline batch routing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from threadpoolctl import ThreadpoolController, threadpool_limits

from semrouter.config import parse_config
from semrouter.pipeline.errors import RouterError
from semrouter.pipeline.request import chat_request_from_body
from semrouter.pipeline.router import Router
from tests.conftest import minimal_config


def router(**decision: Any) -> Router:
    data = minimal_config()
    data["decisions"][0].update(decision)
    return Router(parse_config(data, env={}))


def request(text: str, model: str = "auto", system: str | None = None, **extra: Any) -> Any:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": text})
    return chat_request_from_body({"model": model, "messages": messages, **extra})


async def test_system_prompt_insert_merges_with_client_system() -> None:
    r = router(system_prompt={"text": "Think.", "mode": "insert"})
    req = request("prove it", system="Be brief.")
    body = r.rewrite(req, await r.route(req))
    assert body["messages"][0] == {"role": "system", "content": "Think.\n\nBe brief."}
    assert len(body["messages"]) == 2
    assert req.body["messages"][0]["content"] == "Be brief."  # client body untouched


async def test_system_prompt_replace_and_insert_without_client_system() -> None:
    r = router(system_prompt={"text": "Think.", "mode": "replace"})
    req = request("prove it", system="Be brief.")
    body = r.rewrite(req, await r.route(req))
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][0]["content"] == "Think."
    r = router(system_prompt={"text": "Think."})
    req = request("prove it")
    assert r.rewrite(req, await r.route(req))["messages"][0] == {
        "role": "system",
        "content": "Think.",
    }


@pytest.mark.parametrize(("client", "expected"), [(None, 100), (50, 50), (500, 100)])
async def test_max_tokens_cap(client: int | None, expected: int) -> None:
    r = router(max_tokens=100)
    extra = {} if client is None else {"max_tokens": client}
    req = request("prove it", **extra)
    assert r.rewrite(req, await r.route(req))["max_tokens"] == expected


async def test_unknown_direct_model_is_404_and_provider_id_is_accepted() -> None:
    r = router()
    with pytest.raises(RouterError) as info:
        await r.route(request("x", model="nope"))
    assert info.value.status == 404
    route = await r.route(request("x", model="qwen3-id"))
    assert route.model.name == "reasoner"
    assert route.outcome is None


async def test_priorities_pick_the_highest_matching_decision() -> None:
    data = minimal_config()
    data["decisions"].append(
        {
            "name": "urgent",
            "priority": 10,
            "rules": {"conditions": [{"name": "math_words"}]},
            "model": "fast",
        }
    )
    r = Router(parse_config(data, env={}))
    assert (await r.route(request("integral"))).outcome.decision == "urgent"


def test_offline_batch_routing_matches_online() -> None:
    r = router()
    routes = r.route_many_sync([request("prove it"), request("hello")])
    assert [x.model.name for x in routes] == ["reasoner", "fast"]
    summary = routes[0].summary()
    assert summary["decision"] == "math"
    assert summary["reasoning"] is True
    assert summary["matched_signals"] == ["math_words"]


@pytest.mark.parametrize(
    ("match", "regex", "text", "fired"),
    [
        ("any", False, "please PROVE it", True),
        ("any", False, "improve it", False),  # literals match whole words only
        ("any", False, "improve it, then prove it", True),  # a later whole word still counts
        ("any", False, "integrals, proven", False),
        ("any", False, "(prove)", True),
        ("any", False, "Ça va ? Please PROVE it", True),  # non-ASCII text: the direct scan
        ("any", False, "Ça va ? improve it", False),
        ("all", False, "prove the integral", True),
        ("all", False, "prove it", False),
        ("any", True, "x = 42", True),
    ],
)
def test_keyword_rules(match: str, regex: bool, text: str, fired: bool) -> None:
    from semrouter.config.schema import KeywordSignalConfig
    from semrouter.signals.engine import KeywordRule

    patterns = [r"\d+"] if regex else ["prove", "integral"]
    rule = KeywordRule(KeywordSignalConfig(name="k", patterns=patterns, regex=regex, match=match))
    assert rule.matches(text) is fired


def test_case_sensitive_keyword_rule() -> None:
    from semrouter.config.schema import KeywordSignalConfig
    from semrouter.signals.engine import KeywordRule

    rule = KeywordRule(KeywordSignalConfig(name="k", patterns=["SQL", "C++"], case_sensitive=True))
    assert rule.matches("optimise this SQL query")
    assert rule.matches("a C++ template")
    assert not rule.matches("optimise this sql query")
    assert not rule.matches("MySQL is slow")  # whole words


@pytest.mark.parametrize("start", ["start", "start_sync"])
async def test_a_started_router_keeps_blas_single_threaded(start: str) -> None:
    def blas_threads() -> list[int]:
        return [
            c.num_threads for c in ThreadpoolController().select(user_api="blas").lib_controllers
        ]

    before = blas_threads()
    assert before, "numpy links a BLAS"
    r = router()
    try:
        if start == "start":
            await r.start()
        else:
            r.start_sync()
        assert blas_threads() == [1] * len(before)
    finally:
        await r.close()
        threadpool_limits(max(before), user_api="blas")


POOL_CONFIG = Path(__file__).resolve().parents[2] / "config" / "mmlu_pro_pool.yaml"
POOL_QUESTIONS = (
    "Prove that there are infinitely many prime numbers.",
    "In what year did the Battle of Hastings take place?",
    "Which legal doctrine lets a court refuse to enforce an unconscionable contract?",
)


def pool_router(cost_weight: float | None = None) -> Router:
    data = yaml.safe_load(POOL_CONFIG.read_text(encoding="utf-8"))
    if cost_weight is not None:
        data["decisions"][0]["selector"]["cost_weight"] = cost_weight
    r = Router.from_config(parse_config(data, env={}))
    r.start_sync()
    return r


def test_pool_config_picks_the_model_of_highest_utility_and_explains_it() -> None:
    r = pool_router()
    selector = r.decisions.selectors["learned_selection"]
    weight = r.config.decisions[0].selector.cost_weight
    summaries = [route.summary() for route in r.route_many_sync(list(map(request, POOL_QUESTIONS)))]
    for summary in summaries:
        assert summary["decision"] == "learned_selection"
        p, cost = summary["model_probabilities"], summary["model_expected_costs"]
        assert list(p) == list(cost) == list(selector.models)
        assert all(0 < v < 1 for v in p.values()) and all(c > 0 for c in cost.values())
        utility = {m: p[m] - weight * cost[m] / selector.cost_scale for m in p}
        assert summary["model"] == max(utility, key=utility.__getitem__)
    # The probabilities come from each request's own reading, not a fixed table.
    assert len({tuple(s["model_probabilities"].values()) for s in summaries}) == len(summaries)


def test_pool_config_sends_everything_to_the_cheapest_model_when_cost_dominates() -> None:
    routes = pool_router(cost_weight=100.0).route_many_sync(list(map(request, POOL_QUESTIONS)))
    assert {route.model.name for route in routes} == {"Phi-3-mini-4k-instruct"}


def test_heads_narrower_or_wider_than_the_embedder_are_refused_when_the_router_is_built() -> None:
    from semrouter.config import ConfigError
    from tests.unit.test_limits import ScriptedEmbedder

    data = minimal_config()
    data["signals"]["domain"] = {"enabled": True}
    data["signals"]["reasoning"] = {"enabled": True}
    with pytest.raises(ConfigError) as caught:
        Router(parse_config(data, env={}), ScriptedEmbedder())  # 2-wide vectors
    errors = caught.value.errors
    assert len(errors) == 2
    assert errors[0].startswith("signals.domain.head: the head reads ")
    assert errors[0].endswith("but the configured embedder gives 2; retrain it for this embedder")
    assert errors[1].startswith("signals.reasoning.head: the head reads ")
