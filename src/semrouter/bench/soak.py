"""`semrouter bench soak`: a long run of mixed traffic, hostile inputs included.

Starts the stand-in backend and `semrouter serve --config C` in front of it (as `bench
overhead` does), then two phases:

  hostile   a normal short chat request's latency, one at a time: alone; sent alongside one
            pathological input of the catalogue (semrouter.bench.hostile), for each input;
            and while 20 are kept in flight back to back, either the stalling clients only
            (slowloris, Content-Length lies) or the whole catalogue cycled. Targets (issue
            12): p50 within 10 ms of alone next to any one input, p99 within 50 ms next to 20.
  soak      requests at a steady rate for `--duration-s` seconds or `--requests` requests:
            short and long (2,000-token) chat, JSON and SSE, /api/v1/classify, and the
            hostile catalogue in turn. Reported per window: p50/p99 per kind of request,
            answers by kind (status and error code), the router's RSS; in total: crashes,
            5xx other than the designed 502/503/504, hostile inputs that got another answer
            than the catalogue's, and RSS growth after the warm-up.

The router runs with short client timeouts (`--header-timeout-s`, `--body-timeout-s`) so that
a slow client's documented 408 comes within the run; everything else is the given config.
All traffic goes to 127.0.0.1; every loop is bounded by a request count or a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import yaml

from semrouter.bench.common import (
    BenchError,
    Progress,
    latency_summary,
    make_prompt,
    minilm_token_counter,
    process_memory_mb,
    pyplot,
    run_metadata,
    run_title,
    save_figure,
    write_json,
)
from semrouter.bench.hostile import (
    BY_NAME,
    CATALOGUE,
    NORMAL_TEXT,
    Answer,
    Hostile,
    Wire,
    chat_body,
    exchange,
    normal_wire,
    post,
)
from semrouter.bench.overhead import ArmUnavailable, services, start_semrouter, start_standin

DESIGNED_5XX = frozenset({502, 503, 504})
ALONGSIDE_P50_TARGET_MS = 10.0
IN_FLIGHT_P99_TARGET_MS = 50.0
PATHOLOGICAL_IN_FLIGHT = 20
RSS_GROWTH_TARGET_PCT = 5.0
RSS_SAMPLE_S = 5.0
LONG_TOKENS = 2000
REQUEST_TIMEOUT_S = 30.0
MAX_OUTSTANDING = 512
MIX: tuple[tuple[str, int], ...] = (
    ("short_json", 30),
    ("short_sse", 20),
    ("long_json", 12),
    ("long_sse", 8),
    ("classify", 20),
    ("hostile", 10),
)
"""Kinds of soak request and their weights (percent)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """One soak request's outcome (without the body: a run holds tens of thousands)."""

    at_s: float
    kind: str
    status: int
    answer: str
    """Answer.kind: '200', '413 too_many_messages', '0 timeout', ..."""
    elapsed_ms: float
    hostile: str | None
    unexpected: bool
    """A hostile input answered otherwise than the catalogue says, or a normal request not
    answered 200."""

    @classmethod
    def of(cls, at_s: float, kind: str, answer: Answer, hostile: Hostile | None) -> Sent:
        unexpected = (
            not hostile.serve.matches(answer) if hostile is not None else answer.status != 200
        )
        return cls(
            at_s,
            kind,
            answer.status,
            answer.kind,
            round(answer.elapsed_s * 1000, 3),
            hostile.name if hostile is not None else None,
            unexpected,
        )


