"""The HTTP transport: an OpenAI-compatible ASGI app in front of the model backends.

Routes: POST /v1/chat/completions (JSON and SSE); the other client APIs of semrouter.apis
(POST /v1/messages, /v1/responses, /v1/completions, /v1/embeddings), through the same
pipeline, each with its own error shape; GET /v1/models, POST /api/v1/classify,
GET /health, GET /ready, GET /metrics. All routing logic lives in `semrouter.pipeline`; this
module only moves bytes and turns RouterError into OpenAI error responses: a request a stage
answered (a cache hit) gets that answer without a backend call, and a response some stage
observes (a cache miss) is kept as it is relayed and handed over once it ended normally (the
whole JSON body read; a stream through `[DONE]`). With router auth on,
chat and classify requests are authenticated before their body is read, and /metrics is an
admin endpoint (`Pipeline.authorize_admin`); /health, /ready and /v1/models stay open.
The admin dashboard (/dashboard and its /api/v1 admin APIs) is semrouter.dashboard's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import TypeVar

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route as HttpRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from semrouter.apis import APIS, BY_PATH
from semrouter.config.schema import RouterConfig
from semrouter.dashboard import Dashboard
from semrouter.observe import NO_OBSERVATION, REQUEST_ID_HEADER, Observation
from semrouter.pipeline.api import ClientApi
from semrouter.pipeline.errors import (
    FIRST_BYTE_TIMEOUT,
    ErrorKind,
    RouterError,
    bad_request,
    body_too_large,
    headers_too_large,
    internal_error,
    method_not_allowed,
    not_found,
    request_timeout,
)
from semrouter.pipeline.flow import Pipeline, Prepared
from semrouter.pipeline.router import Router
from semrouter.proxy.metrics import Metrics
from semrouter.proxy.thinking import BudgetedResponse, ThinkingBudgets
from semrouter.proxy.upstream import UpstreamResponse, Upstreams
from semrouter.reasoning.thinking_budget import BUDGET_HEADER
from semrouter.slo import Ticket
from semrouter.stages import ResponseCapture, RewriteChain

log = logging.getLogger("semrouter.proxy")
JSON = "application/json"
API_PREFIXES = ("/v1/", "/api/")


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(data), status, headers=headers, media_type=JSON)


def error_response(
    error: RouterError, headers: dict[str, str] | None = None, api: ClientApi | None = None
) -> Response:
    """The error in the shape of the route's API (OpenAI's for chat completions)."""
    body = api.error_body(error) if api is not None else error.body()
    return Response(
        body, error.status, headers={**(headers or {}), **error.headers()}, media_type=JSON
    )


def _sse_error(error: RouterError) -> bytes:
    return b"data: " + error.body() + b"\n\ndata: [DONE]\n\n"


T = TypeVar("T")


async def _client_gone(receive: Receive) -> None:
    """Returns once the client disconnects (call it after the request body was read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await work; if the client disconnects first, cancel it (and with it the upstream
    request, whose connection is closed) and raise ClientDisconnect."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_client_gone(request.receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait((task,))
    if task.cancelled():
        raise ClientDisconnect
    return task.result()


class AdmissionMiddleware:
    """Bounds the API requests in flight (streams count until their last byte) and the size of
    their headers; a refused request gets its error at once, before any body is read."""

    def __init__(self, app: ASGIApp, proxy: ProxyApp) -> None:
        self.app = app
        self.proxy = proxy
        self.admission = proxy.pipeline.admission
        self.max_header_bytes = proxy.limits.max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIXES):
            await self.app(scope, receive, send)
            return
        try:
            size = sum(len(k) + len(v) for k, v in scope["headers"])
            if size > self.max_header_bytes:
                raise headers_too_large(size, self.max_header_bytes)
            self.admission.enter()
        except RouterError as error:
            failure = self.proxy.failed(error, api=BY_PATH.get(scope["path"]))
            await failure(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.leave()


class ProxyApp:
    def __init__(
        self,
        router: Router,
        upstreams: Upstreams | None = None,
        config_path: str | None = None,
    ) -> None:
        """config_path: the file the config came from (the dashboard checks it again)."""
        self.router = router
        self.pipeline = Pipeline(router)
        self.config: RouterConfig = router.config
        self.limits = self.config.router.limits
        self.metrics = Metrics(self.pipeline.metrics.registry)
        self.upstreams = upstreams or Upstreams(self.limits, self.metrics)
        self.thinking = ThinkingBudgets(self.upstreams, self.metrics)
        router.midstream_budgets = True  # this transport enforces thinking budgets itself
        self.ready = False
        self._models_payload = orjson.dumps(self._models_listing())
        self.dashboard = Dashboard(self.pipeline, self._read_body, config_path)
        self.app = Starlette(
            routes=[
                HttpRoute("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                *(HttpRoute(api.path, self._endpoint(api), methods=["POST"]) for api in APIS),
                HttpRoute("/v1/models", self.models, methods=["GET"]),
                HttpRoute("/api/v1/classify", self.classify, methods=["POST"]),
                HttpRoute("/health", self.health, methods=["GET"]),
                HttpRoute("/ready", self.readiness, methods=["GET"]),
                HttpRoute("/metrics", self.prometheus, methods=["GET"]),
                *self.dashboard.routes(),
            ],
            exception_handlers={HTTPException: self._http_exception, Exception: self._unexpected},
            lifespan=self._lifespan,
            middleware=[Middleware(AdmissionMiddleware, proxy=self)],
        )

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.pipeline.start()
        await self.upstreams.start()
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            await self.upstreams.close()
            await self.pipeline.close()

    def _models_listing(self) -> dict[str, object]:
        created = int(time.time())
        entries = [
            {"id": name, "object": "model", "created": created, "owned_by": "semrouter"}
            for name in self.config.router.auto_model_names
        ]
        entries += [
            {"id": m.name, "object": "model", "created": created, "owned_by": "semrouter"}
            for m in self.config.models
        ]
        return {"object": "list", "data": entries}

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.router.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise bad_request("Invalid Content-Length header", "invalid_content_length")
            if int(declared) > limit:
                raise body_too_large(int(declared), limit)
        chunks: list[bytes] = []
        size = 0
        timeout_s = self.limits.body_read_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise body_too_large(size, limit)
                    chunks.append(chunk)
        except TimeoutError:
            raise request_timeout("body", timeout_s) from None
        return b"".join(chunks)

    def failed(
        self,
        error: RouterError,
        headers: dict[str, str] | None = None,
        api: ClientApi | None = None,
    ) -> Response:
        self.pipeline.metrics.failed(error)
        if error.kind is ErrorKind.REQUEST_TIMEOUT:  # the rest of the body may still come
            headers = {**(headers or {}), "connection": "close"}
        return error_response(error, headers, api)

    def _endpoint(self, api: ClientApi) -> Callable[[Request], Awaitable[Response]]:
        """The handler of another client API's route (semrouter.apis)."""

        async def endpoint(request: Request) -> Response:
            return await self.forward(request, api)

        return endpoint

    async def chat_completions(self, request: Request) -> Response:
        return await self.forward(request, None)

    async def forward(self, request: Request, api: ClientApi | None) -> Response:
        """A request through the pipeline to its backend, the response back through the
        request's rewriters; `api`: the client API of the route, None for chat completions.
        Observed from arrival to last byte (semrouter.observe): its x-request-id is returned."""
        observation = self.pipeline.observer.begin(request.headers, "http")
        try:
            with observation.active():
                response = await self._forward(request, api, observation)
        except asyncio.CancelledError:
            observation.finish(499, "cancelled")
            raise
        except Exception:
            observation.finish(500, "internal_error")
            raise
        if observation.request_id:
            response.headers[REQUEST_ID_HEADER] = observation.request_id
        if not isinstance(response, StreamingResponse):  # a stream's relay finishes it
            observation.finish(response.status_code)
        return response

    async def _forward(
        self, request: Request, api: ClientApi | None, observation: Observation
    ) -> Response:
        route_headers: dict[str, str] | None = None
        try:
            principal = self.pipeline.authenticate(request.headers)  # before reading the body
            prepared = await self.pipeline.prepare(
                await self._read_body(request), request.headers, principal, api
            )
            route, route_headers = prepared.route, prepared.headers
            rewrite = RewriteChain(prepared.rewriters)
            if prepared.answer is not None:
                answer = prepared.answer
                headers = {**route_headers, "cache-control": "no-cache"}
                content_type, body = rewrite.whole(answer.status, answer.content_type, answer.body)
                return Response(body, answer.status, headers, content_type)
            started = time.perf_counter()
            upstream = await unless_disconnected(
                request,
                self._send(prepared, api, {**request.headers, **observation.upstream_started()}),
            )
            self.metrics.upstream_seconds.labels(route.model.name).observe(
                time.perf_counter() - started
            )
        except RouterError as error:
            return self.failed(error, route_headers, api)
        except ClientDisconnect:
            return Response(status_code=499)
        observation.response_started(upstream.status, upstream.content_type)
        # The backend's cache policy if it states one, else no caching (as through Envoy).
        headers = {
            **route_headers,
            "cache-control": upstream.headers.get("cache-control", "no-cache"),
        }
        if isinstance(upstream, BudgetedResponse):
            headers[BUDGET_HEADER] = upstream.budget_header  # planned; JSON: final once read
        capture = ResponseCapture(prepared.observers, upstream.status, upstream.content_type)
        ticket = prepared.slo if upstream.status < 400 else None  # a 4xx says nothing of load
        if upstream.is_event_stream:
            return StreamingResponse(
                self._relay(upstream.chunks(), capture, rewrite, ticket, observation),
                status_code=upstream.status,
                headers=headers,
                media_type=rewrite.begin(upstream.status, upstream.content_type),
            )
        if ticket is not None:
            ticket.first_byte()  # a JSON answer's headers come with its body
        try:
            payload = await unless_disconnected(request, upstream.read())
        except RouterError as error:
            if ticket is not None:
                ticket.failed()
            return self.failed(error, route_headers, api)
        except ClientDisconnect:
            return Response(status_code=499)
        if ticket is not None:
            ticket.succeeded()
        if isinstance(upstream, BudgetedResponse):
            headers[BUDGET_HEADER] = upstream.budget_header
        observation.body(payload)
        capture.feed(payload)
        capture.finish()
        media_type, payload = rewrite.whole(upstream.status, upstream.content_type, payload)
        return Response(payload, upstream.status, headers=headers, media_type=media_type)

    async def _send(
        self, prepared: Prepared, api: ClientApi | None, client_headers: Mapping[str, str]
    ) -> UpstreamResponse | BudgetedResponse:
        """The backend's response, timed for the SLO controller (semrouter.slo). A streamed
        request to a model with a TTFT watchdog returns only once the first body bytes came;
        when no endpoint sent them in time, the request goes once to the model's SLO
        alternative (the pipeline rewrites it; nothing has reached the client yet)."""
        path = api.backend_path if api is not None else "/chat/completions"
        moved = False
        while True:
            model, ticket = prepared.route.model, prepared.slo
            watchdog = (
                self.pipeline.slo.first_byte_timeout_s(model) if prepared.chat.stream else None
            )
            if ticket is not None:
                ticket.start()
            plan = prepared.route.budget
            try:
                if plan is not None and plan.how == "router":
                    return await self.thinking.post(
                        model, path, prepared.body, client_headers, plan, watchdog
                    )
                return await self.upstreams.post(
                    model, path, prepared.body, client_headers, watchdog
                )
            except RouterError as error:
                if ticket is not None:
                    ticket.failed()
                if (
                    error.code != FIRST_BYTE_TIMEOUT
                    or moved
                    or not self.pipeline.failover(prepared)
                ):
                    raise
                moved = True

    async def _relay(
        self,
        chunks: AsyncGenerator[bytes, None],
        capture: ResponseCapture,
        rewrite: RewriteChain,
        ticket: Ticket | None = None,
        observation: Observation = NO_OBSERVATION,
    ) -> AsyncIterator[bytes]:
        """Pass SSE events on as they come (through the request's rewriters); a backend
        failure mid-stream ends in an error event and `[DONE]` (rewritten too, not finished).
        Closing the relay (the client went away) closes the upstream stream. The capture sees
        each backend event after it was passed on, and finishes only after `[DONE]`; the SLO
        ticket is told of the first event, and of the end or the failure; the observation
        sees each event as it came, and the end."""
        try:
            async with aclosing(chunks):
                async for chunk in chunks:
                    observation.body(chunk)
                    if ticket is not None:
                        ticket.first_byte()
                    if out := rewrite.feed(chunk):
                        yield out
                    capture.feed(chunk)
        except RouterError as error:
            if ticket is not None:
                ticket.failed()
            self.pipeline.metrics.failed(error)
            observation.finish(error=error.code)
            if out := rewrite.feed(_sse_error(error)):
                yield out
            return
        except BaseException:  # the client went away (the relay was closed or cancelled)
            observation.finish(error="client_closed")
            raise
        if ticket is not None:
            ticket.succeeded()
        observation.finish()
        if tail := rewrite.finish():
            yield tail
        capture.finish()

    async def classify(self, request: Request) -> Response:
        try:
            principal = self.pipeline.authenticate(request.headers)
            summary, headers = await self.pipeline.classify(
                await self._read_body(request), request.headers, principal
            )
        except RouterError as error:
            return self.failed(error)
        return json_response(summary, headers=headers)

    async def models(self, _request: Request) -> Response:
        return Response(self._models_payload, media_type=JSON)

    async def health(self, _request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readiness(self, _request: Request) -> Response:
        if not self.ready:
            return json_response({"status": "starting"}, status=503)
        return json_response({"status": "ready"})

    async def prometheus(self, request: Request) -> Response:
        try:
            self.pipeline.authorize_admin(
                request.headers, request.client.host if request.client else None
            )
        except RouterError as error:
            return self.failed(error)
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        api = BY_PATH.get(request.url.path)
        if exc.status_code == 405:
            return error_response(method_not_allowed(), api=api)
        return error_response(not_found(exc.detail), api=api)

    async def _unexpected(self, request: Request, exc: Exception) -> Response:
        log.exception("unexpected error while serving a request", exc_info=exc)
        return self.failed(internal_error(), api=BY_PATH.get(request.url.path))


def create_app(config: RouterConfig, config_path: str | None = None) -> Starlette:
    return ProxyApp(Router.from_config(config), config_path=config_path).app
