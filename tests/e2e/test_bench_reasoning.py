"""`semrouter bench reasoning` end to end: real llama.cpp backends and a real `semrouter serve`.

SmolLM2-135M cannot answer MMLU-Pro questions, so the figures mean nothing; this checks the
harness: all three arms are sent, streamed, scored, summarised and plotted, and a second run
resumes from the results file without sending anything again.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from semrouter.cli.bench import add_bench_parsers
from tests.e2e.conftest import start_semrouter
from tests.servers import free_port

pytestmark = pytest.mark.e2e

CONFIG = os.environ.get("SEMROUTER_CONFIG", "config/default.yaml")
QUESTIONS = [
    ("q1", "math", "What is 7 multiplied by 8?", ["54", "56", "58", "64"], "B"),
    (
        "q2",
        "biology",
        "Which organelle produces most of a cell's ATP?",
        ["Nucleus", "Ribosome", "Mitochondrion", "Golgi apparatus"],
        "C",
    ),
    (
        "q3",
        "history",
        "In which year did the Second World War end?",
        ["1918", "1939", "1945", "1950"],
        "C",
    ),
    ("q4", "physics", "What is the SI unit of force?", ["Newton", "Joule", "Watt", "Pascal"], "A"),
    (
        "q5",
        "law",
        "A contract signed under duress is generally:",
        ["void", "voidable", "fully enforceable", "a tort"],
        "B",
    ),
]


@pytest.fixture(scope="module")
def router_url(llama_backends: dict[str, str], log_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {
        "SEMROUTER_FAST_URL": llama_backends["fast"],
        "SEMROUTER_REASONER_URL": llama_backends["reasoner"],
    }
    process = start_semrouter(
        ["serve", "--config", CONFIG, "--port", str(port)],
        env,
        log_dir / "semrouter-bench.log",
        f"http://127.0.0.1:{port}/ready",
    )
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


def bench(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="semrouter")
    add_bench_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", "reasoning", *argv])
    return int(args.func(args))


def test_three_arms_scored_summarised_and_resumed(
    tmp_path: Path, llama_backends: dict[str, str], router_url: str
) -> None:
    dataset = tmp_path / "questions.jsonl"
    dataset.write_text(
        "".join(
            json.dumps(
                {
                    "question_id": qid,
                    "category": category,
                    "question": text,
                    "options": options,
                    "answer": answer,
                }
            )
            + "\n"
            for qid, category, text, options, answer in QUESTIONS
        )
    )
    output = tmp_path / "reasoning.json"
    argv = [
        "--endpoint",
        llama_backends["reasoner"],
        "--model",
        "smollm2-reasoner",
        "--family",
        "qwen3",
        "--dataset",
        str(dataset),
        "--router",
        router_url,
        "--max-tokens",
        "8",
        "--concurrency",
        "1",  # llama-cpp-python's server interrupts a stream when another request arrives
        "--timeout",
        "120",
        "--output",
        str(output),
    ]
    assert bench(argv) == 0

    summary = json.loads(output.read_text())
    assert summary["bench"] == "reasoning"
    assert summary["meta"]["date"]
    assert set(summary["arms"]) == {"router", "on", "off"}
    for arm, row in summary["arms"].items():
        assert (row["n"], row["errors"], row["missing"]) == (5, 0, 0), (arm, row)
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["completion_tokens"]["total"] > 0
        assert row["latency"]["n"] == 5
    routed = summary["arms"]["router"]["routed"]
    assert sum(routed["models"].values()) == 5
    assert set(routed["models"]) <= {"fast", "reasoner"}
    assert set(summary["categories"]) == {q[1] for q in QUESTIONS}

    records = [json.loads(line) for line in output.with_suffix(".jsonl").read_text().splitlines()]
    assert len(records) == 15
    assert {(r["arm"], r["id"]) for r in records} == {
        (a, q[0]) for a in ("router", "on", "off") for q in QUESTIONS
    }
    for record in records:
        assert record["status"] == "ok"
        assert record["ttft_ms"] is None or record["ttft_ms"] <= record["latency_ms"]
        assert record["predicted"] is None or record["predicted"] in "ABCD"
    assert all(r["routed_reasoning"] in ("on", "off") for r in records if r["arm"] == "router")
    assert all(r["routed_model"] is None for r in records if r["arm"] != "router")
    assert output.with_suffix(".png").is_file()

    # A second run finds every answer in the results file and sends nothing.
    assert bench(argv) == 0
    assert len(output.with_suffix(".jsonl").read_text().splitlines()) == 15
    assert json.loads(output.read_text())["arms"] == summary["arms"]
