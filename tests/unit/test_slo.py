"""The SLO controller: bounded rolling windows, the degradation order (priority, protected),
hysteresis without flapping, the pipeline's header/trace/metric, and the TTFT watchdog."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from itertools import pairwise
from typing import Any

import aiohttp
import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from semrouter.bench.standin import Load, StandIn, start_standin
from semrouter.config import parse_config
from semrouter.config.schema import ModelSlo, RouterConfig, SloConfig
from semrouter.decide.engine import Outcome
from semrouter.pipeline.flow import Pipeline
from semrouter.pipeline.router import Router
from semrouter.proxy.upstream import Upstreams
from semrouter.slo import SloControl
from semrouter.slo.controller import ModelControl
from semrouter.slo.degrade import model_plan
from semrouter.slo.window import BINS, RollingWindow
from tests.conftest import minimal_config


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def slo_config(**slo: Any) -> RouterConfig:
    """minimal_config with an SLO on the reasoner, the controller on, and three decisions."""
    data = minimal_config()
    data["models"][1]["slo"] = {"latency_p95_ms": 2000, "alternative": "fast"}
    data["signals"]["keywords"].append({"name": "urgent", "patterns": ["urgent"]})
    data["decisions"] = [
        {
            "name": "math",
            "priority": 10,
            "rules": {"conditions": [{"name": "math_words"}]},
            "model": "reasoner",
            "use_reasoning": True,
            "reasoning_budget_tokens": 1000,
        },
        {
            "name": "important",
            "priority": 20,
            "rules": {"conditions": [{"name": "urgent"}]},
            "model": "reasoner",
            "use_reasoning": True,
        },
        {
            "name": "vip",
            "priority": 30,
            "protected": True,
            "rules": {"conditions": [{"name": "math_words"}, {"name": "urgent"}]},
            "model": "reasoner",
            "use_reasoning": True,
        },
    ]
    data["slo"] = {"enabled": True, "window_s": 10, "min_samples": 5, **slo}
    return parse_config(data, env={})


# --- windows --------------------------------------------------------------------------------


def test_window_quantile_matches_numpy_within_a_bin() -> None:
    window = RollingWindow(10.0, 10)
    rng = np.random.default_rng(0)
    values = rng.lognormal(mean=6.0, sigma=1.0, size=5000)
    for i, value in enumerate(values):
        window.record(i * 0.001, value, value)
    stats = window.stats(5.0)
    assert stats.requests == 5000 and stats.errors == 0
    expected = float(np.percentile(values, 95))
    assert stats.latency_p95_ms is not None
    assert abs(stats.latency_p95_ms / expected - 1) < 0.06


def test_window_forgets_what_is_older_than_the_window_and_stays_bounded() -> None:
    window = RollingWindow(10.0, 10)
    for i in range(200_000):  # hostile volume: a sample every 0.5 ms for 100 s
        window.record(i * 0.0005, 5000.0 if i < 100_000 else 10.0, 10.0)
    ring = window._ring
    assert len(ring) == 10 and all(len(s.ttft) == len(s.latency) == BINS for s in ring)
    stats = window.stats(100.0)
    assert stats.requests <= 21_000  # one window (plus the slot being filled)
    assert stats.ttft_p95_ms is not None and stats.ttft_p95_ms < 11  # the slow past is gone
    assert window.stats(1000.0).requests == 0


def test_window_counts_errors_without_latency() -> None:
    window = RollingWindow(10.0, 5)
    for i in range(10):
        window.record(float(i) / 10, None if i < 3 else 100.0, None if i < 3 else 100.0)
    stats = window.stats(1.0)
    assert stats.requests == 10 and stats.errors == 3 and stats.error_rate == pytest.approx(0.3)


# --- the degradation order --------------------------------------------------------------------


def test_plan_orders_by_priority_and_protected_last() -> None:
    config = slo_config()
    reasoner = config.model("reasoner")
    assert reasoner is not None
    plans = model_plan(config, reasoner)
    assert plans["math"].steps == ("thinking_budget", "reasoning_off", "alternative")
    assert plans["important"].steps == ("reasoning_off", "alternative")  # no budget, no effort
    # math (priority 10) starts at level 1, important (20) at 2, protected vip after both end
    assert (plans["math"].offset, plans["important"].offset) == (0, 1)
    assert plans["vip"].offset == 3
    assert [plans["math"].at(n) for n in (0, 1, 2)] == [
        (),
        ("thinking_budget",),
        ("thinking_budget", "reasoning_off"),
    ]
    assert plans["important"].at(1) == () and plans["important"].at(2) == ("reasoning_off",)
    assert plans["vip"].at(3) == () and plans["vip"].at(4) == ("reasoning_off",)
    assert "default" not in plans  # the default route goes to fast, without an SLO


def test_degrade_order_from_config_is_followed() -> None:
    config = slo_config(degrade_order=["alternative", "reasoning_off"])
    reasoner = config.model("reasoner")
    assert reasoner is not None
    assert model_plan(config, reasoner)["math"].steps == ("alternative", "reasoning_off")


def test_a_repeated_thinking_budget_scales_the_budget_again_at_each_level() -> None:
    config = slo_config(
        degrade_order=["thinking_budget", "thinking_budget", "reasoning_off"], budget_factor=0.5
    )
    control = SloControl(config, CollectorRegistry())
    reasoner = config.model("reasoner")
    assert reasoner is not None
    budgets = []
    for level in (0, 1, 2):
        control._controls["reasoner"].level = level
        result = control.adjust(_outcome("math", reasoning_budget_tokens=1000), reasoner)
        assert result is not None
        budgets.append(result[0].reasoning_budget_tokens)
    assert budgets == [1000, 500, 250]
    control._controls["reasoner"].level = 3
    outcome, steps, header = control.adjust(
        _outcome("math", reasoning_budget_tokens=1000), reasoner
    )
    assert not outcome.use_reasoning and steps[-1] == "reasoning_off"
    assert header == "degraded=thinking_budget,thinking_budget,reasoning_off;level=3"
    assert control.metrics is not None
    counted = control.metrics.degraded.labels("reasoner", "thinking_budget")._value.get()
    assert counted == 3  # one per request degraded, not one per repetition


def _outcome(decision: str, **fields: Any) -> Outcome:
    return Outcome(decision, "reasoner", True, None, **fields)


def test_adjust_applies_steps_and_reports_them() -> None:
    config = slo_config(budget_factor=0.25)
    control = SloControl(config, CollectorRegistry())
    reasoner = config.model("reasoner")
    assert reasoner is not None
    model = control._controls["reasoner"]
    model.level = 2
    result = control.adjust(_outcome("math", reasoning_budget_tokens=1000), reasoner, probe=True)
    assert result is not None
    outcome, steps, header = result
    assert steps == ("thinking_budget", "reasoning_off")
    assert outcome.reasoning_budget_tokens == 250 and not outcome.use_reasoning
    assert header == "degraded=thinking_budget,reasoning_off;level=2"
    model.level = 5
    outcome, steps, _ = control.adjust(_outcome("math", reasoning_budget_tokens=1000), reasoner)
    assert outcome.model == "fast" and "alternative" in steps
    assert control.adjust(_outcome("vip"), reasoner, probe=True)[1] == (
        "reasoning_off",
        "alternative",
    )
    model.level = 4
    assert control.adjust(_outcome("vip"), reasoner, probe=True)[1] == ("reasoning_off",)
    model.level = 0
    assert control.adjust(_outcome("math"), reasoner, probe=True)[2] == "ok"


def test_a_ticket_counts_as_load_when_its_request_is_sent() -> None:
    config = slo_config()
    clock = Clock()
    control = SloControl(config, CollectorRegistry(), clock)
    reasoner = config.models[1]
    ticket = control.ticket(reasoner)
    assert ticket is not None

    def window() -> dict[str, Any]:
        trace = control.trace(reasoner, ())
        assert trace is not None
        return trace["window"]

    assert window()["arrivals"] == 0  # made, not sent yet (a cached answer never is)
    ticket.start()
    clock.now += 1.5
    assert window()["arrivals"] == 1 and window()["requests"] == 0
    ticket.succeeded()
    assert window()["requests"] == 1


def test_control_is_off_without_enabled_or_model_slo() -> None:
    data = minimal_config()
    data["models"][1]["slo"] = {"latency_p95_ms": 100}
    assert not SloControl(parse_config(data, env={}), CollectorRegistry()).enabled
    data = minimal_config(slo={"enabled": True})
    assert not SloControl(parse_config(data, env={}), CollectorRegistry()).enabled


def test_config_rejects_bad_slo_settings() -> None:
    for bad in (
        {"models": [{"name": "a", "endpoints": [{"url": "http://x"}], "slo": {}}]},
        {"slo": {"degrade_order": ["effort", "effort"]}},
        {"slo": {"window_s": 10, "hold_s": 2}},
        {"slo": {"breach_ratio": 0.7, "recover_ratio": 0.8}},
        {"slo": {"degrade_order": ["thinking_budget", "reasoning_off", "reasoning_off"]}},
    ):
        data = minimal_config()
        if "models" in bad:
            data["models"].append(bad["models"][0])
        else:
            data.update(bad)
        with pytest.raises(Exception, match=r"slo|hold_s|twice|give|breach_ratio"):
            parse_config(data, env={})
    data = minimal_config()
    data["models"][0]["slo"] = {"latency_p95_ms": 1, "alternative": "fast"}
    with pytest.raises(Exception, match="the model itself"):
        parse_config(data, env={})


# --- hysteresis -------------------------------------------------------------------------------


def simulate(
    latency_at: Callable[[float, int], float],
    seconds: float,
    config: SloConfig,
    clock: Clock,
    control: ModelControl,
    rate: float = 50.0,
) -> list[tuple[float, int]]:
    """Requests at `rate` per second whose latency depends on time and level; the changes."""
    changes: list[tuple[float, int]] = []
    rng = random.Random(0)
    end = clock.now + seconds
    while clock.now < end:
        clock.now += 1 / rate
        epoch = control.epoch
        control.arrive()
        latency = latency_at(clock.now, control.level) * rng.uniform(0.9, 1.1)
        control.record(epoch, latency / 2, latency)
        if control.evaluate() is not None:
            changes.append((clock.now, control.level))
    return changes


def most_changes_per_window(changes: list[tuple[float, int]], window: float) -> int:
    times = [t for t, _ in changes]
    return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


def test_constant_load_above_then_below_changes_level_at_most_twice_per_window() -> None:
    config = SloConfig(enabled=True, window_s=10, min_samples=20)
    slo = ModelSlo(latency_p95_ms=2000)
    clock = Clock()
    control = ModelControl("m", slo, config, top=4, clock=clock)
    # Heavy load: 5 s at level 0, each level cuts 45%; light load: 500 ms whatever the level.
    start = clock.now
    heavy = 120.0

    def latency(now: float, level: int) -> float:
        return 5000 * 0.55**level if now - start < heavy else 500.0

    changes = simulate(latency, 240, config, clock, control)
    assert most_changes_per_window(changes, config.window_s) <= 2
    during = [level for t, level in changes if t - start < heavy]
    assert during == [1, 2]  # 5000 x 0.55^2 = 1512 ms: within the SLO, and there it stays
    after = [level for t, level in changes if t - start >= heavy]
    assert after == [1, 0] and control.level == 0  # recovered once the load fell


def test_load_between_two_levels_settles_instead_of_flapping() -> None:
    """Level 1 breaks the SLO, level 2 is far under it: a naive controller would go 1, 2, 1,
    2, ... for ever; the doubling hold makes the attempts rarer and rarer."""
    config = SloConfig(enabled=True, window_s=10, min_samples=20, max_backoff=8)
    clock = Clock()
    control = ModelControl("m", ModelSlo(latency_p95_ms=2000), config, top=4, clock=clock)
    changes = simulate(lambda _t, level: 2500 if level < 2 else 1000, 600, config, clock, control)
    assert most_changes_per_window(changes, config.window_s) <= 2
    downs = [t for (_, before), (t, level) in pairwise(changes) if level < before]
    gaps = [b - a for a, b in pairwise(downs)]
    assert gaps and all(b >= a for a, b in pairwise(gaps))  # ever rarer
    assert gaps[-1] >= config.hold * config.max_backoff  # one probe of level 1 per 40 s
    spans = pairwise([*changes, (clock.now, control.level)])
    breaking = sum(end - t for (t, level), (end, _) in spans if level == 1 and t > clock.now - 300)
    assert breaking / 300 < 0.15  # the SLO is broken a ninth of the time, not half of it


def test_a_level_is_not_probed_at_the_load_that_broke_it() -> None:
    """Level 1 breaks at 50 requests/s: at that load the controller stays at level 2 for the
    memory's life (no probe, no new breach); once the load falls to 20/s it steps back."""
    config = SloConfig(enabled=True, window_s=10, min_samples=20, max_backoff=8)
    clock = Clock()
    control = ModelControl("m", ModelSlo(latency_p95_ms=2000), config, top=4, clock=clock)
    load = {"rate": 50.0}

    def latency(_t: float, level: int) -> float:
        return 2500 if level < 2 and load["rate"] > 30 else 1000

    start = clock.now
    changes = simulate(latency, 35, config, clock, control, rate=load["rate"])
    assert [level for _, level in changes] == [1, 2]
    memory = config.hold * config.max_backoff
    assert start + 35 - changes[-1][0] < memory  # the memory still holds at the end
    load["rate"] = 20.0
    changes = simulate(latency, 30, config, clock, control, rate=load["rate"])
    assert [level for _, level in changes] == [1, 0]


