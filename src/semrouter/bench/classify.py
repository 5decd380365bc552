"""`semrouter bench classify`: how fast, how big and how right classification is, in-process.

1. Latency by prompt length (default 20, 200 and 2,000 tokens), one request at a time, p50/p99
   over `--runs`: the encoder pass alone; each signal alone given that pass (its engine is fed
   the precomputed encoding, so only the signal's own work is timed); all signals given the
   pass; and the whole route (encoder + signals + decision), both synchronously
   (`route_many_sync`) and through the async path `semrouter serve` uses (`Router.route`,
   which goes through the embedder's micro-batcher).
2. Batched throughput (prompts/s) of `route_many_sync` per length and on real questions.
3. Peak RSS of the process after 1 and 2.
4. Side by side on the same validation questions with the same encoder: semrouter's domain
   head vs the `semantic-router` library (an IndexedRouter whose routes are the 14 categories,
   utterances sampled from the training split, its DenseEncoder wrapping our embedder).
   Both pick their top category (no threshold); accuracy, per-category accuracy, latency.
5. The domain baselines of issue 3 (`semrouter.bench.baselines`), fitted on the MMLU-Pro train
   split with and without the chat training set, next to the domain head on the same sets.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from semrouter.bench.common import (
    BenchError,
    Progress,
    latency_summary,
    make_prompt,
    peak_rss_mb,
    pyplot,
    run_metadata,
    run_title,
    save_figure,
    time_ms,
    write_json,
)
from semrouter.config import ConfigError, RouterConfig, load_config
from semrouter.config.schema import SignalsConfig
from semrouter.embed.base import Embedder, Encoded
from semrouter.pipeline.request import ChatRequest
from semrouter.signals.engine import SignalEngine, head_input
from semrouter.signals.heads import Head

SIGNAL_KINDS = ("domain", "reasoning", "similarity", "keywords", "context")
DISTINCT_PROMPTS = 12  # prompts of one length start at different corpus sentences
SEMANTIC_ROUTER_VERSION = "1.1.1"


class Precomputed(Embedder):
    """An embedder that answers every call with one fixed encoding (to time signals alone)."""

    def __init__(self, inner: Embedder, encoded: Encoded) -> None:
        self.inner = inner
        self.encoded = encoded
        self.dim = inner.dim
        self.feature_dim = inner.feature_dim

    async def encode(self, texts: Sequence[str]) -> Encoded:
        return self.encoded

    def encode_sync(self, texts: Sequence[str]) -> Encoded:
        return self.encoded

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def request_for(text: str) -> ChatRequest:
    return ChatRequest(
        body={}, model="auto", messages=[{"role": "user", "content": text}], stream=False
    )


def enabled_kinds(signals: SignalsConfig) -> list[str]:
    on = {
        "domain": signals.domain.enabled,
        "reasoning": signals.reasoning.enabled,
        "similarity": bool(signals.similarity),
        "keywords": bool(signals.keywords),
        "context": bool(signals.context),
    }
    return [kind for kind in SIGNAL_KINDS if on[kind]]


def only(signals: SignalsConfig, kind: str) -> SignalsConfig:
    """signals with every kind but `kind` switched off."""
    update: dict[str, Any] = {
        "domain": signals.domain.model_copy(update={"enabled": False}),
        "reasoning": signals.reasoning.model_copy(update={"enabled": False}),
        "similarity": [],
        "keywords": [],
        "context": [],
    }
    update[kind] = getattr(signals, kind)
    return signals.model_copy(update=update)


async def _time_route_async(
    config: RouterConfig, embedder: Embedder, texts: dict[int, str], runs: int
) -> dict[int, list[float]]:
    """Router.route per length through the micro-batcher, as `semrouter serve` calls it."""
    from semrouter.pipeline.router import Router

    router = Router(config, embedder)
    await router.start()
    try:
        times: dict[int, list[float]] = {}
        for length, text in texts.items():
            request = request_for(text)
            for _ in range(5):
                await router.route(request)
            times[length] = []
            for _ in range(runs):
                started = time.perf_counter()
                await router.route(request)
                times[length].append((time.perf_counter() - started) * 1000)
        return times
    finally:
        await router.close()


def measure_latency(
    config: RouterConfig, embedder: Embedder, texts: dict[int, str], runs: int
) -> dict[str, dict[str, Any]]:
    from semrouter.pipeline.router import Router

    kinds = enabled_kinds(config.signals)
    router = Router(config, embedder)
    router.start_sync()
    engines = {
        f"signal:{kind}": SignalEngine(only(config.signals, kind), embedder) for kind in kinds
    }
    engines["signals:all"] = SignalEngine(config.signals, embedder)
    for engine in engines.values():
        engine.start_sync()
    steps = len(texts) * (len(engines) + 2) + 1
    progress = Progress(steps, "latency")
    latency: dict[str, dict[str, Any]] = {}

    def record(name: str, length: int, times: list[float]) -> None:
        latency.setdefault(name, {})[str(length)] = latency_summary(times)
        progress.update(note=f"{name} {length}")

    for length, text in texts.items():
        request = request_for(text)
        record("encode", length, time_ms(partial(embedder.encode_sync, [text]), runs))
        encoded = embedder.encode_sync([text])
        for name, engine in engines.items():
            engine.embedder = Precomputed(embedder, encoded)
            record(
                name,
                length,
                time_ms(partial(engine.evaluate_many_sync, [request.signal_input()]), runs),
            )
        record("route:sync", length, time_ms(partial(router.route_many_sync, [request]), runs))
    for length, times in asyncio.run(_time_route_async(config, embedder, texts, runs)).items():
        latency.setdefault("route:async", {})[str(length)] = latency_summary(times)
    progress.update(note="route:async")
    progress.close()
    return latency


def measure_throughput(
    config: RouterConfig, embedder: Embedder, batches: dict[str, list[str]], batch_size: int
) -> dict[str, dict[str, Any]]:
    from semrouter.pipeline.router import Router

    router = Router(config, embedder)
    router.start_sync()
    progress = Progress(sum(len(t) for t in batches.values()), "throughput")
    result = {}
    for name, texts in batches.items():
        requests = [request_for(t) for t in texts]
        router.route_many_sync(requests[:batch_size])  # warm-up
        started = time.perf_counter()
        for start in range(0, len(requests), batch_size):
            router.route_many_sync(requests[start : start + batch_size])
            progress.update(min(batch_size, len(requests) - start), note=name)
        seconds = time.perf_counter() - started
        result[name] = {
            "prompts": len(texts),
            "batch_size": batch_size,
            "seconds": round(seconds, 3),
            "prompts_per_s": round(len(texts) / seconds, 1),
        }
    progress.close()
    return result


def _semantic_router_encoder(embedder: Embedder) -> Any:
    """A semantic-router DenseEncoder that encodes with semrouter's embedder (same MiniLM)."""
    from semantic_router.encoders import DenseEncoder

    # semantic-router is optional and not installed where mypy runs, so DenseEncoder is Any.
    class SemrouterEncoder(DenseEncoder):  # type: ignore[misc]
        embedder: Any

        def __call__(self, docs: list[Any]) -> list[list[float]]:
            vectors: list[list[float]] = (
                self.embedder.encode_sync([str(d) for d in docs]).embeddings.tolist()
            )
            return vectors

    return SemrouterEncoder(name="semrouter-all-minilm-l6-v2", embedder=embedder)


