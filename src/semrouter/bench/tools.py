"""`semrouter bench tools`: tool pre-selection on the Berkeley Function-Calling Leaderboard.

Data: the single-turn categories of BFCL v4 as the PyPI package `bfcl-eval` ships them (read
from its data folder; the package is never imported). Every entry with a ground truth (simple,
multiple, parallel, parallel_multiple, their live_ versions, Java and JavaScript) is one
query; its ground-truth functions are what must survive. The irrelevance categories (no tool
applies) are used for the best-score signal only.

Split: by a stable hash of the entry id, before anything was tuned: `tune` (what the scoring
choices, `tools.lexical_weight` and the re-ranker were chosen and fitted on) and `test` (what is
reported). `--fit-reranker PATH` fits the re-ranker (`semrouter.tools.rerank`) on the tune
split's catalogs of 200 and 1,000 tools and writes it to PATH (the shipped one:
src/semrouter/models/tool_reranker.npz).

For each catalog size (default 10, 50, 200, 1,000) each entry's own functions are mixed with
distractors drawn from the other entries' distinct functions (seeded, never one with the name of
an own function) and shuffled. Methods, on the same catalogs:
- semrouter: `ToolScorer` (the query embedding the router computes once, against cached tool
  embeddings, plus BM25) and the keeping rules of `semrouter.tools.keep` at top_k = k;
- semrouter, first stage: the same without the re-ranker;
- semrouter, lexical only: what a request gets before its new catalog is encoded (and a direct
  or fallback route);
- embedding: plain MiniLM cosine of the query against `name: description`, top-k;
- BM25: `bm25s` over `name description`, top-k.

Reported: recall@k (the share of an entry's ground-truth functions kept) for k = 1, 3, 5, 10;
tools kept under the config's top_k and the tool-definition tokens saved (MiniLM wordpieces of
the tools' JSON, a proxy for the LLM's prompt tokens); latency of the tool path per request for
a cached 200-tool catalog (scoring + keeping + rewriting, the query embedding being the router's)
and the first sight of a new one (waiting for its encoding, and under `tools.encode_wait_ms`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from semrouter.bench.common import (
    BenchError,
    Progress,
    latency_summary,
    pyplot,
    run_metadata,
    run_title,
    save_figure,
    write_json,
)
from semrouter.config import ConfigError, RouterConfig, load_config
from semrouter.config.schema import Endpoint, ModelConfig, ToolsConfig
from semrouter.embed.base import Embedder
from semrouter.pipeline.request import ChatRequest
from semrouter.signals.engine import SignalInput, SignalReport
from semrouter.stages import StageContext
from semrouter.tools import Keeping, ToolScorer, ToolStage, kept_indices
from semrouter.tools.rerank import TreeEnsemble
from semrouter.tools.text import tool_digest, tool_name

BFCL_VERSION = "2026.3.23"
BFCL_INSTALL = f".venv/bin/pip install --no-deps bfcl-eval=={BFCL_VERSION}"
ANSWERED = (
    "simple_python",
    "simple_java",
    "simple_javascript",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
IRRELEVANT = ("irrelevance", "live_irrelevance")
KS = (1, 3, 5, 10)
METHODS = ("semrouter", "semrouter_first_stage", "semrouter_lexical", "embedding", "bm25")
RERANKER_SIZES = (200, 1000)
RERANKER_CANDIDATES = 40
"""Candidates per catalog the re-ranker is fitted on (it reorders `tools.rerank_candidates`)."""
RERANKER_FIT = {
    "max_iter": 100,
    "max_depth": 3,
    "learning_rate": 0.1,
    "min_samples_leaf": 50,
    "early_stopping": False,
    "random_state": 0,
}
"""Chosen by two-fold cross-validation within the tune split (docs/benchmarks.md)."""
LATENCY_SIZE = 200


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    category: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    """Its own functions, as OpenAI `tools` entries."""
    answers: frozenset[str]
    """Names of the ground-truth functions (empty: no tool applies)."""


def bfcl_data(path: str | None) -> Path:
    """The BFCL data folder: `path`, else the installed bfcl-eval package's."""
    if path is not None:
        folder = Path(path)
    else:
        spec = importlib.util.find_spec("bfcl_eval")
        if spec is None or not spec.submodule_search_locations:
            raise BenchError(f"bfcl-eval is not installed: {BFCL_INSTALL}")
        folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (folder / "BFCL_v4_simple_python.json").is_file():
        raise BenchError(f"{folder}: no BFCL v4 data there ({BFCL_INSTALL})")
    return folder


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def load_entries(folder: Path) -> list[Entry]:
    entries = []
    for category in (*ANSWERED, *IRRELEVANT):
        path = folder / f"BFCL_v4_{category}.json"
        answers: dict[str, frozenset[str]] = {}
        if category in ANSWERED:
            answers = {
                a["id"]: frozenset(name for call in a["ground_truth"] for name in call)
                for a in _lines(folder / "possible_answer" / path.name)
            }
        for raw in _lines(path):
            tools = [{"type": "function", "function": f} for f in raw["function"]]
            entries.append(
                Entry(
                    raw["id"],
                    category,
                    raw["question"][0],
                    tools,
                    answers.get(raw["id"], frozenset()),
                )
            )
    return entries


