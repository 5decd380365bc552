"""`semrouter bench overhead|classify|reasoning|replay`: the benchmark subcommands.

Registered on the main parser by `add_bench_parsers(commands)`. Each bench module is imported
only when its subcommand runs, so `semrouter --help` stays instant and no other command loads
`semrouter.bench`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from semrouter.cli.main import DEFAULT_CONFIG


def _runner(module: str) -> Callable[[argparse.Namespace], int]:
    """The subcommand's function: a BenchError is one line on stderr and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        from semrouter.bench.common import BenchError

        bench = importlib.import_module(f"semrouter.bench.{module}")
        try:
            return int(bench.run(args))
        except BenchError as exc:
            print(f"semrouter: error: {exc}", file=sys.stderr)
            return 2

    return run


def _add_overhead(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "overhead",
        help="latency semrouter adds over the backend, vs LiteLLM and Envoy (wrk)",
        description="Every arm fronts the same stand-in backend; wrk drives each scenario.",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="config for the semrouter arms")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; arms alternate in each")
    parser.add_argument(
        "--arms",
        default="direct,semrouter,litellm,envoy,envoy-extproc",
        help="comma list; 'direct' is required (the baseline)",
    )
    parser.add_argument("--concurrency", default="1,32,128", help="comma list of connections")
    parser.add_argument("--prompts", default="short,long", help="short (20 tokens), long (2,000)")
    parser.add_argument("--modes", default="json,stream", help="json, stream")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="warm-up seconds per arm/prompt/mode"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--envoy-concurrency", type=int, default=1, help="Envoy worker threads")
    parser.add_argument(
        "--litellm-bin", default=None, help="LiteLLM CLI (default: bench venv, PATH)"
    )
    parser.add_argument("--envoy-bin", default=None, help="envoy binary (default: venv, PATH)")
    parser.add_argument("--workdir", default=".cache/bench/overhead", help="logs and bodies")
    parser.add_argument("--output", default="out/bench/overhead.json")
    parser.add_argument("--plot", default=None, help="PNG (default: output with .png)")
    parser.set_defaults(func=_runner("overhead"))


def _add_classify(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "classify",
        help="classification latency, throughput, memory; domain head vs semantic-router",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="signals and embedding settings")
    parser.add_argument("--lengths", default="20,200,2000", help="prompt lengths in tokens")
    parser.add_argument("--runs", type=int, default=200, help="timed single requests per length")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batch-prompts", type=int, default=256, help="prompts per throughput run")
    parser.add_argument("--mmlu", default=None, help="MMLU-Pro questions.jsonl (default: shared)")
    parser.add_argument(
        "--chat", default=None, help="chat validation set (default: data/validation)"
    )
    parser.add_argument(
        "--utterances", type=int, default=100, help="semantic-router utterances/route"
    )
    parser.add_argument("--limit", type=int, default=None, help="validation questions per set")
    parser.add_argument("--head", default=None, help="domain head artifact (default: config's)")
    parser.add_argument(
        "--no-compare", action="store_true", help="skip semantic-router and the baselines"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="out/bench/classify.json")
    parser.add_argument("--plot", default=None, help="PNG (default: output with .png)")
    parser.set_defaults(func=_runner("classify"))


def _add_reasoning(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from semrouter.config.schema import DEFAULT_REASONING_FAMILIES

    parser = commands.add_parser(
        "reasoning",
        help="accuracy, tokens and latency: routed vs reasoning always on vs always off",
    )
    parser.add_argument("--endpoint", required=True, help="backend base URL (…/v1)")
    parser.add_argument("--model", required=True, help="backend model id")
    parser.add_argument("--family", required=True, choices=sorted(DEFAULT_REASONING_FAMILIES))
    parser.add_argument("--dataset", required=True, help="MMLU-Pro-style JSONL")
    parser.add_argument("--router", default=None, help="semrouter base URL (adds the routed arm)")
    parser.add_argument("--arms", default="router,on,off", help="comma list of router, on, off")
    parser.add_argument("--effort", choices=["low", "medium", "high"], default=None)
    parser.add_argument(
        "--split",
        choices=["all", "validation"],
        default="all",
        help="validation: only the held-out MMLU-Pro ids (semrouter.train.splits)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="questions (spread over categories)"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    parser.add_argument("--api-key-env", default=None, help="env var holding the backend's key")
    parser.add_argument("--results", default=None, help="JSONL, appended (default: output .jsonl)")
    parser.add_argument("--output", default="out/bench/reasoning.json")
    parser.add_argument("--plot", default=None, help="PNG (default: output with .png)")
    parser.set_defaults(func=_runner("reasoning"))


def _add_replay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    shared = "(default: in ../shared/data/mmlu_pro from the repository)"
    parser = commands.add_parser(
        "replay",
        help="routing quality on recorded MMLU-Pro outcomes (accuracy-cost curves, APGR)",
        description="Replays the learned selector and the baselines on recorded outcomes.",
    )
    parser.add_argument("--questions", type=Path, default=None, help=f"questions.jsonl {shared}")
    parser.add_argument("--outcomes", type=Path, default=None, help=f"outcomes.csv.gz {shared}")
    parser.add_argument("--models", type=Path, default=None, help=f"models.json {shared}")
    parser.add_argument("--pools", default="reference_pool,fast_strong_pair", help="comma list")
    parser.add_argument("--split", default="validation", choices=["validation", "train", "all"])
    parser.add_argument(
        "--selector-dir", type=Path, default=None, help="selector artifacts (default: shipped)"
    )
    parser.add_argument("--output", default="out/bench/replay.json")
    parser.add_argument("--plot", default="out/bench/replay.png")
    parser.set_defaults(func=_runner("replay"))


def add_bench_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bench` and its subcommands to the main parser's subcommands."""
    bench = commands.add_parser("bench", help="benchmarks (results: docs/benchmarks.md)")
    benches = bench.add_subparsers(dest="bench_command", required=True)
    _add_overhead(benches)
    _add_classify(benches)
    _add_reasoning(benches)
    _add_replay(benches)
