"""`semrouter bench conversations`: does a conversation stay on its route?

On the multi-turn set in data/conversations/ (tune.jsonl, and validation.jsonl never tuned on;
see its README), every turn goes through `Pipeline.prepare`, the request path both transports
run, in three arms side by side: the per-turn router (affinity off), affinity with the
`x-semrouter-session` header, and affinity keyed by the hash of the first turns. Per arm:

  switch_rate            conversations that change model or reasoning mode at a turn that is
                         not a labelled escalation (target < 5%)
  escalations_followed   labelled escalation turns routed to their labelled route (>= 90%)
  tool_results_elsewhere requests ending in tool results that went to another model than the
                         request whose answer called the tool (target 0)
  turn_accuracy          turns routed to their labelled model and reasoning mode
  reask                  how often the `reask` signal fires on re-asked turns and on others
  prepare_ms             the latency of Pipeline.prepare per turn (p50/p99); with the arms
                         side by side, the difference is affinity's cost
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from semrouter.bench.common import REPO_ROOT, BenchError, latency_summary, run_metadata, write_json
from semrouter.config import ConfigError, load_config
from semrouter.config.schema import REASK_SIGNAL, RouterConfig

if TYPE_CHECKING:
    from semrouter.pipeline.flow import Pipeline

SESSION_HEADER = "x-semrouter-session"

ANSWER = {"role": "assistant", "content": "Here is my answer."}
ARMS = ("per_turn", "affinity_header", "affinity_hash")
SPLITS = ("tune", "validation")


def load_conversations(directory: Path, split: str) -> list[dict[str, Any]]:
    path = directory / f"{split}.jsonl"
    try:
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    except OSError as exc:
        raise BenchError(f"cannot read {path}: {exc.strerror or exc}") from None


def arm_config(config: RouterConfig, arm: str, args: argparse.Namespace) -> RouterConfig:
    update: dict[str, Any] = {}
    if arm != "per_turn":
        update["affinity"] = config.affinity.model_copy(update={"backend": "memory"})
    changes = {
        name: value
        for name in ("context_turns", "context_mode", "context_weight")
        if (value := getattr(args, name, None)) is not None
    }
    if changes:
        conversation = config.router.conversation.model_copy(update=changes)
        update["router"] = config.router.model_copy(update={"conversation": conversation})
    return config.model_copy(update=update)


@dataclass
class Tally:
    """What one arm did over a split's conversations."""

    conversations: int = 0
    switched: int = 0
    turns: int = 0
    correct: int = 0
    escalations: int = 0
    followed: int = 0
    tool_steps: int = 0
    elsewhere: int = 0
    reask_hits: Counter[str] = field(default_factory=Counter)
    reask_totals: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "conversations": self.conversations,
            "turns": self.turns,
            "switch_rate": _share(self.switched, self.conversations),
            "switched_conversations": self.switched,
            "escalations": self.escalations,
            "escalations_followed": _share(self.followed, self.escalations),
            "tool_result_requests": self.tool_steps,
            "tool_results_elsewhere": self.elsewhere,
            "turn_accuracy": _share(self.correct, self.turns),
            "reask_fired": {k: _share(self.reask_hits[k], n) for k, n in self.reask_totals.items()},
            "affinity": dict(self.kinds),
            "prepare_ms": latency_summary(self.latencies),
        }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def requests(conversation: dict[str, Any]) -> Iterator[tuple[dict[str, Any], bytes]]:
    """Each step with the body the client sends for it (an answer between a user turn or a
    tool result and the next user turn)."""
    system = conversation.get("system")
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for step in conversation["steps"]:
        answered = messages and messages[-1]["role"] in ("user", "tool")
        if answered and step["add"][0]["role"] == "user":
            messages.append(ANSWER)
        messages.extend(step["add"])
        body: dict[str, Any] = {"model": "auto", "messages": messages}
        if "tools" in conversation:
            body["tools"] = conversation["tools"]
        yield step, orjson.dumps(body)


async def run_arm(
    config: RouterConfig, arm: str, conversations: list[dict[str, Any]]
) -> dict[str, Any]:
    from semrouter.pipeline.flow import Pipeline
    from semrouter.pipeline.router import Router

    pipeline = Pipeline(Router.from_config(config))
    await pipeline.start()
    tally = Tally(conversations=len(conversations))
    try:
        for conversation in conversations:
            session = conversation["id"] if arm == "affinity_header" else None
            await run_conversation(pipeline, conversation, session, tally)
    finally:
        await pipeline.close()
    return tally.summary()


