"""Timing of the local embedding engine: the cost of classifying one request.

Measures, per (model precision, onnxruntime threads): p50/p90 latency of one ~20-token prompt
(sync and through the async micro-batcher), of one ~2,000-token prompt (windowed), the
throughput of batches of 32 short prompts, and of 256 concurrent single-prompt ``encode``
calls coalesced by the batcher.
Run: ``python -m semrouter.bench.classify_timing [--threads 1 2] [--precision fp32 int8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import numpy as np

from semrouter.embed.local import LocalEmbedder

SHORT_PROMPTS = [
    "Can you explain, step by step, how the Krebs cycle connects to the electron transport chain?",
    "Write a Python function that checks whether a string is a palindrome, please.",
    "What were the main economic causes of the French Revolution in the 1780s?",
    "Solve for x: 3x + 7 = 22, and show each step of the working clearly.",
    "Draft a short, polite email declining a meeting invitation for next Tuesday.",
    "How does a transformer's attention mechanism decide which tokens matter most?",
    "Is it legal to record a phone call without consent in the state of California?",
    "Give me a vegetarian lasagna recipe that serves six people and freezes well.",
]
LONG_PROMPT = " ".join(
    f"Paragraph {i}: the service routes each request by meaning, checks latency budgets, "
    "and records which model answered."
    for i in range(91)
)


def _percentiles(fn: Callable[[], object], runs: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    p50, p90 = np.percentile(times, [50, 90]) * 1000.0
    return float(p50), float(p90)


async def _async_single(embedder: LocalEmbedder, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await embedder.encode([SHORT_PROMPTS[0]])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


async def _async_concurrent(embedder: LocalEmbedder, n: int) -> tuple[float, int]:
    before = embedder.batches_run
    start = time.perf_counter()
    await asyncio.gather(
        *(embedder.encode([SHORT_PROMPTS[i % len(SHORT_PROMPTS)]]) for i in range(n))
    )
    return n / (time.perf_counter() - start), embedder.batches_run - before


async def _async_part(embedder: LocalEmbedder, runs: int) -> tuple[float, float, int]:
    await embedder.start()
    try:
        await _async_single(embedder, 3)
        single = await _async_single(embedder, runs)
        rate, batches = await _async_concurrent(embedder, 256)
    finally:
        await embedder.close()
    return single, rate, batches


def measure(embedder: LocalEmbedder, runs: int = 100) -> dict[str, float]:
    """Latency (ms) and throughput (prompts/s) figures for one configured embedder."""
    short, long_ = [SHORT_PROMPTS[0]], [LONG_PROMPT]
    batch = [SHORT_PROMPTS[i % len(SHORT_PROMPTS)] for i in range(32)]
    s50, s90 = _percentiles(lambda: embedder.encode_sync(short), runs)
    l50, l90 = _percentiles(lambda: embedder.encode_sync(long_), max(runs // 4, 10))
    b50, _ = _percentiles(lambda: embedder.encode_sync(batch), max(runs // 10, 10))
    single, rate, batches = asyncio.run(_async_part(embedder, runs))
    return {
        "short_tokens": float(embedder.count_tokens(short[0])),
        "short_p50_ms": s50,
        "short_p90_ms": s90,
        "short_async_p50_ms": single,
        "long_tokens": float(embedder.count_tokens(long_[0])),
        "long_p50_ms": l50,
        "long_p90_ms": l90,
        "batch32_prompts_per_s": 32 / (b50 / 1000.0),
        "concurrent256_prompts_per_s": rate,
        "concurrent256_batches": float(batches),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--precision", choices=["fp32", "int8"], nargs="+", default=["fp32"])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    print(
        "precision threads | short tok p50/p90 ms (async p50) | long tok p50/p90 ms "
        "| batch32 prompts/s | 256 concurrent prompts/s (batches)"
    )
    for precision in args.precision:
        for threads in args.threads:
            embedder = LocalEmbedder(
                threads=threads, quantize=precision == "int8", cache_dir=args.cache_dir
            )
            r = measure(embedder, args.runs)
            print(
                f"{precision:9s} {threads:7d} | {r['short_tokens']:.0f} tok "
                f"{r['short_p50_ms']:.2f}/{r['short_p90_ms']:.2f} ({r['short_async_p50_ms']:.2f})"
                f" | {r['long_tokens']:.0f} tok {r['long_p50_ms']:.1f}/{r['long_p90_ms']:.1f}"
                f" | {r['batch32_prompts_per_s']:.0f}"
                f" | {r['concurrent256_prompts_per_s']:.0f} ({r['concurrent256_batches']:.0f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