def test_the_load_memory_expires_and_the_level_is_probed_again() -> None:
    """At a constant load the first step back would come a window after the breach; the
    memory (hold x max_backoff = 20 s) holds it back until it expires."""
    config = SloConfig(enabled=True, window_s=10, min_samples=20, max_backoff=4)
    clock = Clock()
    control = ModelControl("m", ModelSlo(latency_p95_ms=2000), config, top=4, clock=clock)
    changes = simulate(lambda _t, level: 2500 if level < 1 else 1000, 80, config, clock, control)
    ups = [t for t, level in changes if level == 1]
    downs = [t for t, level in changes if level == 0]
    assert downs and downs[0] - ups[0] >= config.hold * config.max_backoff
    assert len(ups) >= 2  # the probe broke the SLO again: back up, the memory renewed


def test_quiet_model_steps_back_without_samples() -> None:
    config = SloConfig(enabled=True, window_s=10, min_samples=20)
    clock = Clock()
    control = ModelControl("m", ModelSlo(latency_p95_ms=100), config, top=2, clock=clock)
    simulate(lambda _t, _l: 500.0, 7, config, clock, control)
    assert control.level == 1
    clock.now += 11  # its traffic went elsewhere
    assert control.evaluate() is not None and control.level == 0


def test_breach_is_judged_at_the_margin_below_the_slo() -> None:
    config = SloConfig(enabled=True, window_s=10, min_samples=20, breach_ratio=0.9)
    clock = Clock()
    control = ModelControl("m", ModelSlo(latency_p95_ms=2000), config, top=2, clock=clock)
    simulate(lambda _t, _l: 1550.0, 20, config, clock, control)  # up to 1,705: within 90%
    assert control.level == 0
    simulate(lambda _t, _l: 1950.0, 20, config, clock, control)  # under the SLO, over 90%
    assert control.level >= 1