class Traffic:
    """The soak's request bodies, chosen by a seeded RNG so a run can be repeated."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        count = minilm_token_counter()
        self.long = [make_prompt(LONG_TOKENS, count, start=i) for i in range(4)]
        self.hostile = itertools.cycle(CATALOGUE)
        kinds, weights = zip(*MIX, strict=True)
        self.kinds: tuple[str, ...] = kinds
        self.weights: tuple[int, ...] = weights
        for hostile in CATALOGUE:
            hostile.wire()  # build the large bodies before the clock starts

    def next(self) -> tuple[str, Wire, Hostile | None]:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        if kind == "hostile":
            hostile = next(self.hostile)
            return kind, hostile.wire(), hostile
        if kind == "classify":
            return kind, post(orjson.dumps({"text": NORMAL_TEXT}), "/api/v1/classify"), None
        stream = kind.endswith("sse")
        if kind.startswith("long"):
            text = f"{self.rng.randrange(10**6)} {self.rng.choice(self.long)}"
            return kind, post(chat_body(text, stream=stream)), None
        return kind, normal_wire(stream), None


# --- hostile phase ----------------------------------------------------------------------------


async def _normal_latencies(port: int, count: int) -> list[float]:
    """count normal short chat requests one after another; ms of those answered 200."""
    times = []
    for _ in range(count):
        answer = await exchange(port, normal_wire(), REQUEST_TIMEOUT_S)
        if answer.status == 200:
            times.append(answer.elapsed_s * 1000)
    return times


async def _paired(port: int, hostile: Hostile, count: int) -> list[float]:
    """Normal latencies, each request sent 2 ms after the pathological input (so that it is in
    flight meanwhile). A quick input is awaited before the next pair; a slow one (a stalling
    client) stays in flight across pairs and is replaced when it ends, so one is always there."""
    times = []
    attack: asyncio.Task[Answer] | None = None
    for _ in range(count):
        if attack is None or attack.done():
            attack = asyncio.create_task(exchange(port, hostile.wire(), REQUEST_TIMEOUT_S))
            await asyncio.sleep(0.002)
        answer = await exchange(port, normal_wire(), REQUEST_TIMEOUT_S)
        if answer.status == 200:
            times.append(answer.elapsed_s * 1000)
        if not hostile.timed:
            await attack
    if attack is not None:
        await attack
    return times


async def _keep_in_flight(port: int, inputs: Iterator[Hostile], stop: asyncio.Event) -> None:
    """Send inputs back to back until stop is set (each exchange is bounded by its timeout)."""
    while not stop.is_set():
        await exchange(port, next(inputs).wire(), REQUEST_TIMEOUT_S)


async def _crowd(port: int, inputs: Sequence[Hostile], count: int) -> list[float]:
    """Normal latencies while PATHOLOGICAL_IN_FLIGHT loops each keep one of inputs (cycled,
    each loop from another offset) in flight, back to back."""
    stop = asyncio.Event()
    loops = [
        asyncio.create_task(
            _keep_in_flight(port, itertools.islice(itertools.cycle(inputs), i, None), stop)
        )
        for i in range(PATHOLOGICAL_IN_FLIGHT)
    ]
    await asyncio.sleep(0.5)
    try:
        return await _normal_latencies(port, count)
    finally:
        stop.set()
        await asyncio.gather(*loops)


def _delta(summary: dict[str, Any], baseline: dict[str, Any], key: str) -> float | None:
    if summary[key] is None or baseline[key] is None:
        return None
    return round(float(summary[key]) - float(baseline[key]), 3)


async def hostile_phase(port: int, count: int) -> dict[str, Any]:
    """The issue's two latency targets, side by side (see the module docstring)."""
    await _normal_latencies(port, 20)  # warm-up
    baseline = latency_summary(await _normal_latencies(port, count))
    progress = Progress(len(CATALOGUE) + 2, "hostile phase")
    alongside = {}
    for hostile in CATALOGUE:
        summary = latency_summary(await _paired(port, hostile, count))
        alongside[hostile.name] = {
            **summary,
            "delta_p50_ms": _delta(summary, baseline, "p50_ms"),
            "delta_p99_ms": _delta(summary, baseline, "p99_ms"),
        }
        progress.update(note=hostile.name)
    crowds = {}
    for name, inputs in (
        ("stalling", [h for h in CATALOGUE if h.timed]),
        ("catalogue", list(CATALOGUE)),
    ):
        summary = latency_summary(await _crowd(port, inputs, count))
        crowds[name] = {**summary, "delta_p99_ms": _delta(summary, baseline, "p99_ms")}
        progress.update(note=f"20 in flight: {name}")
    progress.close()
    worst = max((a["delta_p50_ms"] or 0.0) for a in alongside.values())
    return {
        "normal_requests_per_condition": count,
        "alone": baseline,
        "alongside": alongside,
        "in_flight_20": crowds,
        "checks": {
            "worst_alongside_delta_p50_ms": worst,
            "alongside_p50_ok": worst <= ALONGSIDE_P50_TARGET_MS,
            **{
                f"in_flight_20_{name}_p99_ok": c["delta_p99_ms"] is not None
                and c["delta_p99_ms"] <= IN_FLIGHT_P99_TARGET_MS
                for name, c in crowds.items()
            },
        },
    }


