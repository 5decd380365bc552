"""`semrouter bench slo`: a latency SLO under a load ramp, with and without the SLO controller.

The backend is the stand-in under its `Load` model (semrouter.bench.standin): `--slots`
generations at once, the rest queued, tokens slower the fuller the batch; a thinking request
emits `--think-tokens` reasoning tokens at `--think-rate` before its answer, or fewer when the
body's `thinking_budget` (the bench family's native budget field) says so. Clients are closed
loops with an exponential think time (`--think-time-s`, interactive users): each sends one
streamed request, reads it to the end, pauses, and sends the next. The ramp adds clients step
by step (`--steps`, each `--step-s` long) up to the last step's count.

Arms, run one after the other against the same stand-in (the other router paused):
  on          reasoning always on: the model named directly, thinking on, the full thought
  off         reasoning always off
  routed      `model: auto` through `semrouter serve` (domain and reasoning heads, decisions
              `stem` and `analysis` thinking, the default not), the SLO controller off
  controlled  the same router config with the controller on (`slo.enabled`, the model's
              `slo.latency_p95_ms: --slo-ms`, degrade order thinking_budget
              `--budget-steps` times at `--budget-factor`, then reasoning_off; breach
              at `--breach-ratio` and recovery at `--recover-ratio` of the SLO)

Every request is a validation question of MMLU-Pro (the `fast_strong_pair` outcomes, cycled in
a fixed shuffled order, the same for every arm). Its expected accuracy is the recorded outcome
of the fast model when it did not think and of the strong one when it thought in full; a thought
cut to r of T tokens counts `fast + r/T x (strong - fast)` (a linear interpolation: an
assumption, as the recorded outcomes are only on or off). Reported per arm and per step:
latency and TTFT p50/p95, SLO attainment (the share of requests answered within the SLO;
failures miss it), tokens, and the expected accuracy; the plot shows load, p95 and the
controller's level (from the `x-semrouter-slo` header) over time.

The share of always-on's accuracy gain an arm keeps is also taken paired: over the questions
that arm served, (its accuracy - their fast outcomes) / (their strong - fast outcomes). The on
and off arms' treatment does not depend on the load (every request thinks in full, or not at
all), so this is what they would have scored on the same questions, without the noise of
comparing different samples of questions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson

from semrouter.bench.common import (
    BenchError,
    pyplot,
    run_metadata,
    run_title,
    save_figure,
    write_json,
)
from semrouter.bench.overhead import ArmUnavailable, Services, services, start_semrouter
from semrouter.bench.overhead import start_standin as start_standin_process
from semrouter.bench.replay import load_outcome_table
from semrouter.slo import SLO_HEADER
from semrouter.train.data import DEFAULT_MMLU_DIR

ARMS = ("on", "off", "routed", "controlled")
MODEL = "standin"
STEM = ("math", "physics", "chemistry", "engineering", "computer science")
REQUEST_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Questions:
    texts: tuple[str, ...]
    fast: np.ndarray
    strong: np.ndarray


def load_questions(seed: int = 0) -> Questions:
    """The validation questions every fast_strong_pair model has an outcome for, shuffled."""
    folder = DEFAULT_MMLU_DIR
    table = load_outcome_table(
        folder / "questions.jsonl",
        folder / "outcomes.csv.gz",
        folder / "models.json",
        "fast_strong_pair",
    ).split("validation")
    table = table.rows(table.has_every_record)
    wanted = set(table.question_ids)
    options: dict[str, list[str]] = {}
    with open(folder / "questions.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                question = json.loads(line)
                if str(question["question_id"]) in wanted:
                    options[str(question["question_id"])] = question["options"]
    order = np.random.default_rng(seed).permutation(len(table))
    texts = tuple(
        table.questions[i]
        + "\n"
        + "\n".join(f"{chr(65 + j)}. {o}" for j, o in enumerate(options[table.question_ids[i]]))
        for i in order
    )
    return Questions(texts, table.correct[order, 0], table.correct[order, 1])


def router_config(backend: str, args: argparse.Namespace, controlled: bool) -> dict[str, Any]:
    reasoning = {
        "use_reasoning": True,
        "reasoning_budget_tokens": args.think_tokens,
        "model": MODEL,
    }
    return {
        # A generous deadline: on a loaded machine the encoder would otherwise miss 250 ms and
        # the fallback (reasoning off) would route; this bench measures the controller.
        "router": {
            "auto_model_names": ["auto"],
            "limits": {"classify_deadline_ms": 5000, "classify_chars": 1024},
        },
        "embedding": {"backend": "local"},
        "reasoning_families": {
            "standin": {
                "type": "chat_template_kwargs",
                "parameter": "enable_thinking",
                "budget_field": "thinking_budget",
            }
        },
        "models": [
            {
                "name": MODEL,
                "reasoning_family": "standin",
                "endpoints": [{"url": f"{backend}/v1"}],
                "timeout_s": REQUEST_TIMEOUT_S,
                "slo": {"latency_p95_ms": args.slo_ms},
            }
        ],
        "signals": {"domain": {"threshold": 0.3}, "reasoning": {"threshold": 0.5}},
        "decisions": [
            {
                "name": "stem",
                "priority": 200,
                "rules": {
                    "operator": "AND",
                    "conditions": [
                        {"operator": "OR", "conditions": [{"name": d} for d in STEM]},
                        {"name": "reasoning"},
                    ],
                },
                **reasoning,
            },
            {
                "name": "analysis",
                "priority": 100,
                "rules": {"conditions": [{"name": "reasoning"}]},
                **reasoning,
            },
        ],
        "default": {"model": MODEL, "use_reasoning": False},
        "tools": {"enabled": False},
        "slo": {
            "enabled": controlled,
            "window_s": args.window_s,
            "slots": 6,
            "min_samples": args.min_samples,
            "degrade_order": ["thinking_budget"] * args.budget_steps + ["reasoning_off"],
            "budget_factor": args.budget_factor,
            "breach_ratio": args.breach_ratio,
            "recover_ratio": args.recover_ratio,
            "max_backoff": args.max_backoff,
            "hold_s": args.hold_s,
        },
    }


def request_body(arm: str, text: str) -> bytes:
    body: dict[str, Any] = {
        "model": "auto" if arm in ("routed", "controlled") else MODEL,
        "messages": [{"role": "user", "content": text}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if arm in ("on", "off"):
        body["chat_template_kwargs"] = {"enable_thinking": arm == "on"}
    return orjson.dumps(body)


@dataclass(slots=True)
class Sample:
    """One request: when it started (seconds into the arm), the clients then, what it took."""

    start_s: float
    clients: int
    question: int
    ok: bool
    latency_ms: float | None
    ttft_ms: float | None
    reasoning_tokens: int
    completion_tokens: int
    level: int | None
    degraded: str | None
    fallback: bool
    accuracy: float


def slo_level(header: str | None) -> tuple[int | None, str | None]:
    """(level, degraded steps) from an x-semrouter-slo value ('ok', 'ok;level=1',
    'degraded=a,b;level=2')."""
    if header is None:
        return None, None
    parts = dict(p.split("=", 1) for p in header.split(";") if "=" in p)
    return int(parts.get("level", "0")), parts.get("degraded")


class Ramp:
    """One arm's load: clients added step by step, each a closed loop with think time."""

    def __init__(self, arm: str, url: str, questions: Questions, args: argparse.Namespace) -> None:
        self.arm = arm
        self.url = url
        self.questions = questions
        self.args = args
        self.samples: list[Sample] = []
        self.clients = 0
        self._next = 0
        self._rng = random.Random(args.seed)
        self.started = 0.0

    def _question(self) -> int:
        index = self._next % len(self.questions.texts)
        self._next += 1
        return index

    async def _one(self, session: aiohttp.ClientSession, index: int) -> None:
        start = time.monotonic()
        ttft: float | None = None
        usage: dict[str, Any] = {}
        ok = False
        header: str | None = None
        fallback = False
        try:
            async with session.post(
                self.url,
                data=request_body(self.arm, self.questions.texts[index]),
                headers={"content-type": "application/json"},
            ) as response:
                header = response.headers.get(SLO_HEADER)
                fallback = "x-semrouter-fallback" in response.headers
                async for line in response.content:
                    if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                        continue
                    event = orjson.loads(line[6:])
                    if ttft is None and event.get("choices"):
                        delta = event["choices"][0].get("delta", {})
                        if delta.get("content") or delta.get("reasoning_content"):
                            ttft = time.monotonic()
                    if event.get("usage"):
                        usage = event["usage"]
                ok = response.status == 200 and bool(usage)
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError):
            ok = False
        end = time.monotonic()
        reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0))
        share = min(reasoning / self.args.think_tokens, 1.0)
        fast, strong = self.questions.fast[index], self.questions.strong[index]
        level, degraded = slo_level(header)
        self.samples.append(
            Sample(
                start_s=round(start - self.started, 3),
                clients=self.clients,
                question=index,
                ok=ok,
                latency_ms=round((end - start) * 1000, 1) if ok else None,
                ttft_ms=round((ttft - start) * 1000, 1) if ok and ttft is not None else None,
                reasoning_tokens=reasoning,
                completion_tokens=int(usage.get("completion_tokens", 0)),
                level=level,
                degraded=degraded,
                fallback=fallback,
                accuracy=float(fast + share * (strong - fast)),
            )
        )

    async def _client(self, session: aiohttp.ClientSession, end: float, seed: int) -> None:
        rng = random.Random(seed)
        await asyncio.sleep(rng.uniform(0, self.args.think_time_s))  # no lockstep
        while time.monotonic() < end:
            await self._one(session, self._question())
            await asyncio.sleep(rng.expovariate(1 / self.args.think_time_s))

    async def run(self) -> list[Sample]:
        steps: list[int] = self.args.steps
        self.started = time.monotonic()
        end = self.started + len(steps) * self.args.step_s
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            tasks: list[asyncio.Task[None]] = []
            for n, clients in enumerate(steps):
                at = self.started + n * self.args.step_s
                await asyncio.sleep(max(at - time.monotonic(), 0.0))
                while len(tasks) < clients:
                    seed = self._rng.randrange(1 << 30)
                    tasks.append(asyncio.create_task(self._client(session, end, seed)))
                self.clients = clients
            await asyncio.gather(*tasks)
        return self.samples