async def run_conversation(
    pipeline: Pipeline, conversation: dict[str, Any], session: str | None, tally: Tally
) -> None:
    headers = {SESSION_HEADER: session} if session else {}
    reask_step = len(conversation["steps"]) - 2 if conversation["kind"] == "reask" else -1
    previous: tuple[str, bool] | None = None
    switched = False
    for index, (step, raw) in enumerate(requests(conversation)):
        started = time.perf_counter()
        route = (await pipeline.prepare(raw, headers)).route
        tally.latencies.append((time.perf_counter() - started) * 1000)
        routed = (route.model.name, route.reasoning == "on")
        right = routed == (step["model"], step["reasoning"])
        tally.kinds[route.affinity or "off"] += 1
        tally.turns += 1
        tally.correct += right
        if step["escalation"]:
            tally.escalations += 1
            tally.followed += right
        elif previous is not None and routed != previous:
            switched = True
        last_role = step["add"][-1]["role"]
        if last_role == "tool":
            tally.tool_steps += 1
            tally.elsewhere += previous is not None and routed[0] != previous[0]
        elif last_role == "user":
            kind = "reask" if index == reask_step else "other"
            tally.reask_totals[kind] += 1
            tally.reask_hits[kind] += route.signals is not None and (
                REASK_SIGNAL in route.signals.fired
            )
        previous = routed
    tally.switched += switched


async def affinity_cost(config: RouterConfig, runs: int) -> dict[str, Any]:
    """The affinity step alone (open, settle, record) on a six-message conversation, with the
    memory store full (affinity.max_sessions sessions): its latency per request."""
    import numpy as np

    from semrouter.affinity import Affinity, MemoryStore, SessionState
    from semrouter.decide.engine import DecisionEngine
    from semrouter.signals.engine import SignalReport

    engine = DecisionEngine(config)
    affinity = Affinity(config, engine.fallback)
    store = affinity.store
    assert isinstance(store, MemoryStore)
    vector = np.full(384, 384**-0.5, dtype=np.float32)
    for i in range(config.affinity.max_sessions):
        store.put_now(f"filler{i}", SessionState("fast", False, None, "default", 1))
    outcome = engine.default_outcome
    report = SignalReport(embedding=vector, reasoning_probability=0.3)
    messages = [
        {"role": "system", "content": "You are helpful."},
        *[{"role": r, "content": f"turn {i}"} for i, r in enumerate(["user", "assistant"] * 2)],
        {"role": "user", "content": "and the second one?"},
    ]
    times = []
    for i in range(runs):
        started = time.perf_counter()
        session = await affinity.open(messages, {SESSION_HEADER: f"s{i % 1000}"}, None)
        affinity.settle(session, outcome, report, messages, {})
        affinity.record(session, outcome, report)
        times.append((time.perf_counter() - started) * 1000)
    return {"sessions": len(store), **latency_summary(times)}


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise BenchError(str(exc)) from None
    directory = Path(args.data) if args.data else REPO_ROOT / "data" / "conversations"
    splits = [s for s in args.splits.split(",") if s]
    if set(splits) - set(SPLITS):
        raise BenchError(f"unknown splits {sorted(set(splits) - set(SPLITS))}; choose {SPLITS}")
    load = os.getloadavg()
    results: dict[str, Any] = {
        "meta": run_metadata(
            bench="conversations",
            load_average=[round(x, 2) for x in load],
            context_turns=args.context_turns,
            context_mode=args.context_mode,
            context_weight=args.context_weight,
        )
    }
    lines = [f"semrouter bench conversations — load average {load[0]:.2f}", ""]
    header = (
        "| split | arm | conversations | switch rate | escalations followed | tool results "
        "elsewhere | turn accuracy | reask fired (reask / other) | prepare p50 ms |"
    )
    lines += [header, "|" + "---|" * 9]
    for split in splits:
        conversations = load_conversations(directory, split)
        results[split] = {}
        for arm in ARMS:
            data = asyncio.run(run_arm(arm_config(config, arm, args), arm, conversations))
            results[split][arm] = data
            reask = data["reask_fired"]
            lines.append(
                f"| {split} | {arm} | {data['conversations']} | {data['switch_rate']:.1%} | "
                f"{data['escalations_followed']:.1%} | {data['tool_results_elsewhere']}/"
                f"{data['tool_result_requests']} | {data['turn_accuracy']:.1%} | "
                f"{reask.get('reask', 0):.0%} / {reask.get('other', 0):.0%} | "
                f"{data['prepare_ms']['p50_ms']} |"
            )
    memory = config.affinity.model_copy(update={"backend": "memory"})
    cost = asyncio.run(affinity_cost(config.model_copy(update={"affinity": memory}), 5000))
    results["affinity_step"] = cost
    lines += [
        "",
        f"affinity step alone (open + settle + record, {cost['sessions']} sessions in the "
        f"store): p50 {cost['p50_ms']} ms, p99 {cost['p99_ms']} ms",
    ]
    output = Path(args.output)
    write_json(output, results)
    markdown = "\n".join(lines)
    output.with_suffix(".md").write_text(markdown + "\n", encoding="utf-8")
    print(markdown)
    return 0
