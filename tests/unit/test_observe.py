"""semrouter.observe: usage parsing, stage timings, request ids, the request log, tracing, and
both transports' metrics, log lines and spans against the stand-in backend (no model needed)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, Counter, generate_latest

from semrouter.bench.standin import STREAM_WORDS, StandIn, start_standin
from semrouter.config import parse_config
from semrouter.config.schema import ObserveConfig, RouterConfig
from semrouter.extproc.envoy_config import bootstrap
from semrouter.extproc.server import ExtProcServicer
from semrouter.observe import Observer, Timings, request_id, timed, tracing_wanted
from semrouter.observe import timing as timing_module
from semrouter.observe.requestlog import RequestLog
from semrouter.observe.timing import CURRENT_TIMINGS
from semrouter.observe.tracing import Tracing, TracingError
from semrouter.observe.usage import StreamUsage, Usage, usage_in
from semrouter.pipeline.flow import Pipeline
from semrouter.pipeline.router import Router
from semrouter.proxy.app import ProxyApp
from tests.conftest import minimal_config
from tests.servers import serving
from tests.unit.test_extproc import (
    OPTIONS,
    drive,
    mutations,
    request_body,
    request_headers,
    response_body,
    response_headers,
)
from tests.unit.test_extproc import chat as extproc_chat
from tests.unit.test_proxy import chat

JSON_WITH_QUOTED_USAGE = (
    b'{"choices":[{"message":{"content":"the \\"usage\\": {\\"prompt_tokens\\": 99}"}}],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":7,'
    b'"completion_tokens_details":{"reasoning_tokens":3}}}'
)
STREAM = (
    b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
    b'data: {"choices":[{"delta":{"content":"!"}}],"usage":null}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)


# --- usage ----------------------------------------------------------------------------------


def test_usage_of_a_json_body_is_its_usage_key_not_quoted_text() -> None:
    assert usage_in(JSON_WITH_QUOTED_USAGE) == Usage(5, 7, 3)
    assert usage_in(b'{"choices":[]}') is None
    assert usage_in(b'{"usage":null}') is None
    assert usage_in(b'{"usage":{"prompt_tokens":"many","completion_tokens":-3}}') == Usage(0, 0, 0)


def test_stream_usage_is_found_however_the_stream_is_split() -> None:
    for size in range(1, len(STREAM) + 1):
        scan = StreamUsage(4096)
        for start in range(0, len(STREAM), size):
            scan.feed(STREAM[start : start + size])
        assert scan.usage == Usage(9, 2, 0), size
        assert scan.deltas == 2, size


def test_stream_usage_holds_at_most_its_limit_of_a_never_ending_object() -> None:
    scan = StreamUsage(1024)
    scan.feed(b'data: {"usage":{"prompt_tokens":1,')
    for _ in range(1000):
        scan.feed(b'{"a":' * 200)
        assert scan.held <= 1024 + 1000
    assert scan.usage is None
    scan.feed(b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":1}}\n\n')
    assert scan.usage == Usage(4, 1, 0)


# --- timings, request ids, tracing switch ----------------------------------------------------


def test_nested_stages_keep_their_own_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0, 10, 15, 40, 100, 103]).__next__
    monkeypatch.setattr(timing_module.time, "perf_counter_ns", clock)
    timings = Timings()
    token = CURRENT_TIMINGS.set(timings)
    try:
        with timed("signals"), timed("encode"):  # signals 0 .. 40, encode 10 .. 15
            pass
        with timed("decide"):  # 100 .. 103
            pass
    finally:
        CURRENT_TIMINGS.reset(token)
    assert timings.own_seconds() == {"signals": 35e-9, "encode": 5e-9, "decide": 3e-9}
    assert [s.parent for s in timings.stages] == [-1, 0, -1]


def test_timed_outside_a_request_records_nothing() -> None:
    with timed("encode"):
        pass
    assert CURRENT_TIMINGS.get() is None


def test_request_id_is_honoured_when_sane_else_generated() -> None:
    assert request_id({"x-request-id": "abc-123_x.y"}) == "abc-123_x.y"
    for hostile in ("a" * 129, "two words", "line\nbreak", "", "ünï"):
        generated = request_id({"x-request-id": hostile})
        assert str(uuid.UUID(generated)) == generated
    assert request_id({}) != request_id({})


@pytest.mark.parametrize(
    ("mode", "env", "wanted"),
    [
        ("auto", {}, False),
        ("auto", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, True),
        ("auto", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ("auto", {"OTEL_TRACES_EXPORTER": "console"}, True),
        ("auto", {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}, False),
        ("auto", {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}, False),
        ("on", {}, True),
        ("off", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_tracing_is_on_when_otel_variables_say_where_to(
    mode: str, env: dict[str, str], wanted: bool
) -> None:
    assert tracing_wanted(mode, env) is wanted


def test_tracing_exporters_from_the_environment() -> None:
    Tracing.from_env({"OTEL_TRACES_EXPORTER": "console"}).shutdown()
    Tracing.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}).shutdown()
    with pytest.raises(TracingError, match="unknown exporter 'zipkin'"):
        Tracing.from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(TracingError, match="protocol 'http/json'"):
        Tracing.from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_tracing_off_never_loads_the_sdk() -> None:
    """A request through the pipeline, tracing off: the OpenTelemetry SDK stays unimported."""
    # (the redis client imports opentelemetry.sdk.metrics for its own metrics when installed)
    script = (
        "import asyncio, sys\n"
        "TRACING = ('opentelemetry.sdk.trace', 'opentelemetry.exporter', "
        "'semrouter.observe.tracing')\n"
        "from semrouter.config import parse_config\n"
        "from semrouter.pipeline.flow import Pipeline\n"
        "from semrouter.pipeline.router import Router\n"
        "from tests.conftest import minimal_config\n"
        "pipeline = Pipeline(Router(parse_config(minimal_config(), env={})))\n"
        "headers = {'traceparent': '00-' + '1' * 32 + '-' + '2' * 16 + '-01'}\n"
        "observation = pipeline.observer.begin(headers, 'http')\n"
        "async def go():\n"
        "    with observation.active():\n"
        '        await pipeline.prepare(b\'{"model":"auto","messages":[{"role":"user",'
        '"content":"hi"}]}\', headers)\n'
        "asyncio.run(go())\n"
        "observation.finish(200)\n"
        "print(len(observation.timings.stages))\n"
        "print(sorted(m for m in sys.modules if m.startswith(TRACING)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    stages, modules = done.stdout.split("\n")[:2]
    assert int(stages) >= 3  # the request was routed (parse, signals, decide, ...)
    assert modules == "[]"


# --- the request log ----------------------------------------------------------------------


def test_request_log_queue_is_bounded_and_counts_what_it_drops() -> None:
    registry = CollectorRegistry()
    dropped = Counter("dropped", "test", registry=registry)
    stream = io.BytesIO()
    log = RequestLog(5, dropped, stream)
    for i in range(12):  # the writer is not running: the queue fills up
        log.write(b'{"n":%d}' % i)
    assert registry.get_sample_value("dropped_total") == 7
    log.start()
    log.close()
    assert [json.loads(line)["n"] for line in stream.getvalue().splitlines()] == [0, 1, 2, 3, 4]


# --- the HTTP proxy ------------------------------------------------------------------------


def observed_config(backend: str, **observe: Any) -> RouterConfig:
    data = minimal_config()
    for model in data["models"]:
        model["endpoints"] = [{"url": f"{backend}/v1"}]
    data["observe"] = observe
    return parse_config(data, env={})


class Observed:
    """A proxy against a recording stand-in, its log lines and (optionally) its spans."""

    def __init__(self, app: ProxyApp, backend: StandIn, url: str) -> None:
        self.app, self.backend, self.url = app, backend, url
        self.log = io.BytesIO()
        self.spans = InMemorySpanExporter()
        observer = app.pipeline.observer
        observer.log = RequestLog(100, observer.metrics.log_dropped, self.log)

    def trace(self) -> None:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.app.pipeline.observer.tracing = Tracing(provider)

    def lines(self) -> list[dict[str, Any]]:
        self.app.pipeline.observer.log.close()  # type: ignore[union-attr]
        return [json.loads(line) for line in self.log.getvalue().splitlines()]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.app.pipeline.metrics.registry.get_sample_value(name, labels)

    async def post(
        self, payload: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.url + "/v1/chat/completions", json=payload, headers=headers
            ) as response,
        ):
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, headers, await response.read()


@pytest.fixture
async def standin() -> AsyncIterator[tuple[StandIn, str]]:
    backend = StandIn(record=True, think_tokens=2)
    runner, port = await start_standin(backend)
    yield backend, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def observed(
    standin: tuple[StandIn, str], trace: bool = False, **observe: Any
) -> AsyncIterator[Observed]:
    app = ProxyApp(Router(observed_config(standin[1], **observe)))
    proxy = Observed(app, standin[0], "")
    if trace:
        proxy.trace()
    async with serving(app.app) as url:
        proxy.url = url
        yield proxy


@pytest.fixture
async def proxy(standin: tuple[StandIn, str]) -> AsyncIterator[Observed]:
    async for observed_proxy in observed(standin):
        yield observed_proxy


@pytest.fixture
async def traced(standin: tuple[StandIn, str]) -> AsyncIterator[Observed]:
    async for observed_proxy in observed(standin, trace=True, log_content=True):
        yield observed_proxy


LABELS = {"gen_ai_operation_name": "chat", "gen_ai_request_model": "reasoner"}
MATH = {**LABELS, "semrouter_decision": "math"}
THINK_TOKENS = 2
COMPLETION = THINK_TOKENS + len(STREAM_WORDS)


async def test_proxy_records_tokens_stages_and_durations_of_json_and_streams(
    proxy: Observed,
) -> None:
    status, _, body = await proxy.post(chat("prove it"))
    assert status == 200
    usage = json.loads(body)["usage"]
    stream = chat("prove it again", stream=True, stream_options={"include_usage": True})
    status, _, _ = await proxy.post(stream)
    assert status == 200
    await proxy.post(chat("prove it", stream=True))  # no usage asked for: none reported
    assert proxy.sample("semrouter_tokens_total", type="prompt", model="reasoner", decision="math")
    completion = proxy.sample(
        "semrouter_tokens_total", type="completion", model="reasoner", decision="math"
    )
    assert completion == usage["completion_tokens"] + COMPLETION
    tokens = {**MATH, "gen_ai_token_type": "output"}
    assert proxy.sample("gen_ai_client_token_usage_count", **tokens) == 2
    assert proxy.sample("gen_ai_client_token_usage_sum", **tokens) == completion
    assert proxy.sample("gen_ai_server_time_to_first_token_seconds_count", **MATH) == 2
    assert proxy.sample("gen_ai_server_time_per_output_token_seconds_count", **MATH) == 2
    duration = {**MATH, "gen_ai_response_model": "qwen3-id"}
    assert proxy.sample("gen_ai_client_operation_duration_seconds_count", **duration) == 3
    for stage in ("parse", "signals", "decide", "rewrite"):
        assert proxy.sample("semrouter_stage_seconds_count", stage=stage) == 3, stage
    exposition = generate_latest(proxy.app.pipeline.metrics.registry).decode()
    assert 'gen_ai_server_time_to_first_token_seconds_bucket{gen_ai_operation_name="chat"' in (
        exposition
    )


async def test_proxy_request_id_is_honoured_returned_and_sent_to_the_backend(
    proxy: Observed,
) -> None:
    _, headers, _ = await proxy.post(chat("hello"), {"x-request-id": "client-id-1"})
    assert headers["x-request-id"] == "client-id-1"
    assert proxy.backend.headers[-1]["x-request-id"] == "client-id-1"
    _, headers, _ = await proxy.post(chat("hello"), {"x-request-id": "no spaces allowed"})
    generated = headers["x-request-id"]
    assert str(uuid.UUID(generated)) == generated
    assert proxy.backend.headers[-1]["x-request-id"] == generated
    status, headers, _ = await proxy.post({"model": "auto"}, {"x-request-id": "bad-1"})
    assert status == 400 and headers["x-request-id"] == "bad-1"
    # Tracing off: the client's own trace context reaches the backend unchanged.
    parent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    await proxy.post(chat("hello"), {"traceparent": parent, "tracestate": "k=v"})
    assert proxy.backend.headers[-1]["traceparent"] == parent
    assert proxy.backend.headers[-1]["tracestate"] == "k=v"


async def test_proxy_log_lines_one_per_request_without_content(proxy: Observed) -> None:
    await proxy.post(chat("prove the secret integral"), {"x-request-id": "r1"})
    await proxy.post({"model": "auto"}, {"x-request-id": "r2"})
    first, second = proxy.lines()
    assert first["request_id"] == "r1"
    assert (first["status"], first["error"], first["transport"]) == (200, None, "http")
    assert (first["decision"], first["model"], first["reasoning"]) == ("math", "reasoner", "on")
    assert first["signals"] == ["math_words"]
    assert first["route"]["decision"] == "math"
    assert first["usage"]["completion_tokens"] == COMPLETION
    assert first["latency"]["total_ms"] > 0
    assert set(first["latency"]["stages_ms"]) >= {"parse", "signals", "decide", "rewrite"}
    assert "secret" not in json.dumps(first)
    assert (second["request_id"], second["status"]) == ("r2", 400)
    assert second["error"] == "missing_messages"
    assert second["decision"] is None


async def test_proxy_spans_stages_and_the_backend_call_with_traceparent(traced: Observed) -> None:
    client_trace = "c" * 32
    parent = f"00-{client_trace}-{'d' * 16}-01"
    stream = chat("prove the integral", stream=True, stream_options={"include_usage": True})
    await traced.post(stream, {"traceparent": parent})
    spans: dict[str, ReadableSpan] = {s.name: s for s in traced.spans.get_finished_spans()}
    root = spans["semrouter.request"]
    upstream = spans["chat qwen3-id"]
    assert root.context is not None and upstream.context is not None
    assert format(root.context.trace_id, "032x") == client_trace
    assert root.parent is not None and format(root.parent.span_id, "016x") == "d" * 16
    assert root.attributes is not None and upstream.attributes is not None
    assert root.attributes["semrouter.decision"] == "math"
    assert root.attributes["semrouter.model"] == "reasoner"
    assert tuple(root.attributes["semrouter.signals.fired"]) == ("math_words",)  # type: ignore[arg-type]
    assert upstream.attributes["gen_ai.request.model"] == "qwen3-id"
    assert upstream.attributes["gen_ai.usage.output_tokens"] == COMPLETION
    assert [e.name for e in upstream.events] == ["first_chunk"]
    for stage in ("parse", "signals", "decide", "rewrite"):
        span = spans[f"semrouter.stage.{stage}"]
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert span.start_time is not None and root.start_time is not None
        assert span.start_time >= root.start_time
    sent = traced.backend.headers[-1]["traceparent"]
    assert sent == f"00-{client_trace}-{format(upstream.context.span_id, '016x')}-01"
    (line,) = traced.lines()
    assert line["trace_id"] == client_trace
    assert line["content"] == "prove the integral"  # log_content: true
    assert line["latency"]["ttft_ms"] > 0


async def test_observe_off_adds_no_header_and_records_no_genai_series(
    standin: tuple[StandIn, str],
) -> None:
    async for proxy in observed(standin, enabled=False):
        status, headers, _ = await proxy.post(chat("prove it"), {"x-request-id": "c-1"})
        assert status == 200
        assert "x-request-id" not in headers
        assert proxy.backend.headers[-1]["x-request-id"] == "c-1"  # passed on, as any header
        assert proxy.sample("semrouter_requests_total", decision="math", model="reasoner",
                            reasoning="on") == 1  # fmt: skip
        assert proxy.sample("semrouter_stage_seconds_count", stage="parse") is None
        assert proxy.lines() == []


# --- the ext_proc server -------------------------------------------------------------------


@pytest.fixture
def extproc_pipeline() -> Iterator[tuple[ExtProcServicer, io.BytesIO]]:
    data = minimal_config()
    data["observe"] = {"extproc_responses": True}
    pipeline = Pipeline(Router(parse_config(data, env={})))
    log = io.BytesIO()
    pipeline.observer.log = RequestLog(100, pipeline.observer.metrics.log_dropped, log)
    yield ExtProcServicer(pipeline), log


def sse_chunks() -> list[bytes]:
    return [STREAM[:30], STREAM[30:95], STREAM[95:]]


async def test_extproc_times_the_response_it_streams(
    extproc_pipeline: tuple[ExtProcServicer, io.BytesIO],
) -> None:
    servicer, log = extproc_pipeline
    raw = extproc_chat("prove this integral converges", stream=True)
    chunks = sse_chunks()
    replies = await drive(
        servicer,
        [
            request_headers(**{"x-request-id": "envoy-id"}),
            request_body(raw),
            response_headers("text/event-stream"),
            *(response_body(c, end=i == len(chunks) - 1) for i, c in enumerate(chunks)),
        ],
    )
    assert mutations(replies[1].request_body.response)["x-request-id"] == "envoy-id"
    assert replies[2].mode_override.response_body_mode == 1  # STREAMED: the body comes here
    registry = servicer.pipeline.metrics.registry
    assert registry.get_sample_value("gen_ai_server_time_to_first_token_seconds_count", MATH) == 1
    tokens = {**MATH, "gen_ai_token_type": "input"}
    assert registry.get_sample_value("gen_ai_client_token_usage_sum", tokens) == 9
    assert registry.get_sample_value("semrouter_stage_seconds_count", {"stage": "signals"}) == 1
    servicer.pipeline.observer.log.close()  # type: ignore[union-attr]
    (line,) = [json.loads(x) for x in log.getvalue().splitlines()]
    assert (line["request_id"], line["transport"], line["status"]) == ("envoy-id", "extproc", 200)
    assert line["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "reasoning_tokens": 0}


async def test_extproc_without_the_response_logs_no_status_and_no_duration(
    extproc_pipeline: tuple[ExtProcServicer, io.BytesIO],
) -> None:
    servicer, log = extproc_pipeline
    await drive(servicer, [request_headers(), request_body(extproc_chat("prove it"))])
    registry = servicer.pipeline.metrics.registry
    duration = {**MATH, "gen_ai_response_model": "qwen3-id"}
    assert (
        registry.get_sample_value("gen_ai_client_operation_duration_seconds_count", duration)
        == 0  # the series exists (the route was seen), nothing observed
    )
    assert registry.get_sample_value("semrouter_stage_seconds_count", {"stage": "decide"}) == 1
    servicer.pipeline.observer.log.close()  # type: ignore[union-attr]
    (line,) = [json.loads(x) for x in log.getvalue().splitlines()]
    assert line["status"] is None and line["latency"]["total_ms"] is None
    assert line["decision"] == "math"


async def test_extproc_error_is_logged_with_its_code(
    extproc_pipeline: tuple[ExtProcServicer, io.BytesIO],
) -> None:
    servicer, log = extproc_pipeline
    await drive(servicer, [request_headers(), request_body(b"not json")])
    servicer.pipeline.observer.log.close()  # type: ignore[union-attr]
    (line,) = [json.loads(x) for x in log.getvalue().splitlines()]
    assert (line["status"], line["error"]) == (400, "invalid_json")


def test_envoy_keeps_and_returns_request_ids_and_sends_responses_when_asked() -> None:
    data = minimal_config()
    plain = bootstrap(parse_config(data, env={}), OPTIONS)
    data["observe"] = {"extproc_responses": True}
    timed_responses = bootstrap(parse_config(data, env={}), OPTIONS)

    def manager_and_mode(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        listener = config["static_resources"]["listeners"][0]
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        return manager, manager["http_filters"][0]["typed_config"]["processing_mode"]

    manager, mode = manager_and_mode(plain)
    assert manager["preserve_external_request_id"] is True
    assert manager["always_set_request_id_in_response"] is True
    assert mode["response_header_mode"] == "SKIP"
    assert manager_and_mode(timed_responses)[1]["response_header_mode"] == "SEND"


def test_observe_config_is_validated() -> None:
    with pytest.raises(ValueError, match="log_queue"):
        ObserveConfig(log_queue=0)
    with pytest.raises(ValueError, match="tracing"):
        ObserveConfig.model_validate({"tracing": "sometimes"})
    assert Observer(ObserveConfig(), CollectorRegistry()).tracing is None