def summarise(samples: Sequence[Sample], slo_ms: float) -> dict[str, Any]:
    done = [s for s in samples if s.ok]
    latency = [s.latency_ms for s in done if s.latency_ms is not None]
    ttft = [s.ttft_ms for s in done if s.ttft_ms is not None]

    def pct(values: list[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)), 1) if values else None

    return {
        "requests": len(samples),
        "errors": len(samples) - len(done),
        "fallbacks": sum(1 for s in samples if s.fallback),
        "latency_p50_ms": pct(latency, 50),
        "latency_p95_ms": pct(latency, 95),
        "ttft_p50_ms": pct(ttft, 50),
        "ttft_p95_ms": pct(ttft, 95),
        "slo_attainment": round(sum(1 for v in latency if v <= slo_ms) / len(samples), 4)
        if samples
        else None,
        "completion_tokens_mean": round(float(np.mean([s.completion_tokens for s in done])), 1)
        if done
        else None,
        "reasoning_tokens_mean": round(float(np.mean([s.reasoning_tokens for s in done])), 1)
        if done
        else None,
        "expected_accuracy": round(float(np.mean([s.accuracy for s in done])), 4) if done else None,
    }


def by_step(samples: Sequence[Sample], steps: Sequence[int], slo_ms: float) -> list[dict[str, Any]]:
    return [
        {"clients": c, **summarise([s for s in samples if s.clients == c], slo_ms)}
        for c in dict.fromkeys(steps)
    ]