def test_a_whole_window_is_judged_on_few_samples() -> None:
    """Sparse traffic (below min_samples per window) is still judged once a whole window has
    passed: a slow trickle raises the level instead of passing for calm."""
    config = SloConfig(enabled=True, window_s=10, min_samples=20)
    clock = Clock()
    control = ModelControl("m", ModelSlo(latency_p95_ms=1000), config, top=3, clock=clock)
    simulate(lambda _t, _l: 3000.0, 30, config, clock, control, rate=1.0)
    assert control.level >= 2
    simulate(lambda _t, _l: 300.0, 60, config, clock, control, rate=1.0)
    assert control.level == 0


def test_samples_routed_before_a_change_are_not_judged() -> None:
    config = SloConfig(enabled=True, window_s=10, min_samples=5)
    clock = Clock()
    control = ModelControl("m", ModelSlo(latency_p95_ms=100), config, top=3, clock=clock)
    old = control.epoch
    simulate(lambda _t, _l: 500.0, 6, config, clock, control)
    assert control.level == 1
    judged = control.window.stats(clock.now).requests
    assert judged < 60  # only what came after the change (about 1 s of 50 requests/s)
    for _ in range(50):
        control.record(old, 900.0, 900.0)  # slow requests still finishing from level 0
    assert control.window.stats(clock.now).requests == judged


