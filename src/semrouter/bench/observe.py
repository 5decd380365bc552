"""`semrouter bench observe`: what observability adds to one request, measured in-process.

The end-to-end `bench overhead --variant obs:SEMROUTER_OBSERVE=...` compares whole servers, and
on a small, shared machine its noise (milliseconds) hides a cost of microseconds. This bench
runs exactly what `semrouter.observe` adds to a request, in the order a transport does it:
`Observer.begin` (the request id), the stage timings of a routed request (`timed`: parse,
signals with encode inside, decide, rewrite, guards, tools, cache), `routed`,
`upstream_started`, `response_started`, every body chunk (`body`: the usage scan), and
`finish` (histograms, counters, the log line queued for its writer thread), for a JSON answer
(one body) and a stream (one chunk per token, usage in the last event).

Arms: `off` (observe.enabled false: the no-op observation), `on` (the default: metrics and
the request log, whose writer thread writes to /dev/null meanwhile), `traced` (plus tracing:
the SDK with a batch processor whose exporter discards). Rounds alternate the arms; the report
gives each arm's median time per request and the added time against `off`, per round and its
median (target: at most 0.3 ms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from semrouter.bench.common import Progress, run_metadata, write_json
from semrouter.config.schema import ObserveConfig
from semrouter.observe import Observer, timed
from semrouter.observe.requestlog import RequestLog

TARGET_MS = 0.3
ARMS = ("off", "on", "traced")
HEADERS = {"content-type": "application/json", "x-request-id": "bench-request-1"}
ROUTE_HEADERS = {
    "x-semrouter-model": "fast",
    "x-semrouter-decision": "small_talk",
    "x-semrouter-domain": "other",
    "x-semrouter-reasoning": "off",
    "x-semrouter-route-ms": "9.10",
    "x-semrouter-cache": "miss",
}
STAGES = ("guards", "tools", "cache")


def _event(text: str) -> bytes:
    return (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"' + text.encode() + b'"},'
        b'"finish_reason":null}]}\n\n'
    )


def responses(tokens: int) -> dict[str, tuple[str, list[bytes]]]:
    """The backend's body, as the transport's chunks: a JSON answer and a stream."""
    usage = b'{"prompt_tokens":40,"completion_tokens":%d,"total_tokens":%d}' % (tokens, tokens + 40)
    answer = b" word" * tokens
    body = (
        b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":'
        b'[{"index":0,"message":{"role":"assistant","content":"' + answer + b'"},'
        b'"finish_reason":"stop"}],"usage":' + usage + b"}"
    )
    stream = [_event(" word") for _ in range(tokens)]
    stream.append(b'data: {"id":"chatcmpl-1","choices":[],"usage":' + usage + b"}\n\n")
    stream.append(b"data: [DONE]\n\n")
    return {
        "json": ("application/json", [body]),
        "stream": ("text/event-stream", stream),
    }


def one_request(observer: Observer, content_type: str, chunks: Sequence[bytes]) -> None:
    observation = observer.begin(HEADERS, "http")
    with observation.active():
        with timed("parse"):
            pass
        with timed("signals"), timed("encode"):
            pass
        with timed("decide"):
            pass
        with timed("rewrite"):
            pass
        for stage in STAGES:
            with timed(stage):
                pass
        observation.routed("small_talk", "fast", "smollm2-fast", ("greeting",), ROUTE_HEADERS)
    observation.upstream_started()
    observation.response_started(200, content_type)
    for chunk in chunks:
        observation.body(chunk)
    observation.finish()


def _observer(arm: str, sink: Any) -> Observer:
    config = ObserveConfig(enabled=arm != "off", tracing="off")
    observer = Observer(config, CollectorRegistry(), env={})
    if observer.log is not None:
        observer.log = RequestLog(config.log_queue, observer.metrics.log_dropped, sink)
    if arm == "traced":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        from semrouter.observe.tracing import Tracing

        class Discard(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Discard()))
        observer.tracing = Tracing(provider)
    observer.start()
    return observer


def _median_us(func: Callable[[], None], requests: int) -> float:
    times = []
    for _ in range(requests):
        started = time.perf_counter_ns()
        func()
        times.append(time.perf_counter_ns() - started)
    return statistics.median(times) / 1000


def run(args: argparse.Namespace) -> int:
    kinds = responses(args.tokens)
    results: dict[str, dict[str, list[float]]] = {k: {a: [] for a in ARMS} for k in kinds}
    with open(os.devnull, "wb") as sink:
        observers = {arm: _observer(arm, sink) for arm in ARMS}
        progress = Progress(args.rounds * len(kinds) * len(ARMS), "observe")
        for round_number in range(args.rounds):
            order = ARMS[round_number % len(ARMS) :] + ARMS[: round_number % len(ARMS)]
            for kind, (content_type, chunks) in kinds.items():
                for arm in order:
                    observer = observers[arm]

                    def request(
                        o: Observer = observer, kind: str = content_type, body: list[bytes] = chunks
                    ) -> None:
                        one_request(o, kind, body)

                    for _ in range(args.warmup):
                        request()
                    results[kind][arm].append(_median_us(request, args.requests))
                    progress.update(note=f"{kind} {arm}")
        progress.close()
        for observer in observers.values():
            observer.close()
    report = _report(results, args)
    write_json(Path(args.output), report)
    print(_markdown(report))
    return 0


def _report(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> dict[str, Any]:
    scenarios: dict[str, Any] = {}
    for kind, arms in results.items():
        scenarios[kind] = {
            arm: {
                "median_us": round(statistics.median(rounds), 2),
                "added_us": None
                if arm == "off"
                else round(
                    statistics.median(a - o for a, o in zip(rounds, arms["off"], strict=True)), 2
                ),
                "rounds_us": [round(r, 2) for r in rounds],
            }
            for arm, rounds in arms.items()
        }
    meta = run_metadata(
        rounds=args.rounds, requests=args.requests, tokens=args.tokens, load=os.getloadavg()
    )
    return {"meta": meta, "target_ms": TARGET_MS, "scenarios": scenarios}


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "| response | arm | per request, µs (median of rounds) | added vs off, µs | ≤ 0.3 ms |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for kind, arms in report["scenarios"].items():
        for arm, row in arms.items():
            added = row["added_us"]
            verdict = "-" if added is None else ("yes" if added <= TARGET_MS * 1000 else "NO")
            shown = "-" if added is None else f"{added:.1f}"
            lines.append(f"| {kind} | {arm} | {row['median_us']:.1f} | {shown} | {verdict} |")
    return "\n".join(lines)