def kept_share(samples: Sequence[Sample], questions: Questions) -> float | None:
    """The share of always-on's accuracy gain over always-off these requests keep, on their
    own questions (see the module docstring)."""
    done = [s for s in samples if s.ok]
    index = np.array([s.question for s in done], dtype=np.int64)
    gain = float(np.sum(questions.strong[index] - questions.fast[index]))
    if not done or gain == 0:
        return None
    kept = float(np.sum([s.accuracy for s in done]) - np.sum(questions.fast[index]))
    return round(kept / gain, 4)


def checks(arms: dict[str, dict[str, Any]], slo_ms: float) -> dict[str, Any]:
    """What the bench must show (docs/benchmarks.md, section 14)."""
    result: dict[str, Any] = {}
    on, off, ctl = (arms.get(a) for a in ("on", "off", "controlled"))
    if on is not None:
        peak = max((s["latency_p95_ms"] or 0.0) for s in on["steps"])
        result["on_peak_p95_over_2x_slo"] = {"value_ms": peak, "pass": peak > 2 * slo_ms}
    if ctl is not None:
        p95 = ctl["all"]["latency_p95_ms"]
        result["controlled_p95_within_slo"] = {
            "value_ms": p95,
            "pass": p95 is not None and p95 <= slo_ms,
        }
    if on is not None and off is not None and ctl is not None:
        a_on, a_off = on["all"]["expected_accuracy"], off["all"]["expected_accuracy"]
        a_ctl = ctl["all"]["expected_accuracy"]
        unpaired = (a_ctl - a_off) / (a_on - a_off) if a_on != a_off else None
        kept = ctl["kept_share"]
        result["controlled_keeps_2_3_of_accuracy_gain"] = {
            "kept": kept,
            "kept_unpaired": round(unpaired, 3) if unpaired is not None else None,
            "on_kept": on["kept_share"],
            "off_kept": off["kept_share"],
            "pass": kept is not None and kept >= 2 / 3,
        }
    return result