# --- soak phase -------------------------------------------------------------------------------


async def _sample_memory(pid: int, started: float, samples: list[list[float]]) -> None:
    while True:
        rss, hwm = process_memory_mb(pid)
        samples.append([round(time.monotonic() - started, 1), rss, hwm])
        await asyncio.sleep(RSS_SAMPLE_S)


async def soak_phase(
    port: int, pid: int, alive: Callable[[], bool], args: argparse.Namespace
) -> dict[str, Any]:
    traffic = Traffic(args.seed)
    total = args.requests or int(args.duration_s * args.rate)
    results: list[Sent] = []
    samples: list[list[float]] = []
    skipped = 0
    crashed_at: float | None = None
    started = time.monotonic()
    sampler = asyncio.create_task(_sample_memory(pid, started, samples))
    pending: set[asyncio.Task[None]] = set()
    progress = Progress(total, "soak")

    async def send(at_s: float, kind: str, wire: Wire, hostile: Hostile | None) -> None:
        answer = await exchange(port, wire, REQUEST_TIMEOUT_S)
        results.append(Sent.of(at_s, kind, answer, hostile))
        progress.update(note=f"{len(pending)} in flight")

    for i in range(total):
        delay = started + i / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if not alive():
            crashed_at = round(time.monotonic() - started, 1)
            break
        if len(pending) >= MAX_OUTSTANDING:
            skipped += 1  # the router fell this far behind: count it, don't queue without end
            continue
        kind, wire, hostile = traffic.next()
        task = asyncio.create_task(send(round(time.monotonic() - started, 3), kind, wire, hostile))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending)
    progress.close()
    sampler.cancel()
    samples.append([round(time.monotonic() - started, 1), *process_memory_mb(pid)])
    return summarise_soak(results, samples, skipped, crashed_at, args)


def _window_of(results: list[Sent], start: float, end: float) -> dict[str, Any]:
    chosen = [r for r in results if start <= r.at_s < end]
    by_kind: dict[str, list[float]] = {}
    for sent in chosen:
        if sent.hostile is None and sent.status == 200:
            by_kind.setdefault(sent.kind, []).append(sent.elapsed_ms)
    normal = [ms for kind, values in by_kind.items() for ms in values]
    return {
        "start_s": start,
        "end_s": end,
        "requests": len(chosen),
        "normal": latency_summary(normal),
        "by_kind": {kind: latency_summary(values) for kind, values in sorted(by_kind.items())},
        "answers": dict(Counter(r.answer for r in chosen).most_common()),
        "unexpected": sum(r.unexpected for r in chosen),
    }


