"""OpenTelemetry tracing of requests, configured by the standard `OTEL_*` environment variables.

This module is imported only when tracing is on (`tracing_wanted`), so with it off the router
never loads the OpenTelemetry SDK. A request gets a SERVER span (`semrouter.request`, joined to
the client's trace when it sent a W3C `traceparent`), one child per routing stage, made from the
request's `Timings` once routing is done (with the stages' own start and end times, so timing
them costs nothing extra), and a CLIENT span for the backend call (`chat <model>`, with GenAI
attributes) whose context goes to the backend as `traceparent`. Spans leave through a
BatchSpanProcessor (a bounded queue and a thread of its own; OTEL_BSP_* tune it).

Exporters (OTEL_TRACES_EXPORTER): `otlp` (the default; OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
OTEL_EXPORTER_OTLP_PROTOCOL `http/protobuf`, the default, or `grpc` when
opentelemetry-exporter-otlp-proto-grpc is installed; endpoint, headers and timeout from
OTEL_EXPORTER_OTLP_*), `console`. OTEL_SERVICE_NAME (default semrouter),
OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER are honoured as the SDK reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from semrouter.observe.timing import Timings

_PROPAGATOR = TraceContextTextMapPropagator()


class TracingError(Exception):
    """The OTEL_* settings ask for an exporter that is not available."""


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise TracingError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console)")
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol == "http/protobuf":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as error:
            # xds-protos ships an older copy of opentelemetry/proto/; installed after
            # opentelemetry-proto, its files replace the newer ones the exporter needs.
            raise TracingError(
                f"the OTLP exporter cannot load ({error}); if xds-protos was installed after "
                "opentelemetry-proto, run: pip install --force-reinstall --no-deps "
                "opentelemetry-proto"
            ) from None
        return OTLPSpanExporter()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError:
            raise TracingError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc "
                "(pip install it), or use http/protobuf"
            ) from None
        exporter: SpanExporter = GrpcExporter()
        return exporter
    raise TracingError(f"OTLP protocol {protocol!r} is not supported (http/protobuf, grpc)")


class Tracing:
    """The tracer provider of this process and the spans of its requests."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("semrouter")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Tracing:
        names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
        attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": "semrouter"}
        provider = TracerProvider(resource=Resource.create(attributes))
        for name in names:
            if name and name != "none":
                provider.add_span_processor(BatchSpanProcessor(_exporter(name, env)))
        return cls(provider)

    def shutdown(self) -> None:
        """Export what is queued, then stop (blocks: call it off the event loop)."""
        self.provider.shutdown()

    def request(self, headers: Mapping[str, str], start_ns: int) -> RequestTrace:
        parent = _PROPAGATOR.extract(headers)
        span = self.tracer.start_span(
            "semrouter.request", parent, SpanKind.SERVER, start_time=start_ns
        )
        return RequestTrace(self.tracer, span)


class RequestTrace:
    """The spans of one request."""

    __slots__ = ("_upstream", "root", "tracer")

    def __init__(self, tracer: trace.Tracer, root: Span) -> None:
        self.tracer = tracer
        self.root = root
        self._upstream: Span | None = None

    @property
    def trace_id(self) -> str:
        return format(self.root.get_span_context().trace_id, "032x")

    def _context(self, span: Span) -> Context:
        return trace.set_span_in_context(span)

    def stages(self, timings: Timings, epoch_offset_ns: int) -> None:
        """A child span per timed stage (nested as they ran); `epoch_offset_ns` turns
        perf_counter_ns into epoch nanoseconds."""
        spans: list[Span] = []
        for stage in timings.stages:
            parent = spans[stage.parent] if stage.parent >= 0 else self.root
            span = self.tracer.start_span(
                f"semrouter.stage.{stage.name}",
                self._context(parent),
                start_time=stage.start_ns + epoch_offset_ns,
            )
            span.end(end_time=(stage.end_ns or stage.start_ns) + epoch_offset_ns)
            spans.append(span)

    def start_upstream(
        self, model: str, attributes: Mapping[str, AttributeValue]
    ) -> dict[str, str]:
        """The backend call's span; returns the headers that carry its context to the backend."""
        span = self._upstream = self.tracer.start_span(
            f"chat {model}", self._context(self.root), SpanKind.CLIENT, attributes=attributes
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, self._context(span))
        return carrier

    def end(
        self,
        attributes: Mapping[str, AttributeValue],
        upstream_attributes: Mapping[str, AttributeValue],
        error: str | None,
        events: Sequence[tuple[str, int]] = (),
    ) -> None:
        """End the backend span (if one began) and the request's; `events`: (name, epoch ns)."""
        if self._upstream is not None:
            self._upstream.set_attributes(upstream_attributes)
            for name, at_ns in events:
                self._upstream.add_event(name, timestamp=at_ns)
            if error is not None:
                self._upstream.set_status(Status(StatusCode.ERROR, error))
            self._upstream.end()
        self.root.set_attributes(attributes)
        if error is not None:
            self.root.set_status(Status(StatusCode.ERROR, error))
        self.root.end()