def plot(result: dict[str, Any], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    slo_ms = result["settings"]["slo_ms"]
    bucket = 5.0
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for arm, data in result["arms"].items():
        samples = data["samples"]
        if not samples:
            continue
        starts = np.array([s["start_s"] for s in samples])
        latency = np.array([s["latency_ms"] or np.nan for s in samples])
        edges = np.arange(0, starts.max() + bucket, bucket)
        centres, p95 = [], []
        for low in edges:
            inside = latency[(starts >= low) & (starts < low + bucket)]
            inside = inside[~np.isnan(inside)]
            if inside.size:
                centres.append(low + bucket / 2)
                p95.append(np.percentile(inside, 95) / 1000)
        axes[1].plot(centres, p95, marker=".", label=arm)
        if arm == "controlled":
            levels = sorted((s["start_s"], s["level"]) for s in samples if s["level"] is not None)
            if levels:
                axes[2].step(*zip(*levels, strict=True), where="post", label="controlled")
    steps, step_s = result["settings"]["steps"], result["settings"]["step_s"]
    axes[0].step([i * step_s for i in range(len(steps) + 1)], [*steps, steps[-1]], where="post")
    axes[0].set_ylabel("clients")
    axes[1].axhline(slo_ms / 1000, color="grey", linestyle="--", label="SLO")
    axes[1].set_ylabel(f"p95 latency (s, {bucket:g} s bins)")
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=7)
    axes[2].set_ylabel("controller level")
    axes[2].set_xlabel("seconds into the arm")
    return save_figure(fig, path, run_title("slo", result["meta"]))


async def _measure(
    arms: Sequence[str],
    urls: dict[str, str],
    running: Services,
    questions: Questions,
    args: argparse.Namespace,
) -> dict[str, list[Sample]]:
    measured: dict[str, list[Sample]] = {}
    for arm in arms:
        router = "controlled" if arm == "controlled" else "base"
        with running.only(router):
            print(f"arm {arm}: {len(args.steps)} steps of {args.step_s:g} s", flush=True)
            measured[arm] = await Ramp(arm, urls[router], questions, args).run()
        await asyncio.sleep(2.0)  # the stand-in drains
    return measured


def run(args: argparse.Namespace) -> int:
    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise BenchError(f"unknown arms {unknown} (known: {', '.join(ARMS)})")
    args.steps = [int(s) for s in args.steps.split(",")]
    questions = load_questions(args.seed)
    workdir = Path(args.workdir)
    with services(workdir) as running:
        try:
            backend = start_standin_process(
                running,
                "--no-echo",
                "--slots",
                str(args.slots),
                "--think-tokens",
                str(args.think_tokens),
                "--think-rate",
                str(args.think_rate),
                "--answer-delay-ms",
                str(args.answer_delay_ms),
            )
            urls: dict[str, str] = {}
            for router in ("base", "controlled"):
                if router == "base" and not {"on", "off", "routed"} & set(arms):
                    continue
                if router == "controlled" and "controlled" not in arms:
                    continue
                config = workdir / f"{router}.yaml"
                config.write_text(json.dumps(router_config(backend, args, router != "base")))
                before = len(running.processes)
                endpoint = start_semrouter(running, config, backend, name=router)
                running.arms[router] = running.processes[before:]
                urls[router] = endpoint.url
        except ArmUnavailable as exc:
            raise BenchError(str(exc)) from None
        measured = asyncio.run(_measure(arms, urls, running, questions, args))
    result: dict[str, Any] = {
        "meta": run_metadata(bench="slo"),
        "settings": {
            "steps": args.steps,
            "step_s": args.step_s,
            "slo_ms": args.slo_ms,
            "think_time_s": args.think_time_s,
            "think_tokens": args.think_tokens,
            "think_rate": args.think_rate,
            "answer_delay_ms": args.answer_delay_ms,
            "slots": args.slots,
            "window_s": args.window_s,
            "budget_factor": args.budget_factor,
            "budget_steps": args.budget_steps,
            "min_samples": args.min_samples,
            "recover_ratio": args.recover_ratio,
            "breach_ratio": args.breach_ratio,
            "max_backoff": args.max_backoff,
            "hold_s": args.hold_s,
            "questions": len(questions.texts),
        },
        "arms": {
            arm: {
                "all": summarise(samples, args.slo_ms),
                "kept_share": kept_share(samples, questions),
                "steps": by_step(samples, args.steps, args.slo_ms),
                "samples": [asdict(s) for s in samples],
            }
            for arm, samples in measured.items()
        },
    }
    result["checks"] = checks(result["arms"], args.slo_ms)
    for arm, data in result["arms"].items():
        print(arm, json.dumps(data["all"]))
    print(json.dumps(result["checks"]))
    output = Path(args.output)
    write_json(output, result)
    plot(result, Path(args.plot) if args.plot else output.with_suffix(".png"))
    return 0
