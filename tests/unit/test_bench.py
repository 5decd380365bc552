"""The benchmark harnesses' own logic: wrk parsing, answer extraction, resuming, result shapes."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from semrouter.bench import overhead, reasoning
from semrouter.bench.classify import enabled_kinds, only
from semrouter.bench.common import BenchError, make_prompt
from semrouter.bench.reasoning import ResultStore, chat_url, extract_choice, load_dataset
from semrouter.bench.wrk import (
    UNIQUE_MARKER,
    WrkError,
    parse_wrk_output,
    run_wrk,
    write_post_script,
    wrk_command,
)
from semrouter.cli.bench import add_bench_parsers
from semrouter.config import parse_config
from tests.conftest import minimal_config
from tests.servers import serving

WRK_REPORT = """\
Running 5s test @ http://127.0.0.1:8080/v1/chat/completions
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.61ms    3.02ms   1.02s    91.50%
    Req/Sec     1.27k   102.33     1.46k    76.00%
  Latency Distribution
     50%   12.05ms
     75%   13.31ms
     90%  862.00us
     99%    1.50s
  12655 requests in 5.01s, 9.74MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   2526.47
Transfer/sec:      1.94MB
"""


def test_wrk_report_parsed_with_units_errors_and_non_2xx() -> None:
    result = parse_wrk_output(WRK_REPORT)
    assert result.requests == 12655
    assert result.duration_s == 5.01
    assert result.requests_per_s == 2526.47
    assert result.percentiles_ms == {"50": 12.05, "75": 13.31, "90": 0.862, "99": 1500.0}
    assert (result.p50_ms, result.p99_ms) == (12.05, 1500.0)
    assert (result.mean_ms, result.max_ms) == (12.61, 1020.0)
    assert result.socket_errors == {"connect": 0, "read": 2, "write": 0, "timeout": 1}
    assert result.non_2xx == 7
    assert not result.ok
    assert result.to_dict()["ok"] is False


def test_clean_wrk_report_is_ok() -> None:
    clean = "\n".join(
        line for line in WRK_REPORT.splitlines() if "errors" not in line and "Non-2xx" not in line
    )
    result = parse_wrk_output(clean)
    assert result.ok
    assert result.socket_errors == {}
    assert result.non_2xx == 0


def test_wrk_output_without_distribution_or_summary_is_rejected() -> None:
    without = (
        WRK_REPORT.split("  Latency Distribution")[0]
        + "  1 requests in 1.00s, 1KB read\nRequests/sec: 1.00\n"
    )
    with pytest.raises(WrkError, match="--latency"):
        parse_wrk_output(without)
    with pytest.raises(WrkError, match="not a wrk report"):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused")


def test_wrk_command_never_has_more_threads_than_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("semrouter.bench.wrk.shutil.which", lambda _name: "/usr/bin/wrk")
    command = wrk_command("http://h/x", Path("post.lua"), Path("body.json"), 1, 5.0, threads=4)
    assert command[:6] == ["/usr/bin/wrk", "-t1", "-c1", "-d5s", "--timeout=30s", "--latency"]
    assert command[-3:] == ["http://h/x", "--", "body.json"]


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("Let me think. The answer is (C).", 10, "C"),
        ("the answer is **D**", 10, "D"),
        ("So the answer is option E, not (B).", 10, "E"),
        ("The answer is (A). Wait, no: the answer is (B).", 10, "B"),
        ("Answer: B", 10, "B"),
        ("answer = (H)", 10, "H"),
        (r"Final: \boxed{G}", 10, "G"),
        ("I'd pick (F) here.", 10, "F"),
        ("A train leaves at noon, so B", 10, "B"),
        ("I think it is J", 10, "J"),
        ("A contract signed under duress is voidable", 10, None),
        ("<think>the answer is (A)</think>The answer is (C)", 10, "C"),
        ("The answer is (E)", 4, None),
        ("Nothing useful here.", 10, None),
    ],
)
def test_answer_letter_extraction(text: str, options: int, expected: str | None) -> None:
    assert extract_choice(text, options) == expected


def test_chat_url_accepts_base_with_or_without_v1() -> None:
    assert chat_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"


def _question(qid: str, category: str, answer: str = "B") -> dict[str, Any]:
    return {
        "question_id": qid,
        "question": f"q{qid}?",
        "options": ["a", "b", "c", "d"],
        "answer": answer,
        "category": category,
    }


def _dataset(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_dataset_limit_spreads_over_categories_and_rejects_bad_rows(tmp_path: Path) -> None:
    rows = [_question(str(i), "math") for i in range(5)] + [
        _question("9", "law"),
        _question("8", "law"),
    ]
    picked = load_dataset(_dataset(tmp_path, rows), limit=4)
    assert [(q.id, q.category) for q in picked] == [
        ("0", "math"),
        ("9", "law"),
        ("1", "math"),
        ("8", "law"),
    ]
    assert len(load_dataset(_dataset(tmp_path, rows))) == 7
    with pytest.raises(reasoning.BenchError, match="answer letter"):
        load_dataset(_dataset(tmp_path, [_question("1", "math", answer="E")]))
    with pytest.raises(reasoning.BenchError, match=r"questions.jsonl:1"):
        load_dataset(_dataset(tmp_path, [{"question": "no options"}]))


def test_result_store_keeps_latest_record_and_ignores_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    store = ResultStore(path)
    store.append({"id": "1", "arm": "on", "status": "error", "error": "HTTP 500"})
    store.append({"id": "1", "arm": "off", "status": "ok"})
    with open(path, "a") as handle:
        handle.write('{"id": "2", "arm": "on", "sta')  # interrupted mid-write
    reloaded = ResultStore(path)
    assert not reloaded.done("on", "1")  # errors are asked again
    assert reloaded.done("off", "1")
    assert not reloaded.done("on", "2")
    reloaded.append({"id": "1", "arm": "on", "status": "ok"})
    assert ResultStore(path).done("on", "1")


def _bench_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="semrouter")
    add_bench_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", *argv])


def test_reasoning_run_resumes_and_writes_the_documented_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    async def fake_stream_chat(
        _session: Any, url: str, body: dict[str, Any], _headers: Any, _timeout: float
    ) -> dict[str, Any]:
        sent.append((url, body))
        routed = body["model"] == "auto"
        return {
            "status": "ok",
            "content": "The answer is (B)",
            "reasoning_chars": 0,
            "prompt_tokens": 40,
            "completion_tokens": 12,
            "reasoning_tokens": None,
            "usage_source": "usage",
            "ttft_ms": 5.0,
            "latency_ms": 9.0,
            "finish_reason": "stop",
            "routed_model": "reasoner" if routed else None,
            "routed_reasoning": "on" if routed else None,
            "routed_decision": "stem_reasoning" if routed else None,
        }

    monkeypatch.setattr(reasoning, "stream_chat", fake_stream_chat)
    dataset = _dataset(tmp_path, [_question("1", "math"), _question("2", "law", answer="C")])
    output = tmp_path / "out" / "reasoning.json"
    args = _bench_args(
        [
            "reasoning",
            "--endpoint",
            "http://backend:1/v1",
            "--model",
            "qwen3-8b",
            "--family",
            "qwen3",
            "--dataset",
            str(dataset),
            "--router",
            "http://router:2",
            "--output",
            str(output),
            "--plot",
            str(tmp_path / "plot.png"),
        ]
    )
    assert reasoning.run(args) == 0
    assert len(sent) == 6
    bodies = {(url, json.dumps(body.get("chat_template_kwargs"))) for url, body in sent}
    assert bodies == {
        ("http://router:2/v1/chat/completions", "null"),
        ("http://backend:1/v1/chat/completions", '{"enable_thinking": true}'),
        ("http://backend:1/v1/chat/completions", '{"enable_thinking": false}'),
    }
    assert all(
        body["stream"] and body["stream_options"] == {"include_usage": True} for _, body in sent
    )

    assert reasoning.run(args) == 0
    assert len(sent) == 6  # everything was already answered

    result = json.loads(output.read_text())
    assert {"bench", "meta", "settings", "arms", "categories"} <= set(result)
    assert {"date", "commit", "cpu", "cores"} <= set(result["meta"])
    router_arm = result["arms"]["router"]
    assert router_arm["n"] == 2 and router_arm["accuracy"] == 0.5 and router_arm["unanswered"] == 0
    assert router_arm["completion_tokens"] == {"mean": 12.0, "total": 24}
    assert router_arm["ttft"]["p50_ms"] == 5.0 and router_arm["latency"]["p99_ms"] == 9.0
    assert router_arm["routed"]["reasoning_on_share"] == 1.0
    assert "routed" not in result["arms"]["on"]
    assert result["categories"]["law"]["off"] == {
        "n": 1,
        "accuracy": 0.0,
        "completion_tokens_mean": 12.0,
    }
    record = json.loads(output.with_suffix(".jsonl").read_text().splitlines()[0])
    assert {
        "id",
        "arm",
        "category",
        "answer",
        "predicted",
        "correct",
        "status",
        "ttft_ms",
        "latency_ms",
        "completion_tokens",
        "usage_source",
        "content_tail",
    } <= set(record)


def _wrk_run(
    round_: int, arm: str, scenario: str, p50: float, p99: float, rps: float
) -> dict[str, Any]:
    return {
        "round": round_,
        "arm": arm,
        "scenario": scenario,
        "ok": True,
        "requests_per_s": rps,
        "percentiles_ms": {"50": p50, "75": p50, "90": p99, "99": p99},
    }


def test_overhead_summary_takes_medians_of_per_round_deltas_and_checks_targets() -> None:
    short = overhead.Scenario("short", False, 1)
    busy = overhead.Scenario("short", False, 32)
    runs = [
        _wrk_run(0, "direct", short.key, 1.0, 2.0, 900),
        _wrk_run(0, "semrouter", short.key, 6.0, 9.0, 150),
        _wrk_run(0, "litellm", short.key, 30.0, 40.0, 30),
        _wrk_run(1, "direct", short.key, 2.0, 3.0, 800),
        _wrk_run(1, "semrouter", short.key, 9.0, 12.0, 120),
        _wrk_run(1, "litellm", short.key, 35.0, 45.0, 28),
        _wrk_run(2, "direct", short.key, 1.5, 2.5, 850),
        {
            "round": 2,
            "arm": "semrouter",
            "scenario": short.key,
            "ok": False,
            "error": "wrk exited 1",
        },
        _wrk_run(2, "litellm", short.key, 33.0, 41.0, 29),
        _wrk_run(0, "direct", busy.key, 3.0, 8.0, 5000),
        _wrk_run(0, "semrouter", busy.key, 100.0, 600.0, 110),
        _wrk_run(0, "litellm", busy.key, 900.0, 1500.0, 35),
    ]
    table = overhead.summarise(runs, ["direct", "semrouter", "litellm"], [short, busy])
    first = table[0]
    assert first["scenario"] == "short/json/c1"
    assert first["arms"]["semrouter"] == {
        "rounds": 2,
        "failed_rounds": 1,
        "p50_ms": 7.5,
        "p99_ms": 10.5,
        "requests_per_s": 135.0,
    }
    assert first["added_p50_ms"]["semrouter"] == 6.0  # median of 5.0 and 7.0, paired by round
    assert first["p50_ratio"]["semrouter"] == 5.25
    assert first["added_p50_ms"]["litellm"] == 31.5
    assert "direct" not in first["added_p50_ms"]

    checks = {(c["check"], c["scenario"]): c["pass"] for c in overhead.evaluate_checks(table)}
    assert checks == {
        ("semrouter added p50", "short/json/c1"): True,
        ("p50 below LiteLLM", "short/json/c1"): True,
        ("p99 below LiteLLM", "short/json/c1"): True,
        ("semrouter req/s", "short/json/c32"): False,
        ("semrouter p99", "short/json/c32"): False,
        ("req/s above LiteLLM", "short/json/c32"): True,
        ("p99 below LiteLLM", "short/json/c32"): True,
    }
    result = {
        "scenarios": table,
        "checks": overhead.evaluate_checks(table),
        "arms": {"direct": {"status": "ok"}, "envoy-extproc": {"status": "skipped", "note": "n/a"}},
    }
    markdown = overhead.render_markdown(result)
    assert "| short/json/c1 | semrouter | 7.50 | 10.50 | 135 | 6.00 | 5.25 |" in markdown
    assert "envoy-extproc: not measured: n/a" in markdown


def test_overhead_ext_proc_gap_is_paired_by_round() -> None:
    """(Envoy + ext_proc − Envoy) − (semrouter − direct), per round, then the median."""
    short = overhead.Scenario("short", True, 1)
    p50s = {  # round -> arm -> p50
        0: {"direct": 1.0, "semrouter": 9.0, "envoy": 1.5, "envoy-extproc": 10.0},  # gap 0.5
        1: {"direct": 1.0, "semrouter": 12.0, "envoy": 1.5, "envoy-extproc": 15.5},  # gap 3.0
        2: {"direct": 1.0, "semrouter": 8.0, "envoy": 1.5, "envoy-extproc": 9.7},  # gap 1.2
        3: {"direct": 1.0, "semrouter": 8.0, "envoy-extproc": 30.0},  # no Envoy run: unpaired
    }
    runs = [
        _wrk_run(r, arm, short.key, value, value, 100)
        for r, arms in p50s.items()
        for arm, value in arms.items()
    ]
    table = overhead.summarise(runs, list(overhead.EXTPROC_GAP_ARMS), [short])
    assert table[0]["extproc_gap_ms"] == 1.2
    checks = {c["check"]: (c["value"], c["pass"]) for c in overhead.evaluate_checks(table)}
    assert checks["ext_proc gap"] == (1.2, True)
    without_envoy = [r for r in runs if not r["arm"].startswith("envoy")]
    assert (
        overhead.summarise(without_envoy, ["direct", "semrouter"], [short])[0]["extproc_gap_ms"]
        is None
    )


def test_overhead_variant_arms_state_their_stage_cost_per_round() -> None:
    variant = overhead.Variant.parse("cache:SEMROUTER_CACHE=memory,X=1")
    assert (variant.name, variant.env) == ("cache", {"SEMROUTER_CACHE": "memory", "X": "1"})
    assert variant.arm("semrouter") == "semrouter[cache]"
    for bad in ("cache", "cache:", "cache:=1", "ca che:A=1", ":A=1"):
        with pytest.raises(BenchError, match="--variant"):
            overhead.Variant.parse(bad)
    short = overhead.Scenario("short", False, 1)
    p50s = {  # round -> arm -> p50
        0: {"direct": 1.0, "semrouter": 7.0, "semrouter[cache]": 7.5},  # cost 0.5
        1: {"direct": 1.0, "semrouter": 9.0, "semrouter[cache]": 8.8},  # cost -0.2
        2: {"direct": 1.0, "semrouter": 7.0, "semrouter[cache]": 8.0},  # cost 1.0
        3: {"direct": 1.0, "semrouter[cache]": 30.0},  # no plain run: unpaired
    }
    runs = [
        _wrk_run(r, arm, short.key, value, value, 100)
        for r, arms in p50s.items()
        for arm, value in arms.items()
    ]
    table = overhead.summarise(runs, ["direct", "semrouter", "semrouter[cache]"], [short])
    assert table[0]["stage_cost_ms"] == {"semrouter[cache]": 0.5}
    result = {"scenarios": table, "checks": [], "arms": {}}
    assert "| short/json/c1 | semrouter[cache] | 0.50 |" in overhead.render_markdown(result)


async def test_unique_post_script_makes_every_body_differ(tmp_path: Path) -> None:
    """wrk itself, against a server that records the bodies it gets."""
    seen: list[bytes] = []

    async def record(request: Request) -> Response:
        seen.append(await request.body())
        return Response(b"{}", media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", record, methods=["POST"])])
    body = tmp_path / "body.json"
    body.write_text(f'{{"messages": [{{"content": "Request {UNIQUE_MARKER}. Hi"}}]}}')
    async with serving(app) as base:
        result = await asyncio.to_thread(
            run_wrk, f"{base}/v1/chat/completions", write_post_script(tmp_path, True), body, 2, 1
        )
    assert result.requests > 10
    assert len(set(seen)) == len(seen)
    assert all(b.startswith(b'{"messages": [{"content": "Request ') for b in seen)
    assert UNIQUE_MARKER.encode() not in b"".join(seen)


def test_overhead_envoy_and_litellm_configs_point_at_the_backend() -> None:
    bootstrap = overhead.envoy_bootstrap(10000, 10001, 9000)
    cluster = bootstrap["static_resources"]["clusters"][0]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9000}
    assert bootstrap["admin"]["address"]["socket_address"]["port_value"] == 10001
    model = overhead.litellm_config("http://127.0.0.1:9000")["model_list"][0]
    assert model["litellm_params"]["api_base"] == "http://127.0.0.1:9000/v1"


def test_prompt_has_the_requested_token_count() -> None:
    def words(text: str) -> int:  # a counter where every word is one token
        return len(text.split())

    prompt = make_prompt(57, words)
    assert words(prompt) == 57
    assert make_prompt(57, words) == prompt
    assert make_prompt(57, words, start=1) != prompt
    assert words(make_prompt(3000, words)) == 3000


def test_classify_isolates_one_signal_kind() -> None:
    config = parse_config(minimal_config(), env={})
    assert enabled_kinds(config.signals) == ["keywords"]
    assert enabled_kinds(only(config.signals, "context")) == []
    full = config.signals.model_copy(
        update={"domain": config.signals.domain.model_copy(update={"enabled": True})}
    )
    assert enabled_kinds(only(full, "domain")) == ["domain"]


def test_bench_cli_registers_three_benches_with_their_flags() -> None:
    args = _bench_args(["overhead", "--arms", "direct,semrouter", "--rounds", "2"])
    assert (args.arms, args.rounds, args.duration, args.concurrency) == (
        "direct,semrouter",
        2,
        5.0,
        "1,32,128",
    )
    assert args.output == "out/bench/overhead.json"
    args = _bench_args(["classify", "--runs", "10"])
    assert (args.runs, args.lengths) == (10, "20,200,2000")
    with pytest.raises(SystemExit):
        _bench_args(["reasoning", "--endpoint", "x"])  # --model, --family, --dataset required


def test_bench_error_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = _bench_args(["overhead", "--arms", "semrouter,litellm"])
    assert args.func(args) == 2
    assert capsys.readouterr().err.startswith("semrouter: error: --arms: must include 'direct'")