# --- the pipeline -----------------------------------------------------------------------------


def _chat(text: str, stream: bool = False) -> bytes:
    return orjson.dumps(
        {"model": "auto", "stream": stream, "messages": [{"role": "user", "content": text}]}
    )


async def test_pipeline_degrades_and_shows_it_in_header_trace_and_metric() -> None:
    pipeline = Pipeline(Router(slo_config()))
    pipeline.slo._controls["reasoner"].level = 2
    prepared = await pipeline.prepare(_chat("prove it"), {})
    assert prepared.headers["x-semrouter-slo"] == "degraded=thinking_budget,reasoning_off;level=2"
    assert prepared.headers["x-semrouter-reasoning"] == "off"
    body = orjson.loads(prepared.body)
    assert body["chat_template_kwargs"]["enable_thinking"] is False
    assert prepared.slo is not None
    summary, headers = await pipeline.classify(orjson.dumps({"text": "prove it"}), {})
    assert summary["slo"]["level"] == 2
    assert summary["slo"]["degraded"] == ["thinking_budget", "reasoning_off"]
    assert headers["x-semrouter-slo"].startswith("degraded=")
    value = pipeline.metrics.registry.get_sample_value(
        "semrouter_slo_degraded_requests_total", {"model": "reasoner", "step": "reasoning_off"}
    )
    assert value == 1.0  # the probe counted nothing
    protected = await pipeline.prepare(_chat("prove it, urgent"), {})
    assert protected.headers["x-semrouter-slo"] == "ok;level=2"  # vip: degraded from level 4