def summarise_soak(
    results: list[Sent],
    samples: list[list[float]],
    skipped: int,
    crashed_at: float | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    end = max((r.at_s for r in results), default=0.0)
    windows = [
        _window_of(results, start, start + args.window_s)
        for start in (i * args.window_s for i in range(int(end // args.window_s) + 1))
    ]
    normal_answers = Counter(r.answer for r in results if r.hostile is None)
    hostile_answers: dict[str, Counter[str]] = {}
    for sent in results:
        if sent.hostile is not None:
            hostile_answers.setdefault(sent.hostile, Counter())[sent.answer] += 1
    undesigned = sum(r.status >= 500 and r.status not in DESIGNED_5XX for r in results)
    after_warmup = [s for s in samples if s[0] >= args.warmup_s] or samples
    rss_start, rss_end = after_warmup[0][1], after_warmup[-1][1]
    growth = round(100 * (rss_end - rss_start) / rss_start, 2) if rss_start else None
    return {
        "requests": len(results),
        "skipped_client_backlog": skipped,
        "crashes": 0 if crashed_at is None else 1,
        "crashed_at_s": crashed_at,
        "undesigned_5xx": undesigned,
        "connection_failures": sum(r.status == 0 for r in results),
        "normal": latency_summary(
            [r.elapsed_ms for r in results if r.hostile is None and r.status == 200]
        ),
        "normal_answers": dict(normal_answers.most_common()),
        "hostile_answers": {
            name: {
                "expected": str(BY_NAME[name].serve),
                "answers": dict(counts),
            }
            for name, counts in sorted(hostile_answers.items())
        },
        "unexpected": sum(r.unexpected for r in results),
        "rss_mb": {
            "first": samples[0][1] if samples else None,
            "after_warmup": rss_start,
            "end": rss_end,
            "max": max(s[1] for s in samples) if samples else None,
            "peak_hwm": max(s[2] for s in samples) if samples else None,
            "growth_after_warmup_pct": growth,
            "growth_ok": growth is not None and growth < RSS_GROWTH_TARGET_PCT,
        },
        "windows": windows,
        "rss_samples": samples,
    }


# --- report -----------------------------------------------------------------------------------


def plot(result: dict[str, Any], path: Path) -> bool:
    """RSS, p50/p99 per window and non-200 answers per window; the hostile phase's latencies."""
    plt = pyplot()
    if plt is None:
        return False
    figure, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    soak = result.get("soak")
    if soak:
        samples = soak["rss_samples"]
        axes[0][0].plot([s[0] / 60 for s in samples], [s[1] for s in samples], label="VmRSS")
        axes[0][0].set(xlabel="minutes", ylabel="MiB", title="router RSS")
        mids = [(w["start_s"] + w["end_s"]) / 120 for w in soak["windows"]]
        for key in ("p50_ms", "p99_ms"):
            axes[0][1].plot(
                mids, [w["normal"][key] for w in soak["windows"]], marker=".", label=key
            )
        axes[0][1].set(
            xlabel="minutes", ylabel="ms", yscale="log", title="normal requests, per window"
        )
        axes[0][1].legend(fontsize="small")
        kinds = sorted({k for w in soak["windows"] for k in w["answers"] if k != "200"})
        for kind in kinds:
            axes[1][0].plot(mids, [w["answers"].get(kind, 0) for w in soak["windows"]], label=kind)
        axes[1][0].set(xlabel="minutes", ylabel="answers", title="answers other than 200")
        axes[1][0].legend(fontsize="x-small", ncol=2)
    phase = result.get("hostile_phase")
    if phase:
        crowds = phase["in_flight_20"]
        names = ["alone", *phase["alongside"], *(f"20 in flight: {c}" for c in crowds)]
        rows = [phase["alone"], *phase["alongside"].values(), *crowds.values()]
        ax = axes[1][1]
        positions = range(len(names))
        ax.barh([p + 0.2 for p in positions], [r["p50_ms"] or 0 for r in rows], 0.4, label="p50")
        ax.barh([p - 0.2 for p in positions], [r["p99_ms"] or 0 for r in rows], 0.4, label="p99")
        ax.set_yticks(list(positions), names, fontsize="x-small")
        ax.invert_yaxis()
        ax.set(xlabel="ms", title="normal request latency next to pathological ones")
        ax.legend(fontsize="small")
    return save_figure(figure, path, run_title("soak", result["meta"]))


def render_markdown(result: dict[str, Any]) -> str:
    lines = []
    phase = result.get("hostile_phase")
    if phase:
        alone = phase["alone"]
        lines += [
            f"normal request alone: p50 {alone['p50_ms']} ms, p99 {alone['p99_ms']} ms",
            "",
            "| next to | p50 ms | p99 ms | Δp50 ms |",
            "|---|---|---|---|",
        ]
        for name, row in phase["alongside"].items():
            lines.append(f"| {name} | {row['p50_ms']} | {row['p99_ms']} | {row['delta_p50_ms']} |")
        for name, crowd in phase["in_flight_20"].items():
            lines.append(
                f"| 20 in flight ({name}) | {crowd['p50_ms']} | {crowd['p99_ms']} | "
                f"Δp99 {crowd['delta_p99_ms']} |"
            )
        lines.append("")
    soak = result.get("soak")
    if soak:
        rss = soak["rss_mb"]
        lines += [
            f"soak: {soak['requests']} requests, crashes {soak['crashes']}, undesigned 5xx "
            f"{soak['undesigned_5xx']}, unexpected answers {soak['unexpected']}, "
            f"connection failures {soak['connection_failures']}",
            f"RSS after warm-up {rss['after_warmup']} MiB → end {rss['end']} MiB "
            f"({rss['growth_after_warmup_pct']}%), max {rss['max']} MiB",
            "",
            "| window | requests | p50 ms | p99 ms | not 200 |",
            "|---|---|---|---|---|",
        ]
        for w in soak["windows"]:
            not_ok = sum(n for k, n in w["answers"].items() if k != "200")
            lines.append(
                f"| {w['start_s'] / 60:.1f}-{w['end_s'] / 60:.1f} min | {w['requests']} | "
                f"{w['normal']['p50_ms']} | {w['normal']['p99_ms']} | {not_ok} |"
            )
    return "\n".join(lines)


def router_config(source: Path, workdir: Path, args: argparse.Namespace) -> Path:
    """The given config with the client timeouts of this run (placeholders kept)."""
    try:
        config = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"{source}: cannot read the config: {exc}") from None
    router = config.setdefault("router", {})
    router["limits"] = {
        **router.get("limits", {}),
        "header_read_timeout_s": args.header_timeout_s,
        "body_read_timeout_s": args.body_timeout_s,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "router.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def _run(port: int, pid: int, alive: Callable[[], bool], args: argparse.Namespace) -> Any:
    result: dict[str, Any] = {}
    if args.phases in ("hostile", "both"):
        result["hostile_phase"] = await hostile_phase(port, args.phase_requests)
    if args.phases in ("soak", "both"):
        result["soak"] = await soak_phase(port, pid, alive, args)
    return result


def run(args: argparse.Namespace) -> int:
    if args.rate <= 0 or args.window_s <= 0 or (args.requests or args.duration_s) <= 0:
        raise BenchError("--rate, --window-s and --duration-s (or --requests) must be positive")
    workdir = Path(args.workdir)
    config = router_config(Path(args.config), workdir, args)
    with services(workdir) as running:
        try:
            # No echo of the request in answers: the stand-in shares these 2 cores, and
            # re-encoding a 2 MB body is its work, not the router's.
            backend = start_standin(running, "--no-echo")
            endpoint = start_semrouter(running, config, backend)
        except ArmUnavailable as exc:
            raise BenchError(str(exc)) from None
        router = running.processes[-1]  # the one start_semrouter spawned
        port = urlsplit(endpoint.url).port or 80
        measured = asyncio.run(_run(port, router.pid, lambda: router.poll() is None, args))
    result = {
        "bench": "soak",
        "meta": run_metadata(),
        "settings": {
            "config": str(args.config),
            "rate_per_s": args.rate,
            "duration_s": None if args.requests else args.duration_s,
            "requests": args.requests,
            "window_s": args.window_s,
            "warmup_s": args.warmup_s,
            "header_timeout_s": args.header_timeout_s,
            "body_timeout_s": args.body_timeout_s,
            "mix_percent": dict(MIX),
            "long_prompt_tokens": LONG_TOKENS,
            "catalogue": [
                {"name": h.name, "what": h.what, "expected": str(h.serve)} for h in CATALOGUE
            ],
        },
        **measured,
    }
    output = Path(args.output)
    write_json(output, result)
    print(render_markdown(result))
    plot_path = Path(args.plot) if args.plot else output.with_suffix(".png")
    if plot(result, plot_path):
        print(f"plot → {plot_path}", file=sys.stderr)
    print(f"results → {output}", file=sys.stderr)
    soak = result.get("soak", {})
    return 1 if soak.get("crashes") or soak.get("undesigned_5xx") else 0
