"""Observability end to end: `semrouter serve` (config/default.yaml) in front of the real
llama.cpp servers, its metrics read from /metrics, its spans exported with the OpenTelemetry
SDK's OTLP/HTTP exporter (configured only by OTEL_* variables) into a receiver this test runs,
its request log read from its stderr, and a recording tap in front of the fast backend that
shows what the backend received (x-request-id, traceparent)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.client import call, chat
from tests.e2e.conftest import Tap, start_semrouter
from tests.servers import free_port

pytestmark = pytest.mark.e2e

GREETING = "hi! how are you today?"
STAGES = ("parse", "encode", "signals", "decide", "rewrite", "cache")


class OtlpReceiver:
    """An OTLP/HTTP trace receiver (POST /v1/traces, protobuf) in a thread: keeps every span
    with its resource's service.name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    for resource_spans in request.resource_spans:
                        service = next(
                            a.value.string_value
                            for a in resource_spans.resource.attributes
                            if a.key == "service.name"
                        )
                        for scope_spans in resource_spans.scope_spans:
                            receiver.spans.extend((service, s) for s in scope_spans.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def trace_of(self, request_id: str, timeout_s: float = 20.0) -> list[Span]:
        """Every span of the trace whose request span has this request id (once it came)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                roots = [
                    s for _, s in self.spans if _attribute(s, "semrouter.request_id") == request_id
                ]
                if roots:
                    trace_id = roots[0].trace_id
                    spans = [s for _, s in self.spans if s.trace_id == trace_id]
                    if any(s.name.startswith("chat ") for s in spans):
                        return spans
            time.sleep(0.1)
        raise TimeoutError(f"no trace for request {request_id} after {timeout_s}s")

    def stop(self) -> None:
        self.server.shutdown()


def _attribute(span: Span, key: str) -> Any:
    for attribute in span.attributes:
        if attribute.key == key:
            value = attribute.value
            return getattr(value, value.WhichOneof("value"))
    return None


@dataclass
class Router:
    url: str
    log: Path
    tap: Tap
    receiver: OtlpReceiver


@pytest.fixture(scope="module")
def router(llama_backends: dict[str, str], log_dir: Path) -> Iterator[Router]:
    tap = Tap(llama_backends["fast"])
    receiver = OtlpReceiver()
    port = free_port()
    log = log_dir / "semrouter-observe.log"
    env = {
        "SEMROUTER_FAST_URL": tap.url,
        "SEMROUTER_REASONER_URL": llama_backends["reasoner"],
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "semrouter-e2e",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    process = start_semrouter(
        ["serve", "--config", "config/default.yaml", "--port", str(port)],
        env,
        log,
        f"http://127.0.0.1:{port}/ready",
    )
    try:
        yield Router(f"http://127.0.0.1:{port}", log, tap, receiver)
    finally:
        process.terminate()
        process.wait(10)
        tap.stop()
        receiver.stop()


@dataclass
class Exchanges:
    """One JSON and one SSE request through the router, as the client saw them."""

    json_headers: dict[str, str]
    json_body: dict[str, Any]
    sse_headers: dict[str, str]
    sse_events: list[dict[str, Any]]
    backend_headers: dict[str, str]  # what the fast backend received for the JSON request


@pytest.fixture(scope="module")
def exchanges(router: Router) -> Exchanges:
    sent = len(router.tap.headers)
    status, json_headers, raw = call(
        router.url, chat(GREETING), headers={"x-request-id": "e2e-json"}
    )
    assert status == 200, raw
    backend_headers = router.tap.headers[sent]
    request = urllib.request.Request(
        router.url + "/v1/chat/completions",
        data=json.dumps(chat(GREETING, stream=True)).encode(),
        headers={"content-type": "application/json", "x-request-id": "e2e-sse"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        sse_headers = {k.lower(): v for k, v in response.headers.items()}
        lines = [line[6:].strip() for line in response if line.startswith(b"data: ")]
    assert lines[-1] == b"[DONE]"
    events = [json.loads(line) for line in lines[:-1]]
    return Exchanges(json_headers, json.loads(raw), sse_headers, events, backend_headers)


def samples(router: Router) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, _, raw = call(router.url, path="/metrics", method="GET")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(raw.decode())
        for sample in family.samples
    }


def test_metrics_of_json_and_sse_requests_carry_model_and_decision(
    router: Router, exchanges: Exchanges
) -> None:
    decision = exchanges.json_headers["x-semrouter-decision"]
    assert exchanges.json_headers["x-semrouter-model"] == "fast"
    assert exchanges.sse_headers["x-semrouter-decision"] == decision
    assert exchanges.json_headers["x-request-id"] == "e2e-json"
    assert exchanges.sse_headers["x-request-id"] == "e2e-sse"
    found = samples(router)
    model = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "fast",
             "semrouter_decision": decision}  # fmt: skip

    def value(name: str, **labels: str) -> float:
        return found.get((name, frozenset(labels.items())), 0.0)

    # Tokens: what the backend reported in usage, JSON and SSE alike (llama-cpp-python's
    # streams carry none, so only responses that do count).
    reports = [exchanges.json_body["usage"]] + [
        e["usage"] for e in exchanges.sse_events if e.get("usage")
    ]
    prompt = sum(u["prompt_tokens"] for u in reports)
    completion = sum(u["completion_tokens"] for u in reports)
    assert prompt > 0 and completion > 0
    tokens = {"model": "fast", "decision": decision}
    assert value("semrouter_tokens_total", type="prompt", **tokens) == prompt
    assert value("semrouter_tokens_total", type="completion", **tokens) == completion
    usage = "gen_ai_client_token_usage"
    assert value(f"{usage}_count", **model, gen_ai_token_type="input") == len(reports)
    assert value(f"{usage}_sum", **model, gen_ai_token_type="output") == completion
    # The stream: time to its first chunk, and per output token after it.
    ttft = "gen_ai_server_time_to_first_token_seconds"
    assert value(f"{ttft}_count", **model) == 1
    assert 0 < value(f"{ttft}_sum", **model) < 60
    assert value("gen_ai_server_time_per_output_token_seconds_count", **model) == 1
    duration = {**model, "gen_ai_response_model": "smollm2-fast"}
    assert value("gen_ai_client_operation_duration_seconds_count", **duration) == 2
    assert value("gen_ai_client_operation_duration_seconds_sum", **duration) >= value(
        f"{ttft}_sum", **model
    )
    for stage in STAGES:
        assert value("semrouter_stage_seconds_count", stage=stage) == 2, stage
        assert value("semrouter_stage_seconds_bucket", stage=stage, le="+Inf") == 2, stage
    assert value("semrouter_requests_total", decision=decision, model="fast", reasoning="off") == 2


def test_spans_reach_the_otlp_receiver_and_traceparent_the_backend(
    router: Router, exchanges: Exchanges
) -> None:
    spans = router.receiver.trace_of("e2e-json")
    by_name = {s.name: s for s in spans}
    root = by_name["semrouter.request"]
    assert root.kind == Span.SPAN_KIND_SERVER
    assert _attribute(root, "semrouter.decision") == exchanges.json_headers["x-semrouter-decision"]
    assert _attribute(root, "semrouter.model") == "fast"
    assert _attribute(root, "http.response.status_code") == 200
    for stage in STAGES:
        span = by_name[f"semrouter.stage.{stage}"]
        parent = by_name["semrouter.stage.signals"] if stage == "encode" else root
        assert span.parent_span_id == parent.span_id, stage
        assert root.start_time_unix_nano <= span.start_time_unix_nano <= span.end_time_unix_nano
    upstream = by_name["chat smollm2-fast"]
    assert upstream.kind == Span.SPAN_KIND_CLIENT
    assert upstream.parent_span_id == root.span_id
    assert _attribute(upstream, "gen_ai.request.model") == "smollm2-fast"
    usage = exchanges.json_body["usage"]
    assert _attribute(upstream, "gen_ai.usage.input_tokens") == usage["prompt_tokens"]
    services = {service for service, s in router.receiver.spans if s.trace_id == root.trace_id}
    assert services == {"semrouter-e2e"}
    # The backend got the call span's context, and the request id.
    sent = exchanges.backend_headers
    version, trace_id, parent_id, flags = sent["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", root.trace_id.hex(), upstream.span_id.hex())
    assert int(flags, 16) & 1  # sampled (the SDK may also set the random-trace-id flag, 02)
    assert sent["x-request-id"] == "e2e-json"


def test_one_json_log_line_per_request_without_content(
    router: Router, exchanges: Exchanges
) -> None:
    deadline = time.monotonic() + 10
    lines: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and not {"e2e-json", "e2e-sse"} <= lines.keys():
        for text in router.log.read_text().splitlines():
            if text.startswith("{"):
                line = json.loads(text)
                lines[line.get("request_id", "")] = line
        time.sleep(0.2)
    json_line, sse_line = lines["e2e-json"], lines["e2e-sse"]
    assert (json_line["status"], json_line["error"], json_line["stream"]) == (200, None, False)
    assert json_line["decision"] == exchanges.json_headers["x-semrouter-decision"]
    assert (json_line["model"], json_line["reasoning"]) == ("fast", "off")
    assert json_line["usage"]["prompt_tokens"] == exchanges.json_body["usage"]["prompt_tokens"]
    assert set(json_line["latency"]["stages_ms"]) >= set(STAGES)
    assert json_line["trace_id"] == router.receiver.trace_of("e2e-json")[0].trace_id.hex()
    assert sse_line["stream"] is True and sse_line["latency"]["ttft_ms"] > 0
    for line in (json_line, sse_line):
        assert GREETING not in json.dumps(line)
        assert "content" not in line