async def test_direct_requests_are_timed_but_never_degraded() -> None:
    pipeline = Pipeline(Router(slo_config()))
    pipeline.slo._controls["reasoner"].level = 5
    raw = orjson.dumps({"model": "reasoner", "messages": [{"role": "user", "content": "prove"}]})
    prepared = await pipeline.prepare(raw, {})
    assert "x-semrouter-slo" not in prepared.headers and prepared.slo is not None


# --- the TTFT watchdog --------------------------------------------------------------------------


@pytest.fixture
async def two_backends() -> AsyncIterator[tuple[str, str]]:
    slow = StandIn(load=Load(first_byte_delay_s=2.0, answer_delay_s=0.0, prefill_s=0.0))
    fast = StandIn(load=Load(answer_delay_s=0.0, prefill_s=0.0))
    runners = [await start_standin(b) for b in (slow, fast)]
    yield tuple(f"http://127.0.0.1:{port}/v1" for _, port in runners)  # type: ignore[misc]
    for runner, _ in runners:
        await runner.cleanup()


async def test_watchdog_fails_over_to_the_next_endpoint(two_backends: tuple[str, str]) -> None:
    slow, fast = two_backends
    config = parse_config(
        {
            "models": [
                {
                    "name": "m",
                    "endpoints": [{"url": slow, "weight": 1e6}, {"url": fast, "weight": 1e-6}],
                    "slo": {"first_byte_timeout_ms": 300},
                }
            ],
            "signals": {"domain": {"enabled": False}, "reasoning": {"enabled": False}},
            "default": {"model": "m"},
        },
        env={},
    )
    model = config.models[0]
    upstreams = Upstreams(seed=0)
    await upstreams.start()
    body = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    try:
        loop = __import__("asyncio").get_running_loop()
        started = loop.time()
        response = await upstreams.post(model, "/chat/completions", body, {}, 0.3)
        events = b"".join([chunk async for chunk in response.chunks()])
        assert b"[DONE]" in events and b"Hello" in events
        assert loop.time() - started < 1.5  # not the slow endpoint's 2 s
        failures = upstreams._metrics.backend_failures.labels("m", "first_byte_timeout")
        assert failures._value.get() == 1
        with pytest.raises(Exception, match=r"no first byte within 0\.3s"):
            await upstreams.post(
                model.model_copy(update={"endpoints": model.endpoints[:1]}),
                "/chat/completions",
                body,
                {},
                0.3,
            )
    finally:
        await upstreams.close()


async def test_no_watchdog_for_json_or_without_a_limit(two_backends: tuple[str, str]) -> None:
    slow, _ = two_backends
    config = parse_config(
        {
            "models": [{"name": "m", "endpoints": [{"url": slow}]}],
            "signals": {"domain": {"enabled": False}, "reasoning": {"enabled": False}},
            "default": {"model": "m"},
        },
        env={},
    )
    upstreams = Upstreams()
    await upstreams.start()
    try:
        body = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]}'
        response = await upstreams.post(config.models[0], "/chat/completions", body, {})
        async with aiohttp.ClientSession():
            events = b"".join([chunk async for chunk in response.chunks()])
        assert b"[DONE]" in events  # waited the 2 s: no limit, no failover
    finally:
        await upstreams.close()


# --- ext_proc feeds the controller too ---------------------------------------------------------


async def test_extproc_times_json_at_headers_and_streams_at_first_and_last_chunk() -> None:
    from semrouter.extproc.server import ExtProcServicer
    from tests.unit.test_extproc import (
        drive,
        request_body,
        request_headers,
        response_body,
        response_headers,
    )

    servicer = ExtProcServicer(Pipeline(Router(slo_config())))
    window = servicer.pipeline.slo._controls["reasoner"].window
    await drive(
        servicer,
        [request_headers(), request_body(_chat("prove it")), response_headers("application/json")],
    )
    assert window.stats(time.monotonic()).requests == 1
    replies = await drive(
        servicer,
        [
            request_headers(),
            request_body(_chat("prove it", stream=True)),
            response_headers("text/event-stream"),
            response_body(b"data: {}\n\n", end=False),
            response_body(b"data: [DONE]\n\n", end=True),
        ],
    )
    assert replies[2].mode_override.response_body_mode != 0  # the body streams through
    stats = window.stats(time.monotonic())
    assert stats.requests == 2 and stats.errors == 0