def split_of(entry_id: str) -> str:
    """'tune' or 'test', by a stable hash of the id (about half each)."""
    return "tune" if hashlib.blake2b(entry_id.encode(), digest_size=8).digest()[0] % 2 else "test"


def distinct_tools(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """Every distinct function definition of the entries (by its JSON's digest), in order."""
    seen: dict[bytes, dict[str, Any]] = {}
    for entry in entries:
        for tool in entry.tools:
            seen.setdefault(tool_digest(tool), tool)
    return list(seen.values())


def catalog(
    entry: Entry, pool: Sequence[dict[str, Any]], size: int, seed: int
) -> list[dict[str, Any]]:
    """The entry's own tools and distractors from pool, `size` in all (or its own tools when
    those are more), shuffled; the same for the same entry, size and seed."""
    rng = random.Random(f"{seed}:{entry.id}:{size}")
    own = {tool_name(t) for t in entry.tools}
    tools = list(entry.tools)
    wanted = size - len(tools)
    while wanted > 0:
        picks = rng.sample(range(len(pool)), min(len(pool), wanted + 8))
        for i in picks:
            if wanted and tool_name(pool[i]) not in own:
                own.add(tool_name(pool[i]))
                tools.append(pool[i])
                wanted -= 1
    rng.shuffle(tools)
    return tools


def chat_request(entry: Entry, tools: list[dict[str, Any]]) -> ChatRequest:
    body = {"model": "auto", "messages": entry.messages, "tools": tools}
    return ChatRequest(body=body, model="auto", messages=entry.messages, stream=False)


class Baselines:
    """Plain embedding and BM25 rankings over the distinct tools (each catalog is a subset)."""

    def __init__(self, pool: Sequence[dict[str, Any]], embedder: Embedder) -> None:
        import bm25s

        texts = [_plain_text(t) for t in pool]
        self.index = {tool_digest(t): i for i, t in enumerate(pool)}
        self.matrix = embedder.encode_sync(texts).embeddings
        self.bm25 = bm25s.BM25()
        self.bm25.index(
            bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False
        )
        self._tokenize = bm25s.tokenize

    def rows(self, tools: Sequence[dict[str, Any]]) -> np.ndarray:
        return np.array([self.index[tool_digest(t)] for t in tools], dtype=np.intp)

    def embedding(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        scores: np.ndarray = self.matrix[rows] @ query
        return scores

    def bm25_scores(self, text: str) -> np.ndarray:
        """BM25 of text against every distinct tool (restrict to a catalog's rows)."""
        tokens = self._tokenize([text], stopwords="en", return_ids=False, show_progress=False)
        scores: np.ndarray = self.bm25.get_scores(tokens[0])
        return scores


def _plain_text(tool: dict[str, Any]) -> str:
    spec = tool["function"]
    return f"{spec['name']}: {spec.get('description', '')}"


def top(scores: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def recall(kept: Sequence[int], names: Sequence[str], answers: frozenset[str]) -> float:
    return len(answers & {names[i] for i in kept}) / len(answers)


def evaluate(
    entries: Sequence[Entry],
    pool: Sequence[dict[str, Any]],
    sizes: Sequence[int],
    seed: int,
    scorer: ToolScorer,
    first_stage: ToolScorer,
    tools_config: ToolsConfig,
    config: RouterConfig,
    queries: dict[str, np.ndarray],
    baselines: Baselines,
    tokens: Callable[[Sequence[dict[str, Any]]], int],
) -> dict[str, Any]:
    """Recall@k per method and catalog size; tools kept and tokens saved under top_k."""
    keeping = Keeping.of(tools_config)
    assert keeping is not None
    results: dict[str, Any] = {}
    progress = Progress(len(entries) * len(sizes), "recall")
    for size in sizes:
        hits: dict[str, dict[int, list[float]]] = {m: {k: [] for k in KS} for m in METHODS}
        kept_counts, saved = [], []
        for entry in entries:
            tools = catalog(entry, pool, size, seed)
            names = [tool_name(t) for t in tools]
            item = chat_request(entry, tools).signal_input(config.router.limits, tools_config)
            query = queries[entry.id]
            bm25 = baselines.bm25_scores(item.text)
            rows = baselines.rows(tools)
            scores = {
                "semrouter": scorer.score_sync(item, query),
                "semrouter_first_stage": first_stage.score_sync(item, query),
                "semrouter_lexical": scorer.score_sync(item, None),
                "embedding": baselines.embedding(rows, query),
                "bm25": bm25[rows],
            }
            for method, values in scores.items():
                for k in KS:
                    if method.startswith("semrouter"):
                        rules = Keeping(k, keeping.min_score, frozenset(), keeping.allow_empty)
                        kept = kept_indices(names, values, rules, None, entry.messages)
                    else:
                        kept = top(values, k)
                    hits[method][k].append(recall(kept, names, entry.answers))
            kept = kept_indices(names, scores["semrouter"], keeping, None, entry.messages)
            kept_counts.append(len(kept))
            saved.append(1 - tokens([tools[i] for i in kept]) / tokens(tools))
            progress.update(note=f"catalog {size}")
        results[str(size)] = {
            "entries": len(entries),
            "recall": {
                m: {f"@{k}": round(float(np.mean(v)), 4) for k, v in by_k.items()}
                for m, by_k in hits.items()
            },
            "kept_mean": round(float(np.mean(kept_counts)), 2),
            "tokens_saved": round(float(np.mean(saved)), 4),
        }
    progress.close()
    return results


def fit_reranker(
    entries: Sequence[Entry],
    pool: Sequence[dict[str, Any]],
    seed: int,
    scorer: ToolScorer,
    tools_config: ToolsConfig,
    config: RouterConfig,
    queries: dict[str, np.ndarray],
) -> TreeEnsemble:
    """The re-ranker fitted on the entries' catalogs of RERANKER_SIZES tools: each candidate
    is labelled by whether it is one of the entry's ground-truth functions."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rows, labels = [], []
    progress = Progress(len(entries) * len(RERANKER_SIZES), "fit")
    for size in RERANKER_SIZES:
        for entry in entries:
            tools = catalog(entry, pool, size, seed)
            item = chat_request(entry, tools).signal_input(config.router.limits, tools_config)
            scorer.score_sync(item, queries[entry.id])
            candidates, features = scorer.candidates(item, queries[entry.id])
            rows.append(features)
            labels.append([tool_name(tools[i]) in entry.answers for i in candidates])
            progress.update(note=f"catalog {size}")
    progress.close()
    model = HistGradientBoostingClassifier(**RERANKER_FIT)
    model.fit(np.vstack(rows), np.concatenate(labels))
    return exported(model, int(RERANKER_FIT["max_depth"]))


def exported(model: Any, depth: int) -> TreeEnsemble:
    """A fitted binary HistGradientBoostingClassifier as complete trees of `depth` (a leaf
    above that depth is repeated below a node that always goes left)."""
    inner = 2**depth - 1
    trees = [tree for (tree,) in model._predictors]
    feature = np.zeros((len(trees), inner), dtype=np.intp)
    threshold = np.full((len(trees), inner), np.inf)
    value = np.zeros((len(trees), inner + 1))

    def fill(t: int, nodes: np.ndarray, node: int, at: int, level: int) -> None:
        here = nodes[node]
        if level == depth:
            if not here["is_leaf"]:
                raise BenchError(f"a tree is deeper than {depth}")
            value[t, at - inner] = here["value"]
            return
        if here["is_leaf"]:
            fill(t, nodes, node, 2 * at + 1, level + 1)
            fill(t, nodes, node, 2 * at + 2, level + 1)
            return
        feature[t, at] = here["feature_idx"]
        threshold[t, at] = here["num_threshold"]
        fill(t, nodes, int(here["left"]), 2 * at + 1, level + 1)
        fill(t, nodes, int(here["right"]), 2 * at + 2, level + 1)

    for t, tree in enumerate(trees):
        fill(t, tree.nodes, 0, 0, 0)
    return TreeEnsemble(feature, threshold, value)


def best_scores(
    entries: Sequence[Entry],
    scorer: ToolScorer,
    tools_config: ToolsConfig,
    config: RouterConfig,
    queries: dict[str, np.ndarray],
) -> dict[str, Any]:
    """The best tool score on each entry's own catalog: where a tool applies vs where none does
    (what a `signals.tools` rule with min_score can tell apart)."""
    by_kind: dict[str, list[float]] = {"relevant": [], "irrelevant": []}
    for entry in (e for e in entries if e.tools):
        item = chat_request(entry, entry.tools).signal_input(config.router.limits, tools_config)
        best = float(scorer.score_sync(item, queries[entry.id]).max())
        by_kind["relevant" if entry.answers else "irrelevant"].append(best)
    relevant, irrelevant = (np.array(by_kind[k]) for k in ("relevant", "irrelevant"))
    # AUC: the chance that a relevant entry's best score beats an irrelevant one's.
    auc = float((relevant[:, None] > irrelevant[None, :]).mean()) if irrelevant.size else None
    return {
        "relevant": {"n": int(relevant.size), "mean": round(float(relevant.mean()), 4)},
        "irrelevant": {"n": int(irrelevant.size), "mean": round(float(irrelevant.mean()), 4)},
        "auc": None if auc is None else round(auc, 4),
    }


async def measure_latency(
    config: RouterConfig,
    embedder: Embedder,
    entries: Sequence[Entry],
    pool: Sequence[dict[str, Any]],
    seed: int,
    runs: int,
    first_sights: int,
) -> dict[str, Any]:
    """Per request, of 200-tool catalogs: the tool path once the catalog is cached (scoring,
    keeping, rewriting the body), with and without the re-ranker (interleaved); the first
    sight of a new catalog, waiting for its encoding and under encode_wait_ms. The query
    embedding is the router's, computed beforehand."""
    await embedder.start()
    try:
        tools_config = config.tools
        batch = config.embedding.batch_size
        waiting = ToolScorer(
            tools_config.model_copy(update={"encode_wait_ms": 60_000.0}), embedder, batch
        )
        model = ModelConfig(name="bench", endpoints=[Endpoint(url="http://127.0.0.1:1/v1")])
        sample = [e for e in entries if e.answers][: max(first_sights * 2, 20)]
        prepared = []
        for entry in sample:
            tools = catalog(entry, pool, LATENCY_SIZE, seed)
            request = chat_request(entry, tools)
            item = request.signal_input(config.router.limits, tools_config)
            query = (await embedder.encode([item.text])).embeddings[0]
            prepared.append((request, item, query))
        first_waiting = []
        for _request, item, query in prepared[:first_sights]:
            fresh = ToolScorer(waiting.config, embedder, batch)
            started = time.perf_counter()
            await fresh.score(item, query)
            first_waiting.append((time.perf_counter() - started) * 1000)
        first_bounded = []
        for _request, item, query in prepared[first_sights : first_sights * 2]:
            fresh = ToolScorer(tools_config, embedder, batch)
            started = time.perf_counter()
            await fresh.score(item, query)
            first_bounded.append((time.perf_counter() - started) * 1000)
            await asyncio.gather(*fresh.pending())  # let its encoding finish before the next
        plain = ToolScorer(waiting.config.model_copy(update={"rerank": False}), embedder, batch)
        plain.tools = waiting.tools  # the same encoded tools
        paths = {
            "cached": (waiting, ToolStage(tools_config, waiting)),
            "cached_first_stage": (plain, ToolStage(tools_config, plain)),
        }
        for _request, item, query in prepared:  # cache every catalog
            await waiting.score(item, query)
            await plain.score(item, query)
        timings: dict[str, list[float]] = {name: [] for name in paths}
        for i in range(runs):  # the two paths interleaved: the same load for both
            request, item, query = prepared[i % len(prepared)]
            for name, (scorer, stage) in paths.items():
                started = time.perf_counter()
                report = SignalReport(tool_scores=await scorer.score(item, query))
                context = StageContext(
                    request.messages, dict(request.body), "default", model, item, report
                )
                await stage.apply(context)
                timings[name].append((time.perf_counter() - started) * 1000)
    finally:
        await embedder.close()
    return {
        "catalog_size": LATENCY_SIZE,
        **{name: latency_summary(values) for name, values in timings.items()},
        "first_sight_waiting": latency_summary(first_waiting),
        "first_sight_bounded": latency_summary(first_bounded),
        "encode_wait_ms": tools_config.encode_wait_ms,
    }


def _table(results: dict[str, Any], top_k: int) -> str:
    lines = [
        "| catalog | method | R@1 | R@3 | R@5 | R@10 |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for size, result in results.items():
        for method in METHODS:
            r = result["recall"][method]
            lines.append(
                f"| {size} | {method} | {r['@1']:.3f} | {r['@3']:.3f} | {r['@5']:.3f} | "
                f"{r['@10']:.3f} |"
            )
    lines += [
        "",
        f"| catalog | tools kept (top_k {top_k}) | tool tokens saved |",
        "|---:|---:|---:|",
    ]
    lines += [
        f"| {size} | {r['kept_mean']:.2f} | {100 * r['tokens_saved']:.1f}% |"
        for size, r in results.items()
    ]
    return "\n".join(lines)


def _plot(results: dict[str, Any], meta: dict[str, Any], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    sizes = [int(s) for s in results]
    for axis, k in zip(axes, ("@5", "@10"), strict=True):
        for method in METHODS:
            axis.plot(
                sizes, [results[str(s)]["recall"][method][k] for s in sizes], "o-", label=method
            )
        axis.set_xscale("log")
        axis.set_xlabel("tools in the catalog")
        axis.set_ylabel(f"recall{k}")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return save_figure(figure, path, run_title("tools", meta))


def run(args: argparse.Namespace) -> int:
    from semrouter.embed import create_embedder

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise BenchError(str(exc)) from None
    if importlib.util.find_spec("bm25s") is None:
        raise BenchError("bm25s is not installed: .venv/bin/pip install -e '.[bench]'")
    tools_config = config.tools
    if args.lexical_weight is not None:
        tools_config = tools_config.model_copy(update={"lexical_weight": args.lexical_weight})
    if args.fit_reranker:
        if args.split != "tune":
            raise BenchError("--fit-reranker fits on the tune split only: add --split tune")
        tools_config = tools_config.model_copy(
            update={"rerank": False, "rerank_candidates": RERANKER_CANDIDATES}
        )
    sizes = [int(s) for s in args.sizes.split(",")]
    folder = bfcl_data(args.data)
    entries = load_entries(folder)
    pool = distinct_tools(entries)
    chosen = [e for e in entries if args.split == "all" or split_of(e.id) == args.split]
    answered = [e for e in chosen if e.answers][: args.limit]
    embedder = create_embedder(config.embedding)
    batch = config.embedding.batch_size
    scorer = ToolScorer(tools_config, embedder, batch)
    first_stage = ToolScorer(tools_config.model_copy(update={"rerank": False}), embedder, batch)
    everything = SignalInput(text="", prompt_chars=0, tools=tuple(pool))
    started = time.perf_counter()
    scorer.score_sync(everything, np.zeros(embedder.dim, dtype=np.float32))  # encode every tool
    encode_s = time.perf_counter() - started
    first_stage.tools = scorer.tools  # the same encoded tools
    texts = {
        e.id: chat_request(e, e.tools).signal_input(config.router.limits, tools_config).text
        for e in chosen
    }
    encoded = embedder.encode_sync(list(texts.values())).embeddings
    queries = dict(zip(texts, encoded, strict=True))
    if args.fit_reranker:
        fitted = fit_reranker(answered, pool, args.seed, scorer, tools_config, config, queries)
        fitted.save(Path(args.fit_reranker))
        print(f"fitted on {len(answered)} tune entries; wrote {args.fit_reranker}")
        return 0
    baselines = Baselines(pool, embedder)
    token_counts = {tool_digest(t): embedder.count_tokens(orjson.dumps(t).decode()) for t in pool}

    def tokens(tools: Sequence[dict[str, Any]]) -> int:
        return sum(token_counts[tool_digest(t)] for t in tools)

    results = evaluate(
        answered,
        pool,
        sizes,
        args.seed,
        scorer,
        first_stage,
        tools_config,
        config,
        queries,
        baselines,
        tokens,
    )
    separation = best_scores(chosen, scorer, tools_config, config, queries)
    latency = (
        None
        if args.no_latency
        else asyncio.run(
            measure_latency(
                config.model_copy(update={"tools": tools_config}),
                create_embedder(config.embedding),
                answered,
                pool,
                args.seed,
                args.runs,
                args.first_sights,
            )
        )
    )
    meta = run_metadata(
        bfcl_eval=BFCL_VERSION,
        split=args.split,
        seed=args.seed,
        entries={"with_ground_truth": len(answered), "irrelevant": len(chosen) - len(answered)},
        distinct_tools=len(pool),
        tools_config=tools_config.model_dump(exclude={"decisions"}),
        pool_encode_s=round(encode_s, 2),
    )
    output = Path(args.output)
    data = {"meta": meta, "recall": results, "best_score": separation, "latency": latency}
    write_json(output, data)
    table = _table(results, tools_config.top_k)
    output.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    plotted = _plot(results, meta, Path(args.plot) if args.plot else output.with_suffix(".png"))
    print(table)
    print(f"\nbest tool score, relevant vs irrelevant entries: {separation}")
    if latency is not None:
        print(f"latency ({LATENCY_SIZE} tools): {latency}")
    print(f"\nwrote {output}" + (" and its plot" if plotted else ""))
    return 0
