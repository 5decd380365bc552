"""What the router observes of each request: one `Observation` from arrival to last byte.

A transport calls `Observer.begin` when a chat request arrives, runs the pipeline inside
`Observation.active()` (so `timed` stages land in the request's timings), and reports the
backend call (`upstream_started`, `response_started`, each body chunk as it passes, before any
rewriting) and the end (`finish`, once: the status, or the error code). `finish` records the
metrics, writes the request's log line and ends its spans. The pipeline reports the route
(`routed`) through `current_observation()`.

With `observe.enabled: false` `begin` returns `NO_OBSERVATION`, whose methods do nothing.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry

from semrouter.config.schema import ObserveConfig
from semrouter.observe.metrics import OPERATION, ObserveMetrics
from semrouter.observe.requestlog import RequestLog
from semrouter.observe.timing import CURRENT_TIMINGS, Timings
from semrouter.observe.usage import StreamUsage, Usage

if TYPE_CHECKING:
    from semrouter.observe.tracing import RequestTrace, Tracing

REQUEST_ID_HEADER = "x-request-id"
TRACE_HEADERS = ("traceparent", "tracestate")
PROPAGATED_HEADERS = (REQUEST_ID_HEADER, *TRACE_HEADERS)
"""What a transport passes on to the backend (from `Observation.upstream_started`)."""
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=\-]{1,128}")
_ROUTE_PREFIX = "x-semrouter-"


def tracing_wanted(mode: str, env: Mapping[str, str]) -> bool:
    """`observe.tracing`: on, off, or auto: on when the OTEL_* variables name an exporter or an
    OTLP endpoint; OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none turn it off."""
    if mode == "off" or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if exporters == "none":
        return False
    if mode == "on":
        return True
    return bool(
        exporters
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def request_id(headers: Mapping[str, str]) -> str:
    """The client's x-request-id when it is a sane token (at most 128 URL-safe characters),
    else a new UUID."""
    given = headers.get(REQUEST_ID_HEADER)
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    return str(uuid.uuid4())


class Observer:
    """The observability of one router process: its metrics, request log and tracer."""

    def __init__(
        self,
        config: ObserveConfig,
        registry: CollectorRegistry,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.metrics = ObserveMetrics(registry)
        self.log = (
            RequestLog(config.log_queue, self.metrics.log_dropped)
            if config.enabled and config.request_log
            else None
        )
        self._env = os.environ if env is None else env
        self.tracing: Tracing | None = None

    def start(self) -> None:
        """Start the log writer and, when tracing is wanted, the OpenTelemetry SDK (imported
        only then). Raises TracingError for an exporter that is not available."""
        if not self.config.enabled:
            return
        if self.log is not None:
            self.log.start()
        if self.tracing is None and tracing_wanted(self.config.tracing, self._env):
            from semrouter.observe.tracing import Tracing

            self.tracing = Tracing.from_env(self._env)

    def close(self) -> None:
        """Flush the log and the spans (blocks for a moment: call it off the event loop)."""
        if self.log is not None:
            self.log.close()
        if self.tracing is not None:
            self.tracing.shutdown()
            self.tracing = None

    def begin(self, headers: Mapping[str, str], transport: str) -> Observation:
        """A chat request arrived (headers by lowercase name)."""
        if not self.config.enabled:
            return NO_OBSERVATION
        return Observation(self, headers, transport)


_CURRENT: ContextVar[Observation | None] = ContextVar("semrouter_observation", default=None)


def current_observation() -> Observation | None:
    """The observation of the request the pipeline is preparing, if any."""
    return _CURRENT.get()


class Observation:
    """One request's timings, route, backend call and outcome."""

    def __init__(self, observer: Observer | None, headers: Mapping[str, str], transport: str):
        self._observer = observer
        self.transport = transport
        self.started_ns = time.perf_counter_ns()
        self.request_id = request_id(headers) if observer is not None else ""
        self.timings = Timings()
        self.decision: str | None = None
        self.model: str | None = None
        self.upstream_model: str | None = None
        self.fired: list[str] = []
        self.route_headers: Mapping[str, str] = {}
        self.content: str | None = None
        self.status: int | None = None
        self.stream = False
        self.upstream_ns: int | None = None
        self.first_chunk_ns: int | None = None
        self.usage: StreamUsage | None = None
        self.error: str | None = None
        self._finished = False
        self._client_trace = {k: headers[k] for k in TRACE_HEADERS if k in headers}
        tracing = observer.tracing if observer is not None else None
        self.trace: RequestTrace | None = (
            tracing.request(headers, time.time_ns()) if tracing is not None else None
        )

    @property
    def wants_content(self) -> bool:
        """Whether the log line carries the request's content (observe.log_content)."""
        return self._observer is not None and self._observer.config.log_content

    @contextmanager
    def active(self) -> Iterator[None]:
        """The pipeline's work in this block is this request's (timed stages, `routed`)."""
        timings = CURRENT_TIMINGS.set(self.timings)
        current = _CURRENT.set(self)
        try:
            yield
        finally:
            _CURRENT.reset(current)
            CURRENT_TIMINGS.reset(timings)

    def routed(
        self,
        decision: str,
        model: str,
        upstream_model: str,
        fired: Iterable[str],
        headers: Mapping[str, str],
        content: str | None = None,
    ) -> None:
        """The route: decision, model (its config name and the id the backend gets), the
        signals that fired, and the x-semrouter-* headers (read again at the end, when the
        stages have added theirs)."""
        self.decision, self.model, self.upstream_model = decision, model, upstream_model
        self.fired = sorted(fired)
        self.route_headers = headers
        if content is not None and self._observer is not None:
            self.content = content[: self._observer.config.max_logged_content_chars]

    def upstream_started(self) -> dict[str, str]:
        """The backend call begins: the headers it should carry (x-request-id; traceparent
        of the call's span when tracing, else the client's own traceparent and tracestate)."""
        self.upstream_ns = time.perf_counter_ns()
        headers = {REQUEST_ID_HEADER: self.request_id}
        if self.trace is not None and self.upstream_model is not None:
            attributes = self._upstream_attributes()
            headers.update(self.trace.start_upstream(self.upstream_model, attributes))
        else:
            headers.update(self._client_trace)
        return headers

    def response_started(self, status: int, content_type: str) -> None:
        self.status = status
        self.stream = content_type.startswith("text/event-stream")
        if self._observer is not None and 200 <= status < 300:
            self.usage = StreamUsage(self._observer.config.max_usage_bytes)

    def body(self, chunk: bytes) -> None:
        """The next chunk of the backend's body, as it arrived."""
        if self.first_chunk_ns is None and chunk:
            self.first_chunk_ns = time.perf_counter_ns()
        if self.usage is not None:
            self.usage.feed(chunk)

    def failed(self, code: str) -> None:
        """The request is answered with this error code (`PipelineMetrics.failed` says so)."""
        self.error = code

    def finish(
        self, status: int | None = None, error: str | None = None, complete: bool = True
    ) -> None:
        """The request ended: its status (None: the one `response_started` saw, if any),
        the error code it failed with (else the one `failed` noted); `complete`: False when
        the transport did not see the response end (ext_proc without the response body), so
        its duration is unknown. Only the first call counts."""
        if self._finished or self._observer is None:
            return
        self._finished = True
        error = error or self.error
        if status is not None:
            self.status = status
        ended = time.perf_counter_ns()
        observer = self._observer
        metrics = observer.metrics
        stages = self.timings.own_seconds()
        for stage, seconds in stages.items():
            metrics.stage(stage).observe(seconds)
        total_s = (ended - self.started_ns) / 1e9
        ttft_s = tpot_s = None
        usage = self.usage.usage if self.usage is not None else None
        if self.decision is not None and self.model is not None:
            series = metrics.route(self.model, self.decision, self.upstream_model or "")
            if complete and self.status is not None:
                series.duration.observe(total_s)
            if self.stream and self.first_chunk_ns is not None and self.upstream_ns is not None:
                ttft_s = (self.first_chunk_ns - self.upstream_ns) / 1e9
                series.time_to_first_token.observe(ttft_s)
                assert self.usage is not None
                tokens = usage.completion if usage is not None else self.usage.deltas
                if tokens > 1 and error is None and complete:
                    tpot_s = (ended - self.first_chunk_ns) / 1e9 / (tokens - 1)
                    series.time_per_output_token.observe(tpot_s)
            if usage is not None:
                series.input_tokens.observe(usage.prompt)
                series.output_tokens.observe(usage.completion)
                if usage.reasoning:
                    series.reasoning_tokens.observe(usage.reasoning)
                series.prompt.inc(usage.prompt)
                series.completion.inc(usage.completion)
                series.reasoning.inc(usage.reasoning)
        latency: dict[str, Any] = {
            "total_ms": round(total_s * 1000, 3) if complete else None,
            "stages_ms": {k: round(v * 1000, 3) for k, v in stages.items()},
        }
        if self.upstream_ns is not None:
            first = self.first_chunk_ns or ended
            latency["upstream_first_byte_ms"] = round((first - self.upstream_ns) / 1e6, 3)
        if ttft_s is not None:
            latency["ttft_ms"] = round(ttft_s * 1000, 3)
        if tpot_s is not None:
            latency["tpot_ms"] = round(tpot_s * 1000, 3)
        if self.trace is not None:
            self._end_trace(error, usage)
        if observer.log is not None:
            observer.log.write(orjson.dumps(self._log_line(error, latency, usage)))

    def _route(self) -> dict[str, str]:
        return {
            k.removeprefix(_ROUTE_PREFIX): v
            for k, v in self.route_headers.items()
            if k.startswith(_ROUTE_PREFIX)
        }

    def _log_line(
        self, error: str | None, latency: dict[str, Any], usage: Usage | None
    ) -> dict[str, Any]:
        line: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": self.request_id,
            "transport": self.transport,
            "status": self.status,
            "error": error,
            "decision": self.decision,
            "model": self.model,
            "reasoning": self.route_headers.get("x-semrouter-reasoning"),
            "stream": self.stream,
            "signals": self.fired,
            "route": self._route(),
            "latency": latency,
            "usage": None
            if usage is None
            else {
                "prompt_tokens": usage.prompt,
                "completion_tokens": usage.completion,
                "reasoning_tokens": usage.reasoning,
            },
        }
        if self.trace is not None:
            line["trace_id"] = self.trace.trace_id
        if self.content is not None:
            line["content"] = self.content
        return line

    def _upstream_attributes(self) -> dict[str, str]:
        return {
            "gen_ai.operation.name": OPERATION,
            "gen_ai.request.model": self.upstream_model or "",
            "semrouter.model": self.model or "",
        }

    def _end_trace(self, error: str | None, usage: Usage | None) -> None:
        assert self.trace is not None
        offset = time.time_ns() - time.perf_counter_ns()
        self.trace.stages(self.timings, offset)
        route = self._route()
        attributes: dict[str, Any] = {
            "semrouter.request_id": self.request_id,
            "semrouter.transport": self.transport,
            "semrouter.signals.fired": self.fired,
            **{f"semrouter.{k.replace('-', '_')}": v for k, v in route.items()},
        }
        if self.status is not None:
            attributes["http.response.status_code"] = self.status
        upstream: dict[str, Any] = {"gen_ai.response.model": self.upstream_model or ""}
        if usage is not None:
            upstream["gen_ai.usage.input_tokens"] = usage.prompt
            upstream["gen_ai.usage.output_tokens"] = usage.completion
            upstream["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning
        events = []
        if self.first_chunk_ns is not None:
            events.append(("first_chunk", self.first_chunk_ns + offset))
        self.trace.end(attributes, upstream, error, events)


class _NoObservation(Observation):
    """observe.enabled: false."""

    def __init__(self) -> None:
        super().__init__(None, {}, "")

    @contextmanager
    def active(self) -> Iterator[None]:
        yield  # no timings: this one object serves every request

    def routed(
        self,
        decision: str,
        model: str,
        upstream_model: str,
        fired: Iterable[str],
        headers: Mapping[str, str],
        content: str | None = None,
    ) -> None:
        return

    def failed(self, code: str) -> None:
        return

    def upstream_started(self) -> dict[str, str]:
        return {}

    def response_started(self, status: int, content_type: str) -> None:
        return

    def body(self, chunk: bytes) -> None:
        return


NO_OBSERVATION = _NoObservation()
