"""The Envoy external processor: semrouter's pipeline inside an Envoy gateway, over gRPC.

Envoy's ext_proc filter opens one `envoy.service.ext_proc.v3.ExternalProcessor/Process` stream per
HTTP request and sends it the request and response piece by piece. For a chat-completions request
(or one of the other client APIs, semrouter.apis, chosen by `:path`: the pipeline translates it,
the backend gets it on that API's backend path, and errors take that API's shape):

  request headers   remembered; what the HTTP proxy refuses before reading a body is refused here
                    too (wrong method, no valid client key with router.auth on,
                    Content-Length over router.max_body_bytes, no body).
  request body      parse → Router.route → Router.rewrite, exactly as `semrouter serve` does. The
                    answer replaces the body, fixes content-length, sets the x-semrouter-* decision
                    headers, the backend's :path and credentials (auth/backend.py: the client's
                    authorization and x-api-key are removed unless the model forwards them, and
                    `api_key_env`'s key is set), and clears the route cache so Envoy's route
                    table picks the backend cluster from x-semrouter-model. x-semrouter-tenant is
                    set to the authenticated tenant, or removed. Two ways to receive the body, as
                    the filter says in its
                    protocol_config:
                    - STREAMED and sent without waiting for the headers answer (the bootstrap of
                      `semrouter envoy-config`): one round trip. The headers answer is held back
                      until the body has ended and carries the header changes (Envoy routes when
                      it gets it); each body chunk is then answered, the last with the new body.
                      A body growing past the limit is refused as soon as it does.
                    - BUFFERED: the headers are answered at once, the whole body comes in one
                      message and its answer carries the header changes.
  response headers  the decision headers again, for the client. An event stream is switched to
                    streamed body processing when the filter would otherwise buffer the body.

A request a stage answers itself (a cache hit) gets that answer as an immediate_response: the
backend is never called. For a response a stage observes (a cache miss that may be stored),
the response headers answer asks for the body, streamed (mode_override): it is kept as it
passes, unchanged and undelayed, and handed over once it ended; every other response keeps the
filter's body mode. Envoy ignores mode overrides when the request body is sent without waiting
for the headers answer, so with the response cache on `semrouter envoy-config` buffers the
request body and sends response headers (envoy_config.py).

A RouterError becomes an immediate_response with the HTTP proxy's status and OpenAI error body.
Other paths pass through untouched. The server also answers grpc.health.v1 Check.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import grpc
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.extensions.filters.http.ext_proc.v3.processing_mode_pb2 import ProcessingMode
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyMutation,
    BodyResponse,
    CommonResponse,
    HeaderMutation,
    HeadersResponse,
    HttpBody,
    HttpHeaders,
    ImmediateResponse,
    ProcessingRequest,
    ProcessingResponse,
    TrailersResponse,
)
from envoy.type.v3.http_status_pb2 import HttpStatus

from semrouter.apis import BY_PATH
from semrouter.auth import CREDENTIAL_HEADERS, TENANT_HEADER, Principal, backend_credentials
from semrouter.config.schema import RouterConfig
from semrouter.extproc.backends import CHAT_SUFFIX, BackendLayout
from semrouter.extproc.envoy_config import buffer_limit
from semrouter.extproc.health import NOT_SERVING, SERVING, Health
from semrouter.extproc.metrics import serve_metrics
from semrouter.observe import NO_OBSERVATION, Observation
from semrouter.pipeline.api import ClientApi
from semrouter.pipeline.errors import (
    RouterError,
    bad_request,
    body_too_large,
    headers_too_large,
    internal_error,
    method_not_allowed,
)
from semrouter.pipeline.flow import Pipeline, Prepared
from semrouter.pipeline.request import parse_chat_request
from semrouter.pipeline.router import Router
from semrouter.slo import Ticket
from semrouter.stages import ResponseCapture, RewriteChain, StageAnswer

log = logging.getLogger("semrouter.extproc")

SERVICE_NAME = "envoy.service.ext_proc.v3.ExternalProcessor"
HEADERS_ALLOWANCE = 1024 * 1024

# Not chat completions: no body to Envoy's processor, no response headers either.
PASS_THROUGH = ProcessingMode(
    request_body_mode=ProcessingMode.NONE, response_header_mode=ProcessingMode.SKIP
)
# An event stream must flow chunk by chunk even where the filter is set to buffer response bodies.
STREAM_RESPONSE = ProcessingMode(response_body_mode=ProcessingMode.STREAMED)
_BUFFERING = frozenset({ProcessingMode.BUFFERED, ProcessingMode.BUFFERED_PARTIAL})
_EMPTY_ANSWER = {
    "request_headers": HeadersResponse,
    "response_headers": HeadersResponse,
    "request_body": BodyResponse,
    "response_body": BodyResponse,
    "request_trailers": TrailersResponse,
    "response_trailers": TrailersResponse,
}


def header_dict(headers: HttpHeaders) -> dict[str, str]:
    """Envoy sends values in raw_value (bytes) by default, in value on older versions."""
    return {
        h.key.lower(): h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
        for h in headers.headers.headers
    }


def set_headers(values: Mapping[str, str], remove: Sequence[str] = ()) -> HeaderMutation:
    return HeaderMutation(
        set_headers=[
            HeaderValueOption(
                header=HeaderValue(key=key, raw_value=value.encode()),
                append_action=HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            )
            for key, value in values.items()
        ],
        remove_headers=list(remove),
    )


def immediate(error: RouterError, api: ClientApi | None = None) -> ProcessingResponse:
    """The error as the client's answer, in the shape of its API (OpenAI's for chat)."""
    return ProcessingResponse(
        immediate_response=ImmediateResponse(
            status=HttpStatus(code=error.status),
            headers=set_headers({"content-type": "application/json", **error.headers()}),
            body=api.error_body(error) if api is not None else error.body(),
            details=f"semrouter_{error.code}",
        )
    )


def answered(answer: StageAnswer, headers: Mapping[str, str]) -> ProcessingResponse:
    """A stage's own answer (a cache hit), sent to the client by Envoy without a backend."""
    return ProcessingResponse(
        immediate_response=ImmediateResponse(
            status=HttpStatus(code=answer.status),
            headers=set_headers(
                {**headers, "content-type": answer.content_type, "cache-control": "no-cache"}
            ),
            body=answer.body,
            details="semrouter_stage_answer",
        )
    )


