"""`semrouter bench reasoning`: does routing reasoning per question pay off?

The same multiple-choice questions (MMLU-Pro-style JSONL: question, options, answer letter,
category, question_id) are sent up to three ways:

  router  through semrouter with `model: auto` (it decides model and reasoning)
  on      straight to the backend, reasoning always on (the family's dialect)
  off     straight to the backend, reasoning always off

Every request streams, so time to first token (content or reasoning) and total latency are
measured; tokens come from `usage` (requested with stream_options.include_usage; where a
backend sends none, completion tokens are counted as content chunks and the record says so).
The answer letter is extracted from the reply ("the answer is (X)", then fallbacks).

Results are appended to a JSONL file as they arrive, one record per (arm, question id); a
restart skips what is already done, so an interrupted run resumes. The summary JSON (and its
plot) is computed from the JSONL. Record and summary formats: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

ARMS = ("router", "on", "off")
LETTERS = "ABCDEFGHIJ"
CONTENT_TAIL_CHARS = 2000
SYSTEM_PROMPT = (
    "Answer the multiple-choice question. Finish your reply with "
    '"The answer is (X)" where X is the letter of the correct option.'
)
ROUTE_HEADERS = {
    "routed_model": "x-semrouter-model",
    "routed_reasoning": "x-semrouter-reasoning",
    "routed_decision": "x-semrouter-decision",
}


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    question: str
    options: tuple[str, ...]
    answer: str
    category: str


def load_dataset(path: Path, split: str = "all", limit: int | None = None) -> list[Question]:
    """Questions from an MMLU-Pro-style JSONL, optionally the validation split, spread by limit."""
    from semrouter.train.splits import is_validation

    questions = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BenchError(f"{path}: cannot read: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            options = tuple(str(o) for o in item["options"])
            answer = item.get("answer")
            if not isinstance(answer, str):
                answer = LETTERS[int(item["answer_index"])]
            question = Question(
                id=str(item.get("question_id", item.get("id", number))),
                question=str(item["question"]),
                options=options,
                answer=answer.strip().upper(),
                category=str(item.get("category", "unknown")),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise BenchError(f"{path}:{number}: not an MMLU-Pro-style question ({exc})") from None
        if not 2 <= len(options) <= len(LETTERS) or question.answer not in LETTERS[: len(options)]:
            raise BenchError(f"{path}:{number}: needs 2-10 options and an answer letter among them")
        if split == "all" or is_validation(question.id):
            questions.append(question)
    return spread(questions, limit)


def spread(questions: Sequence[Question], limit: int | None) -> list[Question]:
    """The first `limit` questions taken round-robin over categories (all when limit is None)."""
    if limit is None or limit >= len(questions):
        return list(questions)
    queues: dict[str, list[Question]] = {}
    for question in questions:
        queues.setdefault(question.category, []).append(question)
    picked: list[Question] = []
    while len(picked) < limit:
        for queue in queues.values():
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


def user_prompt(question: Question) -> str:
    options = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(question.options))
    return f"Question: {question.question}\nOptions:\n{options}"


_LEAD = r"\s*:?\s*(?i:option|choice|letter)?\s*[\(\[]?\s*\**\s*"
_PATTERNS = (
    re.compile(r"(?i:answer\s+is)" + _LEAD + r"([A-J])\b"),
    re.compile(r"(?i:answer)\s*[:=]" + _LEAD + r"([A-J])\b"),
    re.compile(r"\\boxed\{\s*(?:\\text\{\s*)?([A-J])\b"),
    re.compile(r"\(([A-J])\)"),
)
_BARE_LETTER = re.compile(r"\b([A-J])\b")
_WORD_AFTER = re.compile(r"\s+[a-z]")


def extract_choice(text: str, n_options: int = len(LETTERS)) -> str | None:
    """The answer letter in a reply: the first pattern that matches, its last match wins.

    Patterns, in order: "the answer is (X)", "Answer: X", \\boxed{X}, "(X)", then the last
    standalone capital letter (but not "A" or "I" starting a phrase: "A train...", "I think").
    Only letters of existing options count; any <think> block is ignored.
    """
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    valid = LETTERS[:n_options]
    for pattern in _PATTERNS:
        found = [m for m in pattern.findall(text) if m in valid]
        if found:
            return str(found[-1])
    bare = [
        m.group(1)
        for m in _BARE_LETTER.finditer(text)
        if m.group(1) in valid and not (m.group(1) in "AI" and _WORD_AFTER.match(text, m.end()))
    ]
    return bare[-1] if bare else None


def chat_url(base: str) -> str:
    """…/v1/chat/completions from a base URL given with or without /v1."""
    base = base.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    return f"{base if base.endswith('/v1') else base + '/v1'}/chat/completions"


def request_body(arm: str, question: Question, args: argparse.Namespace) -> dict[str, Any]:
    """The body for one arm: `auto` for the router, the family's control on/off otherwise."""
    from semrouter.config.schema import DEFAULT_REASONING_FAMILIES
    from semrouter.reasoning.families import apply_reasoning

    body: dict[str, Any] = {
        "model": "auto" if arm == "router" else args.model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": user_prompt(question)},
        ],
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if arm != "router":
        family = DEFAULT_REASONING_FAMILIES[args.family]
        apply_reasoning(body, family, arm == "on", args.effort)
    return body


