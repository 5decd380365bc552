"""`semrouter bench soak`'s bookkeeping: windows, error kinds, RSS growth, the derived config."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from semrouter.bench.hostile import BY_NAME, Answer
from semrouter.bench.soak import Sent, router_config, summarise_soak
from semrouter.cli.bench import add_bench_parsers


def soak_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", "soak", *argv])


def answer(status: int, body: bytes = b"", ms: float = 10.0) -> Answer:
    return Answer(status, {}, body, ms / 1000)


def error(status: int, code: str) -> bytes:
    return b'{"error":{"message":"m","type":"t","code":"%s"}}' % code.encode()


def test_the_soak_is_summarised_per_window_with_its_failures() -> None:
    args = soak_args("--window-s", "10", "--warmup-s", "10")
    long_word, messages = BY_NAME["long_word"], BY_NAME["messages_20k"]
    results = [
        Sent.of(1.0, "short_json", answer(200, ms=10), None),
        Sent.of(2.0, "short_json", answer(200, ms=30), None),
        Sent.of(3.0, "hostile", answer(413, error(413, "too_many_messages")), messages),
        Sent.of(12.0, "short_sse", answer(500, error(500, "internal_error")), None),
        Sent.of(13.0, "hostile", answer(400, error(400, "invalid_json")), long_word),
        Sent.of(14.0, "classify", answer(503, error(503, "overloaded")), None),
    ]
    samples = [[0.0, 200.0, 200.0], [10.0, 250.0, 260.0], [20.0, 255.0, 260.0]]
    soak = summarise_soak(results, samples, skipped=0, crashed_at=None, args=args)
    assert soak["undesigned_5xx"] == 1  # the 500; the 503 is a designed refusal
    assert soak["unexpected"] == 3  # the 500 and the 503 (normal requests), long_word's 400
    assert soak["hostile_answers"]["messages_20k"] == {
        "expected": "413 too_many_messages",
        "answers": {"413 too_many_messages": 1},
    }
    first, second = soak["windows"]
    assert (first["requests"], first["normal"]["n"], first["unexpected"]) == (3, 2, 0)
    assert second["answers"] == {
        "500 internal_error": 1,
        "400 invalid_json": 1,
        "503 overloaded": 1,
    }
    assert soak["rss_mb"]["after_warmup"] == 250.0
    assert soak["rss_mb"]["growth_after_warmup_pct"] == 2.0
    assert soak["rss_mb"]["growth_ok"]


def test_the_router_config_gets_the_runs_client_timeouts(tmp_path: Path) -> None:
    source = tmp_path / "in.yaml"
    source.write_text(yaml.safe_dump({"router": {"limits": {"max_tools": 7}}, "models": []}))
    args = soak_args("--header-timeout-s", "0.5", "--body-timeout-s", "1.5")
    written = yaml.safe_load(router_config(source, tmp_path / "work", args).read_text())
    assert written["router"]["limits"] == {
        "max_tools": 7,
        "header_read_timeout_s": 0.5,
        "body_read_timeout_s": 1.5,
    }