def check_content_length(declared: str | None, limit: int) -> None:
    if declared is None:
        return
    if not declared.isdigit():
        raise bad_request("Invalid Content-Length header", "invalid_content_length")
    if int(declared) > limit:
        raise body_too_large(int(declared), limit)


class Exchange:
    """One HTTP request, across the messages of its gRPC stream."""

    def __init__(self, pipeline: Pipeline, backends: Mapping[str, BackendLayout]) -> None:
        self.pipeline = pipeline
        self.backends = backends
        self.limit = pipeline.max_body_bytes
        self.admitted = False
        self.request_headers: dict[str, str] = {}
        self.passthrough = False
        self.api: ClientApi | None = None  # the client API of the path (None: chat)
        self.prepared: Prepared | None = None
        self.principal: Principal | None = None
        self.response_body_mode: int | None = None  # as the filter is configured, when it says
        # Envoy streams the body without waiting for our headers answer: that answer waits for
        # the body instead (so the route is known when Envoy routes), then one answer per chunk.
        self.answer_headers_last = False
        self.chunks: list[bytes] = []
        self.received = 0
        self.capture: ResponseCapture | None = None
        self.rewriting: RewriteChain | None = None
        self.observation: Observation = NO_OBSERVATION
        # observe.extproc_responses: the response body streams through here to be timed.
        self.times_responses = False
        self.slo: Ticket | None = None  # the SLO controller's timing of the backend's answer

    async def handle(self, message: ProcessingRequest) -> list[ProcessingResponse]:
        if message.HasField("protocol_config"):
            config = message.protocol_config
            self.response_body_mode = config.response_body_mode
            self.answer_headers_last = (
                config.request_body_mode == ProcessingMode.STREAMED
                and config.send_body_without_waiting_for_header_response
            )
        kind = message.WhichOneof("request")
        try:
            if kind == "request_headers":
                return self.on_request_headers(message.request_headers)
            if kind == "request_body" and not self.passthrough:
                return await self.on_request_body(message.request_body)
            if kind == "response_headers":
                return [self.on_response_headers(message.response_headers)]
            if kind == "response_body" and (
                self.capture is not None or self.rewriting is not None or self.times_responses
            ):
                return [self.on_response_body(message.response_body)]
        except RouterError as error:
            self.pipeline.metrics.failed(error)
            self.observation.finish(error.status, error.code)
            return [immediate(error, self.api)]
        except Exception:
            log.exception("unexpected error while processing a request")
            self.pipeline.metrics.failed(internal_error())
            self.observation.finish(500, "internal_error")
            return [immediate(internal_error(), self.api)]
        return [ProcessingResponse(**{kind: _EMPTY_ANSWER[kind]()})]

    def on_request_headers(self, headers: HttpHeaders) -> list[ProcessingResponse]:
        self.request_headers = header_dict(headers)
        path = self.request_headers.get(":path", "").partition("?")[0]
        self.api = BY_PATH.get(path)
        if self.api is None and not path.endswith(CHAT_SUFFIX):
            self.passthrough = True
            return [
                ProcessingResponse(request_headers=HeadersResponse(), mode_override=PASS_THROUGH)
            ]
        self.observation = self.pipeline.observer.begin(self.request_headers, "extproc")
        if self.request_headers.get(":method") != "POST":
            raise method_not_allowed()
        size = sum(len(k) + len(v) for k, v in self.request_headers.items())
        if size > self.pipeline.limits.max_header_bytes:
            raise headers_too_large(size, self.pipeline.limits.max_header_bytes)
        self.principal = self.pipeline.authenticate(self.request_headers)  # 401 before the body
        check_content_length(self.request_headers.get("content-length"), self.limit)
        self.pipeline.admission.enter()
        self.admitted = True
        if headers.end_of_stream:
            parse_chat_request(b"", self.limit)  # raises the proxy's "body is empty" error
        if self.answer_headers_last:
            return []
        return [ProcessingResponse(request_headers=HeadersResponse())]

    async def on_request_body(self, body: HttpBody) -> list[ProcessingResponse]:
        if not self.answer_headers_last:
            if not body.end_of_stream:
                raise body_too_large(None, self.limit)  # BUFFERED: the filter's buffer overflowed
            rewritten = await self.rewrite(body.body)
            if (answer := self.stage_answer()) is not None:
                return [answer]
            return [ProcessingResponse(request_body=BodyResponse(response=rewritten))]
        self.chunks.append(body.body)
        self.received += len(body.body)
        if self.received > self.limit:
            raise body_too_large(None, self.limit)
        if not body.end_of_stream:
            return []
        answer = await self.rewrite(b"".join(self.chunks))
        if (immediate_answer := self.stage_answer()) is not None:
            return [immediate_answer]
        cleared = ProcessingResponse(
            request_body=BodyResponse(
                response=CommonResponse(body_mutation=BodyMutation(clear_body=True))
            )
        )
        return [
            ProcessingResponse(
                request_headers=HeadersResponse(
                    response=CommonResponse(
                        header_mutation=answer.header_mutation, clear_route_cache=True
                    )
                )
            ),
            *[cleared] * (len(self.chunks) - 1),
            ProcessingResponse(
                request_body=BodyResponse(
                    response=CommonResponse(body_mutation=answer.body_mutation)
                )
            ),
        ]

    async def rewrite(self, raw: bytes) -> CommonResponse:
        """The pipeline on a whole body: its rewrite, and the headers Envoy routes on."""
        with self.observation.active():
            prepared = self.prepared = await self.pipeline.prepare(
                raw, self.request_headers, self.principal, self.api
            )
        route = prepared.route
        payload = prepared.body
        headers = {
            **prepared.headers,
            "content-length": str(len(payload)),
            **backend_credentials(route.model, self.request_headers),
        }
        if prepared.answer is None:  # to the backend: the request id and trace context
            headers.update(self.observation.upstream_started())
            self.slo = prepared.slo
            if self.slo is not None:
                self.slo.start()
        path, _, query = self.request_headers.get(":path", "").partition("?")
        suffix = self.api.backend_path if self.api is not None else CHAT_SUFFIX
        backend_path = self.backends[route.model.name].base_path + suffix
        if path != backend_path:
            headers[":path"] = f"{backend_path}?{query}" if query else backend_path
        # What the client sent and the pipeline did not set goes: its credentials (unless the
        # model forwards them), and a tenant header no authenticated key vouched for.
        removed = [
            name
            for name in (*CREDENTIAL_HEADERS, TENANT_HEADER)
            if name in self.request_headers and name not in headers
        ]
        log.debug("routed to %s (%s)", route.model.name, headers["x-semrouter-decision"])
        return CommonResponse(
            header_mutation=set_headers(headers, removed),
            body_mutation=BodyMutation(body=payload),
            clear_route_cache=True,
        )

    def stage_answer(self) -> ProcessingResponse | None:
        """The immediate response for a request a stage answered itself, else None."""
        prepared = self.prepared
        if prepared is None or prepared.answer is None:
            return None
        answer = prepared.answer
        self.observation.finish(answer.status)
        if prepared.rewriters:
            content_type, body = RewriteChain(prepared.rewriters).whole(
                answer.status, answer.content_type, answer.body
            )
            answer = StageAnswer(body, content_type, answer.status)
        return answered(answer, prepared.headers)

    def on_response_headers(self, headers: HttpHeaders) -> ProcessingResponse:
        added = dict(self.prepared.headers) if self.prepared is not None else {}
        response = ProcessingResponse()
        values = header_dict(headers)
        content_type = values.get("content-type", "")
        raw_status = values.get(":status", "")
        self.observation.response_started(
            int(raw_status) if raw_status.isdigit() else 0, content_type
        )
        if headers.end_of_stream:
            self.observation.finish()
        elif self.prepared is not None and self.pipeline.config.observe.extproc_responses:
            self.times_responses = True
            response.mode_override.CopyFrom(STREAM_RESPONSE)
        self.time_slo(
            int(raw_status) if raw_status.isdigit() else 0, content_type, headers, response
        )
        if content_type.startswith("text/event-stream"):
            if self.prepared is not None:
                added["cache-control"] = "no-cache"
            if self.response_body_mode is None or self.response_body_mode in _BUFFERING:
                response.mode_override.CopyFrom(STREAM_RESPONSE)
        removed: list[str] = []
        if self.prepared is not None and (self.prepared.observers or self.prepared.rewriters):
            raw_status = values.get(":status", "")
            status = int(raw_status) if raw_status.isdigit() else 0
            capture = ResponseCapture(self.prepared.observers, status, content_type)
            if capture.active:
                self.capture = capture
                response.mode_override.CopyFrom(STREAM_RESPONSE)
            if self.prepared.rewriters:
                self.rewriting = RewriteChain(self.prepared.rewriters)
                rewritten_type = self.rewriting.begin(status, content_type)
                if rewritten_type != content_type:
                    added["content-type"] = rewritten_type
                removed.append("content-length")
                response.mode_override.CopyFrom(STREAM_RESPONSE)
        response.response_headers.response.header_mutation.CopyFrom(set_headers(added, removed))
        return response

    def time_slo(
        self, status: int, content_type: str, headers: HttpHeaders, response: ProcessingResponse
    ) -> None:
        """The SLO controller's timing at the response headers: a failure (5xx, 429), a JSON
        answer (its headers come with its body, so they end it), or an event stream, whose body
        then streams through here so its first event and its end are seen."""
        ticket = self.slo
        if ticket is None:
            return
        if status >= 500 or status == 429:
            ticket.failed()
        elif status < 400 and (
            headers.end_of_stream or not content_type.startswith("text/event-stream")
        ):
            ticket.first_byte()
            ticket.succeeded()
        elif status < 400:
            self.times_responses = True
            response.mode_override.CopyFrom(STREAM_RESPONSE)
            return
        self.slo = None

    def on_response_body(self, body: HttpBody) -> ProcessingResponse:
        """A body a stage observes or rewrites, streamed: kept as it passes, each chunk
        answered with what the rewriters make of it (else Envoy forwards it unchanged).
        The observation sees the backend's bytes (observe.extproc_responses)."""
        self.observation.body(body.body)
        if body.end_of_stream:
            self.observation.finish()
        if self.slo is not None:
            self.slo.first_byte()
            if body.end_of_stream:
                self.slo.succeeded()
                self.slo = None
        if self.capture is not None:
            self.capture.feed(body.body)
            if body.end_of_stream:
                self.capture.finish()
                self.capture = None
        answer = BodyResponse()
        if self.rewriting is not None:
            out = self.rewriting.feed(body.body)
            if body.end_of_stream:
                out += self.rewriting.finish()
                self.rewriting = None
            answer.response.body_mutation.body = out
        return ProcessingResponse(response_body=answer)


