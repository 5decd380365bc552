"""The dashboard without a browser: the policy graph and trace, the stats arithmetic, the recent
decisions' bounds, the config view, and who may reach the pages and admin APIs."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.testclient import TestClient

from semrouter.bench.standin import StandIn, start_standin
from semrouter.config import ConfigError, RouterConfig, load_config, parse_config
from semrouter.config.schema import DashboardConfig
from semrouter.dashboard.config_view import config_view, redact_url
from semrouter.dashboard.gate import COOKIE
from semrouter.dashboard.policy import leaves, policy_graph, rule_text
from semrouter.dashboard.stats import Stats, histogram_quantile
from semrouter.dashboard.svg import render
from semrouter.dashboard.trace import decision_trace
from semrouter.pipeline.recent import RecentDecisions
from semrouter.pipeline.request import chat_request_from_body
from semrouter.pipeline.router import Route, Router
from semrouter.proxy.app import ProxyApp
from tests.conftest import minimal_config
from tests.servers import serving

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "sk-unit-dashboard-admin-0123456789abcdef0123456789"
SERIES = re.compile(r"([a-z_:][a-z0-9_:]*)\{job")
"""A series a Grafana query selects (every query filters on the $job variable)."""


def policy_config(**overrides: Any) -> RouterConfig:
    data = minimal_config(**overrides)
    data["signals"]["keywords"] += [
        {"name": "greeting", "patterns": ["hello"]},
        {"name": "never_used", "patterns": ["zzz"]},
    ]
    data["decisions"] = [
        {
            "name": "math",
            "priority": 100,
            "rules": {"conditions": [{"name": "math_words"}]},
            "model": "reasoner",
            "use_reasoning": True,
        },
        {
            "name": "chat",
            "priority": 200,
            "model": "fast",
            "rules": {
                "operator": "AND",
                "conditions": [
                    {"name": "greeting"},
                    {
                        "operator": "NOT",
                        "conditions": [{"operator": "NOT", "conditions": [{"name": "math_words"}]}],
                    },
                ],
            },
        },
    ]
    return parse_config(data, env={})


# --- policy graph ---------------------------------------------------------------------------


def test_graph_orders_decisions_as_the_engine_and_marks_negation() -> None:
    graph = policy_graph(policy_config())
    decisions = [n.label for n in graph.of_kind("decision")]
    assert decisions == ["chat", "math", "default"]  # priority 200, 100, then the default route
    edges = {(e.source, e.target): e for e in graph.edges}
    assert edges[("signal:greeting", "decision:chat")].negated is False
    # Under two NOTs a signal counts as itself.
    assert edges[("signal:math_words", "decision:chat")].negated is False
    assert edges[("decision:math", "model:reasoner")].label == "reasoning on"
    assert edges[("decision:default", "model:fast")].label == "reasoning off"
    signals = {n.label: n.detail for n in graph.of_kind("signal")}
    assert signals["never_used"] == {"type": "keyword", "used": False}
    assert signals["greeting"]["used"] is True
    assert graph.warnings == []


def test_graph_of_the_default_config_names_every_rule_signal() -> None:
    config = load_config(REPO / "config" / "default.yaml", env={})
    graph = policy_graph(config)
    edges = {(e.source, e.target, e.negated) for e in graph.edges}
    assert ("signal:reasoning", "decision:small_talk", True) in edges
    assert ("signal:greeting", "decision:small_talk", False) in edges
    for decision in config.decisions:
        assert decision.rules is not None
        for name, negated in leaves(decision.rules):
            assert (f"signal:{name}", f"decision:{decision.name}", negated) in edges
    assert {n.label for n in graph.of_kind("model")} == {m.name for m in config.models}


def test_decisions_after_a_catch_all_are_flagged_unreachable() -> None:
    data = minimal_config()
    data["decisions"].append({"name": "everything", "priority": -1, "model": "fast"})
    data["decisions"].append(
        {
            "name": "late",
            "priority": -2,
            "model": "fast",
            "rules": {"conditions": [{"name": "math_words"}]},
        }
    )
    graph = policy_graph(parse_config(data, env={}))
    reachable = {n.label: n.detail["reachable"] for n in graph.of_kind("decision")}
    assert reachable == {"everything": True, "math": True, "late": False, "default": False}
    assert graph.warnings == [
        "decision 'late' (priority -2) is never taken: 'everything' has no rules and comes "
        "before it"
    ]


def test_rule_text_and_leaves() -> None:
    chat = policy_config().decisions[1]
    assert chat.rules is not None
    assert rule_text(chat.rules) == "greeting AND NOT NOT math_words"
    assert leaves(chat.rules) == [("greeting", False), ("math_words", False)]


def test_svg_has_every_node_and_escapes_text() -> None:
    data = minimal_config()
    data["models"][0]["provider_model_id"] = "<script>alert(1)</script>"
    graph = policy_graph(parse_config(data, env={}))
    svg = render(graph)
    for node in graph.nodes:
        assert f'data-node="{node.id}"' in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<path ") == len(graph.edges)


def test_trace_evaluates_every_decision_in_order() -> None:
    config = policy_config()
    trace = decision_trace(config, {"greeting", "math_words"})
    assert [s["decision"] for s in trace["steps"]] == ["chat", "math"]
    assert [s["matched"] for s in trace["steps"]] == [True, True]
    assert trace["first_match"] == "chat"
    not_node = trace["steps"][0]["tree"]["conditions"][1]
    assert not_node == {
        "operator": "NOT",
        "matched": True,
        "conditions": [
            {
                "operator": "NOT",
                "matched": False,
                "conditions": [{"signal": "math_words", "matched": True}],
            }
        ],
    }
    assert decision_trace(config, set())["first_match"] == "default"


# --- stats ----------------------------------------------------------------------------------


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.01, 10.0), (0.1, 20.0), (float("inf"), 20.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.055)
    assert histogram_quantile(0.5, [(0.01, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(0.01, 1.0), (float("inf"), 10.0)]) == 0.01  # +Inf bucket


def registry_with_traffic() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    requests = Counter(
        "semrouter_requests", "r", ["decision", "model", "reasoning"], registry=registry
    )
    latency = Histogram(
        "semrouter_route_seconds", "l", buckets=(0.001, 0.01, 0.1), registry=registry
    )
    return registry, requests, latency


def test_stats_rates_and_percentiles_over_the_window() -> None:
    registry, requests, latency = registry_with_traffic()
    stats = Stats(registry, DashboardConfig(sample_interval_s=1.0))
    first = stats.report(now=100.0)
    assert first["window_s"] is None and first["rates"]["requests_per_s"] is None
    for _ in range(20):
        requests.labels("math", "reasoner", "on").inc()
        latency.observe(0.005)
    requests.labels("default", "fast", "off").inc(10)
    report = stats.report(window_s=60, now=110.0)
    assert report["window_s"] == 10.0
    assert report["totals"]["requests"] == 30
    assert report["rates"]["requests_per_s"] == 3.0
    assert report["requests"][0] == {
        "decision": "math",
        "model": "reasoner",
        "reasoning": "on",
        "total": 20.0,
        "per_s": 2.0,
    }
    route = next(r for r in report["latency"] if r["metric"] == "semrouter_route_seconds")
    assert route["count"] == 20 and route["scope"] == "window"
    assert 1.0 < route["p50_ms"] < 10.0
    timeline = report["timeline"]
    assert timeline["time"] == [110.0]
    assert timeline["requests_per_s"] == {"math → reasoner": [2.0], "default → fast": [1.0]}
    assert len(timeline["latency_ms"]["semrouter_route_seconds p95"]) == 1


def test_new_series_appear_and_timeline_stays_aligned() -> None:
    registry, requests, _ = registry_with_traffic()
    stats = Stats(registry, DashboardConfig(sample_interval_s=1.0))
    stats.report(now=0.0)
    requests.labels("a", "fast", "off").inc()
    stats.report(now=1.0)
    requests.labels("b", "fast", "off").inc(2)  # a route first seen in the second interval
    tokens = Counter("gen_ai_tokens", "t", ["type"], registry=registry)
    tokens.labels("output").inc(50)
    report = stats.report(now=2.0)
    series = report["timeline"]["requests_per_s"]
    assert series == {"a → fast": [1.0, 0.0], "b → fast": [0.0, 2.0]}
    assert report["tokens"] == [
        {"metric": "gen_ai_tokens", "type": "output", "total": 50.0, "per_s": 25.0}
    ]
    assert "gen_ai_tokens" in {m["name"] for m in report["metrics"]}


def test_stats_history_is_bounded_under_many_polls() -> None:
    registry, requests, _ = registry_with_traffic()
    stats = Stats(registry, DashboardConfig(history_points=5, sample_interval_s=1.0))
    for second in range(1000):
        requests.labels("a", "fast", "off").inc()
        stats.report(now=float(second))
        stats.report(now=second + 0.5)  # too soon: not kept
    assert len(stats.history) == 5
    assert [s.time for s in stats.history] == [995.0, 996.0, 997.0, 998.0, 999.0]
    # n snapshots, n - 1 intervals: the timeline is as bounded as the history.
    assert stats.report(now=1000.0)["timeline"]["time"] == [997.0, 998.0, 999.0, 1000.0]


# --- recent decisions -----------------------------------------------------------------------


def route_of(config: RouterConfig) -> Route:
    return Route(config.models[0], None, None, 1.0)


def hostile_chat(chars: int) -> Any:
    return chat_request_from_body(
        {"model": "fast", "messages": [{"role": "user", "content": "x" * chars}]}
    )


def test_recent_decisions_keep_at_most_their_size_newest_first() -> None:
    config = policy_config(dashboard={"recent_decisions": 5})
    recent = RecentDecisions(config.dashboard)
    chat = hostile_chat(100_000)
    for i in range(1000):
        recent.record(chat, route_of(config), {"x-semrouter-decision": f"d{i}"})
    entries = recent.entries()
    assert recent.recorded == 1000 and len(entries) == 5
    assert [e["decision"] for e in entries] == ["d999", "d998", "d997", "d996", "d995"]
    assert all("content" not in e for e in entries)  # content is off by default
    assert len(recent.entries(2)) == 2 and recent.entries(-1) == []


def test_recent_content_only_when_configured_and_cut() -> None:
    config = policy_config(dashboard={"record_content": True, "content_chars": 16})
    recent = RecentDecisions(config.dashboard)
    recent.record(hostile_chat(1_000_000), route_of(config), {})
    assert recent.entries()[0]["content"] == "x" * 16
    off = RecentDecisions(policy_config(dashboard={"enabled": False}).dashboard)
    off.record(hostile_chat(10), route_of(config), {})
    assert off.size == 0 and off.entries() == []


@pytest.mark.parametrize("value", [-1, 100_001])
def test_recent_size_is_bounded_in_config(value: int) -> None:
    with pytest.raises(ConfigError, match=r"dashboard\.recent_decisions"):
        parse_config(minimal_config(dashboard={"recent_decisions": value}), env={})


# --- config view ----------------------------------------------------------------------------


def test_urls_lose_their_credentials() -> None:
    assert redact_url("redis://:s3cret@cache:6379/0") == "redis://***@cache:6379/0"
    assert redact_url("http://user:pw@host/v1") == "http://***@host/v1"
    assert redact_url("http://host/v1") == "http://host/v1"
    assert redact_url("me@example.com") == "me@example.com"


def test_config_view_checks_the_file_again(tmp_path: Path) -> None:
    data = minimal_config()
    data["cache"] = {"redis": {"url": "redis://:hunter2hunter2@cache:6379/0"}}
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, env={})
    view = config_view(config, str(path))
    assert view["file"] == {"path": str(path), "status": "unchanged", "errors": []}
    assert "hunter2" not in view["yaml"] and "redis://***@cache:6379/0" in view["yaml"]
    data["decisions"][0]["priority"] = 7
    path.write_text(yaml.safe_dump(data))
    assert config_view(config, str(path))["file"]["status"] == "changed"
    data["decisions"][0]["model"] = "nope"
    path.write_text(yaml.safe_dump(data))
    broken = config_view(config, str(path))["file"]
    assert broken["status"] == "invalid"
    assert broken["errors"] == ["decisions[0].models[0]: unknown model 'nope'"]


# --- who may see it -------------------------------------------------------------------------


def app_for(backend: str = "http://127.0.0.1:9", **overrides: Any) -> Any:
    data = minimal_config(**overrides)
    for model in data["models"]:
        model["endpoints"] = [{"url": f"{backend}/v1"}]
    return ProxyApp(Router(parse_config(data, env={}))).app


ADMIN_PATHS = [
    "/dashboard",
    "/dashboard/policy",
    "/dashboard/playground",
    "/dashboard/config",
    "/dashboard/recent",
    "/api/v1/stats",
    "/api/v1/recent",
    "/api/v1/policy",
    "/api/v1/config",
]


@pytest.fixture
def no_admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEMROUTER_ADMIN_KEY", raising=False)


@pytest.fixture
def admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMROUTER_ADMIN_KEY", ADMIN_KEY)


def test_without_a_key_other_hosts_are_refused(no_admin_key: None) -> None:
    client = TestClient(app_for())  # its client address is 'testclient', not loopback
    for path in ADMIN_PATHS:
        response = client.get(path)
        assert response.status_code == 403, path
        assert "loopback" in response.json()["error"]["message"]
    assert client.post("/api/v1/playground", json={"text": "hi"}).status_code == 403
    assert client.get("/health").status_code == 200


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, allow_redirects=False) as response,
    ):
        return (
            response.status,
            {k.lower(): v for k, v in response.headers.items()},
            await response.text(),
        )


async def test_without_a_key_loopback_may_see_everything(no_admin_key: None) -> None:
    async with serving(app_for()) as url:
        for path in ADMIN_PATHS:
            status, headers, _ = await get(url + path)
            assert status == 200, path
            assert headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in headers["content-security-policy"]


async def test_with_a_key_even_loopback_needs_it(admin_key: None) -> None:
    async with serving(app_for()) as url:
        status, _, body = await get(url + "/api/v1/stats")
        assert status == 401 and "admin key" in json.loads(body)["error"]["message"]
        status, headers, _ = await get(url + "/dashboard")
        assert status == 303 and headers["location"] == "/dashboard/login"
        wrong = {"authorization": "Bearer sk-not-the-admin-key-000000000000000"}
        assert (await get(url + "/api/v1/stats", wrong))[0] == 401
        bearer = {"authorization": f"Bearer {ADMIN_KEY}"}
        assert (await get(url + "/api/v1/stats", bearer))[0] == 200
        assert (await get(url + "/dashboard", {"cookie": f"{COOKIE}={ADMIN_KEY}"}))[0] == 200
        assert (await get(url + "/dashboard", {"cookie": f"{COOKIE}=guess"}))[0] == 303


def test_login_sets_a_strict_http_only_cookie(admin_key: None) -> None:
    client = TestClient(app_for())
    refused = client.post("/dashboard/login", data={"key": "wrong"}, follow_redirects=False)
    assert refused.status_code == 401 and COOKIE not in refused.cookies
    response = client.post("/dashboard/login", data={"key": ADMIN_KEY}, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    too_big = client.post("/dashboard/login", content=b"key=" + b"a" * 10_000)
    assert too_big.status_code == 400


def test_a_short_admin_key_stops_the_router(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMROUTER_ADMIN_KEY", "short")
    with pytest.raises(ConfigError, match="admin_key_env"):
        app_for()


def test_dashboard_off_answers_404(admin_key: None) -> None:
    client = TestClient(app_for(dashboard={"enabled": False}))
    bearer = {"authorization": f"Bearer {ADMIN_KEY}"}
    for path in ADMIN_PATHS:
        assert client.get(path, headers=bearer).status_code == 404, path


# --- the APIs, with traffic -----------------------------------------------------------------


@pytest.fixture
async def routed_url(no_admin_key: None) -> AsyncIterator[str]:
    backend = StandIn()
    runner, port = await start_standin(backend)
    async with serving(app_for(f"http://127.0.0.1:{port}")) as url:
        yield url
    await runner.cleanup()


async def post(url: str, path: str, payload: Any, content_type: str = "application/json") -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url + path, data=json.dumps(payload), headers={"content-type": content_type}
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


async def test_stats_recent_and_playground_see_routed_requests(routed_url: str) -> None:
    for text in ("prove this integral", "hello"):
        payload = {"model": "auto", "messages": [{"role": "user", "content": text}]}
        assert (await post(routed_url, "/v1/chat/completions", payload))[0] == 200
    stats = json.loads((await get(routed_url + "/api/v1/stats"))[2])
    assert stats["totals"]["requests"] == 2
    assert {(r["decision"], r["model"]) for r in stats["requests"]} == {
        ("math", "reasoner"),
        ("default", "fast"),
    }
    recent = json.loads((await get(routed_url + "/api/v1/recent"))[2])
    assert [e["decision"] for e in recent["entries"]] == ["default", "math"]
    assert recent["entries"][1]["fired"] == ["math_words"]
    assert "prove" not in json.dumps(recent)
    status, result = await post(routed_url, "/api/v1/playground", {"text": "prove it"})
    assert status == 200
    assert result["route"]["decision"] == "math"
    assert result["route"]["request_body"]["chat_template_kwargs"] == {"enable_thinking": True}
    assert result["trace"]["first_match"] == "math"
    after = json.loads((await get(routed_url + "/api/v1/stats"))[2])
    assert after["totals"]["requests"] == 2  # the playground is not counted
    refused = await post(routed_url, "/api/v1/playground", {"text": "x"}, "text/plain")
    assert refused[0] == 400
    assert (await get(routed_url + "/api/v1/stats?window=abc"))[0] == 400


# --- the Grafana dashboard ------------------------------------------------------------------


def test_grafana_dashboard_queries_only_series_the_router_exports() -> None:
    dashboard = json.loads((REPO / "deploy" / "grafana" / "semrouter-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    queried = {re.sub(r"_(total|bucket)$", "", m) for e in exprs for m in SERIES.findall(e)}
    registry = ProxyApp(Router(parse_config(minimal_config(), env={}))).pipeline.metrics.registry
    exported = {metric.name for metric in registry.collect()}
    assert queried <= exported, queried - exported
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