async def stream_chat(
    session: Any, url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float
) -> dict[str, Any]:
    """POST a streaming chat request; what came back and when (no answer scoring here)."""
    import aiohttp

    started = time.perf_counter()
    first: float | None = None
    content: list[str] = []
    reasoning: list[str] = []
    chunks = 0
    usage: dict[str, Any] | None = None
    finish: str | None = None
    async with session.post(
        url,
        data=orjson.dumps(body),
        headers={"content-type": "application/json", **headers},
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as response:
        routed = {key: response.headers.get(name) for key, name in ROUTE_HEADERS.items()}
        if response.status != 200:
            text = await response.text()
            return {"status": "error", "error": f"HTTP {response.status}: {text[:300]}", **routed}
        async for raw in response.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            chunk = orjson.loads(data)
            if "error" in chunk:
                return {"status": "error", "error": str(chunk["error"])[:300], **routed}
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                piece = delta.get("content")
                thought = delta.get("reasoning_content") or delta.get("reasoning")
                if (piece or thought) and first is None:
                    first = time.perf_counter()
                if piece:
                    content.append(piece)
                    chunks += 1
                if thought:
                    reasoning.append(thought)
                    chunks += 1
                finish = choice.get("finish_reason") or finish
    ended = time.perf_counter()
    if finish is None:
        return {"status": "error", "error": "stream ended without a finish_reason", **routed}
    text = "".join(content)
    details = (usage or {}).get("completion_tokens_details") or {}
    return {
        "status": "ok",
        "content": text,
        "reasoning_chars": sum(len(r) for r in reasoning),
        "prompt_tokens": usage.get("prompt_tokens") if usage else None,
        "completion_tokens": usage.get("completion_tokens") if usage else chunks,
        "reasoning_tokens": details.get("reasoning_tokens"),
        "usage_source": "usage" if usage else "chunks",
        "ttft_ms": round((first - started) * 1000, 2) if first is not None else None,
        "latency_ms": round((ended - started) * 1000, 2),
        "finish_reason": finish,
        **routed,
    }


def score(question: Question, arm: str, reply: dict[str, Any]) -> dict[str, Any]:
    """The JSONL record for one answered (or failed) request."""
    record: dict[str, Any] = {
        "id": question.id,
        "arm": arm,
        "category": question.category,
        "answer": question.answer,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    content = reply.pop("content", None)
    if reply["status"] == "ok":
        predicted = extract_choice(content or "", len(question.options))
        record.update(predicted=predicted, correct=predicted == question.answer)
        reply["content_chars"] = len(content or "")
        reply["content_tail"] = (content or "")[-CONTENT_TAIL_CHARS:]
    record.update(reply)
    return record


class ResultStore:
    """The results JSONL: latest record per (arm, id); appends flush line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        self._cut = bool(text) and not text.endswith("\n")  # the next append starts a new line
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run
            self.records[record["arm"], str(record["id"])] = record

    def done(self, arm: str, question_id: str) -> bool:
        record = self.records.get((arm, question_id))
        return record is not None and record.get("status") == "ok"

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(("\n" if self._cut else "") + json.dumps(record) + "\n")
        self._cut = False
        self.records[record["arm"], str(record["id"])] = record


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 2) if values else None


def _arm_summary(rows: list[dict[str, Any]], errors: int, total: int) -> dict[str, Any]:
    correct = sum(1 for r in rows if r["correct"])
    completion = [r["completion_tokens"] for r in rows if r.get("completion_tokens") is not None]
    prompt = [r["prompt_tokens"] for r in rows if r.get("prompt_tokens") is not None]
    summary: dict[str, Any] = {
        "questions": total,
        "n": len(rows),
        "errors": errors,
        "missing": total - len(rows) - errors,
        "accuracy": round(correct / len(rows), 4) if rows else None,
        "unanswered": sum(1 for r in rows if r["predicted"] is None),
        "completion_tokens": {"mean": _mean(completion), "total": sum(completion)},
        "prompt_tokens": {"mean": _mean(prompt), "total": sum(prompt)} if prompt else None,
        "usage_from_chunks": sum(1 for r in rows if r.get("usage_source") == "chunks"),
        "ttft": latency_summary([r["ttft_ms"] for r in rows if r.get("ttft_ms") is not None]),
        "latency": latency_summary([r["latency_ms"] for r in rows]),
    }
    if any(r.get("routed_reasoning") for r in rows):
        on = sum(1 for r in rows if r.get("routed_reasoning") == "on")
        summary["routed"] = {
            "reasoning_on_share": round(on / len(rows), 4),
            "models": dict(Counter(str(r.get("routed_model")) for r in rows)),
            "decisions": dict(Counter(str(r.get("routed_decision")) for r in rows)),
        }
    return summary


def summarise(
    store: ResultStore, questions: Sequence[Question], arms: Sequence[str]
) -> dict[str, Any]:
    """Per arm and per category, over the questions of this run (from the results JSONL)."""
    result: dict[str, Any] = {"arms": {}, "categories": {}}
    categories = sorted({q.category for q in questions})
    for arm in arms:
        present = [store.records.get((arm, q.id)) for q in questions]
        rows = [r for r in present if r is not None and r.get("status") == "ok"]
        errors = sum(1 for r in present if r is not None and r.get("status") != "ok")
        result["arms"][arm] = _arm_summary(rows, errors, len(questions))
        for category in categories:
            mine = [r for r in rows if r["category"] == category]
            result["categories"].setdefault(category, {})[arm] = {
                "n": len(mine),
                "accuracy": round(sum(r["correct"] for r in mine) / len(mine), 4) if mine else None,
                "completion_tokens_mean": _mean(
                    r["completion_tokens"] for r in mine if r.get("completion_tokens") is not None
                ),
            }
    return result


def plot(result: dict[str, Any], path: Path) -> bool:
    """Accuracy and mean completion tokens per category, one bar per arm."""
    plt = pyplot()
    if plt is None:
        return False
    import numpy as np

    categories = sorted(result["categories"])
    arms = list(result["arms"])
    x = np.arange(len(categories))
    width = 0.8 / max(len(arms), 1)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 0.8 * len(categories) + 3), 8))
    for i, arm in enumerate(arms):
        offset = (i - (len(arms) - 1) / 2) * width
        rows = [result["categories"][c][arm] for c in categories]
        accuracy = result["arms"][arm]["accuracy"]
        label = f"{arm} ({accuracy:.1%})" if accuracy is not None else arm
        top.bar(x + offset, [r["accuracy"] or 0 for r in rows], width, label=label)
        bottom.bar(x + offset, [r["completion_tokens_mean"] or 0 for r in rows], width, label=arm)
    for ax, label in ((top, "accuracy"), (bottom, "mean completion tokens")):
        ax.set_xticks(x, categories, rotation=45, ha="right")
        ax.set_ylabel(label)
        ax.legend(fontsize="small")
        ax.grid(True, axis="y", alpha=0.3)
    top.set_ylim(0, 1)
    settings, meta = result["settings"], result["meta"]
    title = f"{settings['model']} ({settings['family']}) — {run_title('reasoning', meta)}"
    return save_figure(figure, path, title)


async def _run_jobs(
    jobs: list[tuple[str, Question]],
    urls: dict[str, str],
    args: argparse.Namespace,
    store: ResultStore,
) -> None:
    import aiohttp

    key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""
    auth = {"authorization": f"Bearer {key}"} if key else {}
    pending = iter(jobs)  # shared by the workers: each takes the next job when it is free
    progress = Progress(len(jobs), "reasoning")
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for arm, question in pending:
                body = request_body(arm, question, args)
                headers = {} if arm == "router" else auth
                try:
                    reply = await stream_chat(session, urls[arm], body, headers, args.timeout)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    reply = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
                store.append(score(question, arm, reply))
                progress.update(note=f"{arm} {question.id}")

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    progress.close()


def _print_summary(summary: dict[str, Any]) -> None:
    print("| arm | n | accuracy | completion tokens (mean) | TTFT p50 ms | latency p50 / p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for arm, row in summary["arms"].items():
        accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
        ttft, latency = row["ttft"], row["latency"]
        print(
            f"| {arm} | {row['n']} | {accuracy} | {row['completion_tokens']['mean']} | "
            f"{ttft['p50_ms']} | {latency['p50_ms']} / {latency['p99_ms']} |"
        )
        if row["errors"] or row["missing"]:
            print(
                f"  ({arm}: {row['errors']} errors, {row['missing']} not yet asked)",
                file=sys.stderr,
            )


def run(args: argparse.Namespace) -> int:
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not arms or set(arms) - set(ARMS):
        raise BenchError(f"--arms: comma list of {', '.join(ARMS)}")
    if "router" in arms and not args.router:
        arms.remove("router")
        print("no --router URL: the routed arm is left out", file=sys.stderr)
    if not arms:
        raise BenchError("no arm left to run")
    if args.concurrency < 1:
        raise BenchError("--concurrency must be at least 1")
    questions = load_dataset(Path(args.dataset), args.split, args.limit)
    if not questions:
        raise BenchError(f"{args.dataset}: no questions (split {args.split})")
    output = Path(args.output)
    store = ResultStore(Path(args.results) if args.results else output.with_suffix(".jsonl"))
    urls = {"on": chat_url(args.endpoint), "off": chat_url(args.endpoint)}
    if args.router:
        urls["router"] = chat_url(args.router)
    jobs = [(arm, q) for q in questions for arm in arms if not store.done(arm, q.id)]
    skipped = len(questions) * len(arms) - len(jobs)
    if skipped:
        print(f"resuming: {skipped} answers already in {store.path}", file=sys.stderr)
    if jobs:
        asyncio.run(_run_jobs(jobs, urls, args, store))
    result = {
        "bench": "reasoning",
        "meta": run_metadata(),
        "settings": {
            "endpoint": args.endpoint,
            "model": args.model,
            "family": args.family,
            "effort": args.effort,
            "router": args.router,
            "dataset": args.dataset,
            "split": args.split,
            "limit": args.limit,
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "concurrency": args.concurrency,
            "system_prompt": SYSTEM_PROMPT,
            "results": str(store.path),
        },
        **summarise(store, questions, arms),
    }
    write_json(output, result)
    _print_summary(result)
    plot_path = Path(args.plot) if args.plot else output.with_suffix(".png")
    if plot(result, plot_path):
        print(f"plot → {plot_path}", file=sys.stderr)
    print(f"results → {output} (records: {store.path})", file=sys.stderr)
    return 0