# The generated gRPC base class has no stubs (xds-protos ships none), so it is Any to mypy.
class ExtProcServicer(external_processor_pb2_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.backends = {m.name: BackendLayout.of(m) for m in pipeline.config.models}

    async def Process(
        self,
        request_iterator: AsyncIterator[ProcessingRequest],
        context: grpc.aio.ServicerContext[ProcessingRequest, ProcessingResponse],
    ) -> None:
        # read()/write() on the context: cheaper per message than async iterators in grpc.aio
        exchange = Exchange(self.pipeline, self.backends)
        try:
            while (message := await context.read()) is not grpc.aio.EOF:
                for response in await exchange.handle(message):
                    await context.write(response)
                    if response.HasField("immediate_response"):
                        return
        finally:
            if exchange.admitted:
                self.pipeline.admission.leave()
            # Without the response's end (Envoy did not send it): no status, no duration.
            exchange.observation.finish(complete=False)


@dataclass(slots=True)
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: Health

    async def stop(self, grace_s: float) -> None:
        """Report NOT_SERVING, refuse new streams, and let those in flight finish for up to
        grace_s; then cancel what is left."""
        self.health.set(NOT_SERVING)
        await self.server.stop(grace_s)


async def start(pipeline: Pipeline, host: str, port: int) -> RunningServer:
    """Serve ext_proc and health on host:port (0: any free port) once the router has started.
    Raises OSError if the address cannot be bound (before the router loads anything)."""
    servicer = ExtProcServicer(pipeline)
    # The largest body Envoy hands over is its buffer limit; headers come in the same message.
    largest = buffer_limit(pipeline.config) + HEADERS_ALLOWANCE
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", largest)])
    external_processor_pb2_grpc.add_ExternalProcessorServicer_to_server(servicer, server)
    health = Health((SERVICE_NAME,))
    server.add_generic_rpc_handlers((health.handler(),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        raise OSError(f"cannot listen on {address} (in use, or not an address here)") from None
    await pipeline.start()
    await server.start()
    health.set(SERVING)
    return RunningServer(server, bound, health)


async def run(config: RouterConfig, host: str, port: int, metrics_port: int | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then report NOT_SERVING, let the requests in flight finish
    for up to `router.limits.shutdown_grace_s`, and return. With metrics_port, Prometheus
    metrics (the same series as `semrouter serve`'s pipeline metrics) are served there."""
    pipeline = Pipeline(Router.from_config(config))
    running = await start(pipeline, host, port)
    log.info("semrouter ext_proc listening on %s:%d", host, running.port)
    metrics = await serve_metrics(pipeline, host, metrics_port) if metrics_port else None
    if metrics_port:
        log.info("metrics on http://%s:%d/metrics", host, metrics_port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    log.info("shutting down: %d requests in flight", pipeline.admission.in_flight)
    await running.stop(config.router.limits.shutdown_grace_s)
    if metrics is not None:
        await metrics.cleanup()
    await pipeline.close()