def _by_category(pairs: Sequence[tuple[str, str]]) -> dict[str, float]:
    totals: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    for truth, predicted in pairs:
        totals[truth] += 1
        hits[truth] += truth == predicted
    return {c: round(hits[c] / totals[c], 4) for c in sorted(totals)}


def _side(pairs: list[tuple[str, str]], times: list[float]) -> dict[str, Any]:
    correct = sum(t == p for t, p in pairs)
    return {
        "accuracy": round(correct / len(pairs), 4) if pairs else None,
        "latency": latency_summary(times),
        "by_category": _by_category(pairs),
    }


def compare(
    embedder: Embedder,
    head: Head,
    train: dict[str, list[str]],
    sets: dict[str, list[tuple[str, str]]],
    utterances: int,
    seed: int,
) -> dict[str, Any]:
    """semrouter's domain head vs semantic-router on the same questions and encoder."""
    try:
        import semantic_router
        from semantic_router import IndexedRouter, Route
    except ImportError:
        return {
            "status": "skipped",
            "note": f"semantic-router not installed (pip install semantic-router=="
            f"{SEMANTIC_ROUTER_VERSION})",
        }
    rng = random.Random(seed)
    routes = [
        Route(name=category, utterances=rng.sample(texts, min(utterances, len(texts))))
        for category, texts in sorted(train.items())
    ]
    started = time.perf_counter()
    other = IndexedRouter(encoder=_semantic_router_encoder(embedder), routes=routes)
    build_s = time.perf_counter() - started
    progress = Progress(sum(len(s) for s in sets.values()), "compare")
    results: dict[str, Any] = {}
    for set_name, items in sets.items():
        ours: list[tuple[str, str]] = []
        theirs: list[tuple[str, str]] = []
        our_ms: list[float] = []
        their_ms: list[float] = []
        for i, (text, truth) in enumerate(items):
            for side in (0, 1) if i % 2 == 0 else (1, 0):  # alternate who goes first
                started = time.perf_counter()
                if side == 0:
                    encoded = embedder.encode_sync([text])
                    probs = head.predict_proba(head_input(head, encoded), encoded.token_ids)
                    predicted = head.classes[int(probs[0].argmax())]
                    our_ms.append((time.perf_counter() - started) * 1000)
                    ours.append((truth, predicted))
                else:
                    choice = other(text)
                    their_ms.append((time.perf_counter() - started) * 1000)
                    theirs.append((truth, str(choice.name)))
            progress.update(note=set_name)
        results[set_name] = {
            "n": len(items),
            "semrouter": _side(ours, our_ms),
            "semantic_router": _side(theirs, their_ms),
        }
    progress.close()
    return {
        "status": "ok",
        "semantic_router_version": semantic_router.__version__,
        "encoder": "all-MiniLM-L6-v2 via semrouter's embedder (both sides)",
        "semantic_router_setup": {
            "router": "IndexedRouter",
            "top_k": other.top_k,
            "aggregation": "mean",
            "utterances_per_route": utterances,
            "index_build_s": round(build_s, 3),
        },
        "sets": results,
    }


def _baselines(
    embedder: Embedder,
    head: Head,
    train: dict[str, list[str]],
    sets: dict[str, list[tuple[str, str]]],
) -> dict[str, Any]:
    """The issue's domain baselines next to the head, on the same validation sets."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return {"status": "skipped", "note": "scikit-learn not installed (pip install .[bench])"}
    from semrouter.bench.baselines import domain_baselines
    from semrouter.train.data import chat_examples

    mmlu = [(text, category) for category, texts in sorted(train.items()) for text in texts]
    chat = [(str(c["text"]), str(c["domain"])) for c in chat_examples("chat_domain", False)]
    return domain_baselines(embedder, head, {"mmlu_pro": mmlu, "mmlu_pro+chat": mmlu + chat}, sets)


def _validation_sets(
    mmlu: Path | None, chat: Path | None, limit: int | None, seed: int
) -> tuple[dict[str, list[str]], dict[str, list[tuple[str, str]]], list[str]]:
    """Training texts per category, the labelled validation sets, notes on what is missing."""
    from semrouter.train.data import mmlu_questions, read_jsonl

    train: dict[str, list[str]] = {}
    sets: dict[str, list[tuple[str, str]]] = {}
    notes = []
    rng = random.Random(seed)
    if mmlu is not None and mmlu.is_file():
        for question in mmlu_questions(mmlu, validation=False):
            train.setdefault(question.category, []).append(question.text)
        held_out = [(q.text, q.category) for q in mmlu_questions(mmlu, validation=True)]
        sets["mmlu_validation"] = rng.sample(held_out, limit) if limit else held_out
    else:
        notes.append(f"MMLU-Pro questions not found at {mmlu}")
    if chat is not None and chat.is_file():
        rows = [(str(r["text"]), str(r["domain"])) for r in read_jsonl(chat)]
        sets["chat_domain"] = rng.sample(rows, min(limit, len(rows))) if limit else rows
    else:
        notes.append(f"chat validation set not found at {chat}")
    return train, sets, notes


def plot(result: dict[str, Any], path: Path) -> bool:
    """p50 latency against prompt length per component; per-category accuracy side by side."""
    plt = pyplot()
    if plt is None:
        return False
    comparison = result["comparison"]
    mmlu = (
        comparison.get("sets", {}).get("mmlu_validation") if comparison["status"] == "ok" else None
    )
    figure, axes = plt.subplots(1, 2 if mmlu else 1, figsize=(14 if mmlu else 7, 5), squeeze=False)
    ax = axes[0][0]
    for name, by_length in result["latency"].items():
        points = sorted((int(k), v["p50_ms"]) for k, v in by_length.items())
        ax.plot(*zip(*points, strict=True), marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    lengths = [int(n) for n in result["prompt_tokens"]]
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("p50 latency (ms), one request")
    ax.set_title("classification latency by component")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    if mmlu:
        ax = axes[0][1]
        categories = sorted(mmlu["semrouter"]["by_category"])
        x = np.arange(len(categories))
        for offset, side, label in (
            (-0.2, "semrouter", "semrouter domain head"),
            (0.2, "semantic_router", "semantic-router"),
        ):
            values = [mmlu[side]["by_category"][c] for c in categories]
            accuracy = mmlu[side]["accuracy"]
            ax.bar(x + offset, values, width=0.4, label=f"{label} ({accuracy:.1%})")
        ax.set_xticks(x, categories, rotation=45, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(f"MMLU-Pro validation domain accuracy (n={mmlu['n']})")
        ax.legend(fontsize="small")
    return save_figure(figure, path, run_title("classify", result["meta"]))


def _print_summary(result: dict[str, Any]) -> None:
    lengths = list(result["prompt_tokens"])
    print("| component | " + " | ".join(f"{n} tok p50 / p99 ms" for n in lengths) + " |")
    print("| --- |" + " ---: |" * len(lengths))
    for name, by_length in result["latency"].items():
        cells = [f"{by_length[n]['p50_ms']:.3f} / {by_length[n]['p99_ms']:.3f}" for n in lengths]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n| batch set | prompts/s |\n| --- | ---: |")
    for name, row in result["throughput"].items():
        print(f"| {name} | {row['prompts_per_s']:.1f} |")
    print(f"\npeak RSS: {result['memory']['peak_rss_mb']} MiB")
    baselines = result["baselines"]
    if baselines["status"] == "ok":
        names = list(baselines["semrouter_head"])
        print("\n| trained on | classifier | " + " | ".join(names) + " |")
        print("| --- | --- |" + " ---: |" * len(names))
        head = baselines["semrouter_head"]
        print(
            "| its own data | semrouter domain head | "
            + " | ".join(f"{head[n]:.4f}" for n in names)
            + " |"
        )
        for train_name, fitted in baselines["train_sets"].items():
            for name, row in fitted.items():
                if name != "examples":
                    scores = " | ".join(f"{row[n]:.4f}" for n in names)
                    print(f"| {train_name} ({fitted['examples']}) | {name} | {scores} |")
    comparison = result["comparison"]
    if comparison["status"] != "ok":
        print(f"\ncomparison skipped: {comparison['note']}")
        return
    print("\n| set | n | router | accuracy | p50 ms | p99 ms |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for set_name, row in comparison["sets"].items():
        for side in ("semrouter", "semantic_router"):
            stats = row[side]
            print(
                f"| {set_name} | {row['n']} | {side} | {stats['accuracy']:.4f} | "
                f"{stats['latency']['p50_ms']:.3f} | {stats['latency']['p99_ms']:.3f} |"
            )


def _with_head(config: RouterConfig, head: str | None) -> RouterConfig:
    if head is None:
        return config
    domain = config.signals.domain.model_copy(update={"head": head})
    return config.model_copy(
        update={"signals": config.signals.model_copy(update={"domain": domain})}
    )


def _lengths(value: str) -> list[int]:
    try:
        lengths = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"--lengths: comma list of token counts, got {value!r}") from None
    if not lengths or min(lengths) < 1:
        raise BenchError("--lengths: at least one positive token count")
    return lengths


def _current_rss_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def run(args: argparse.Namespace) -> int:
    from semrouter.embed import create_embedder
    from semrouter.signals.heads import load_head
    from semrouter.train.data import CHAT_VALIDATION_DIR, DEFAULT_MMLU_DIR

    lengths = _lengths(args.lengths)
    try:
        config = _with_head(load_config(args.config), args.head)
    except ConfigError as exc:
        raise BenchError(str(exc)) from None
    if not config.signals.needs_embedding:
        raise BenchError(f"{args.config}: no embedding signal is configured; nothing to measure")
    rss_before = _current_rss_mb()
    embedder = create_embedder(config.embedding)
    count: Callable[[str], int] = embedder.count_tokens
    try:
        domain_head = load_head(config.signals.domain.head or "domain")
        SignalEngine(config.signals, embedder)  # fails here if a configured head is missing
    except (FileNotFoundError, ValueError) as exc:
        raise BenchError(str(exc)) from None
    texts = {n: make_prompt(n, count) for n in lengths}
    latency = measure_latency(config, embedder, texts, args.runs)
    mmlu = Path(args.mmlu) if args.mmlu else DEFAULT_MMLU_DIR / "questions.jsonl"
    chat = Path(args.chat) if args.chat else CHAT_VALIDATION_DIR / "chat_domain.jsonl"
    train, sets, notes = _validation_sets(mmlu, chat, args.limit, args.seed)
    batches = {
        f"{n} tokens": [
            make_prompt(n, count, start=i % DISTINCT_PROMPTS) for i in range(DISTINCT_PROMPTS)
        ]
        for n in lengths
    }
    batches = {name: (t * args.batch_prompts)[: args.batch_prompts] for name, t in batches.items()}
    if "mmlu_validation" in sets:
        batches["mmlu_validation"] = [t for t, _ in sets["mmlu_validation"]][: args.batch_prompts]
    throughput = measure_throughput(config, embedder, batches, args.batch_size)
    memory = {"rss_before_load_mb": rss_before, "peak_rss_mb": peak_rss_mb()}
    if args.no_compare:
        comparison: dict[str, Any] = {"status": "skipped", "note": "--no-compare"}
        baselines: dict[str, Any] = comparison
    elif not train or not sets:
        comparison = baselines = {"status": "skipped", "note": "; ".join(notes)}
    else:
        comparison = compare(embedder, domain_head, train, sets, args.utterances, args.seed)
        baselines = _baselines(embedder, domain_head, train, sets)
    result = {
        "bench": "classify",
        "meta": run_metadata(),
        "settings": {
            "config": str(args.config),
            "embedding": config.embedding.model_dump(),
            "runs": args.runs,
            "batch_size": args.batch_size,
            "batch_prompts": args.batch_prompts,
            "mmlu": str(mmlu),
            "chat": str(chat),
            "limit": args.limit,
            "seed": args.seed,
            "notes": notes,
        },
        "prompt_tokens": {str(n): count(t) for n, t in texts.items()},
        "latency": latency,
        "throughput": throughput,
        "memory": memory,
        "comparison": comparison,
        "baselines": baselines,
    }
    output = Path(args.output)
    write_json(output, result)
    _print_summary(result)
    plot_path = Path(args.plot) if args.plot else output.with_suffix(".png")
    if plot(result, plot_path):
        print(f"plot → {plot_path}", file=sys.stderr)
    print(f"results → {output}", file=sys.stderr)
    return 0
