"""The HTTP transport: an OpenAI-compatible ASGI app in front of the model backends.

Routes: POST /v1/chat/completions (JSON and SSE), GET /v1/models, POST /api/v1/classify,
GET /health, GET /ready, GET /metrics. All routing logic lives in `semrouter.pipeline`; this
module only moves bytes and turns RouterError into OpenAI error responses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route as HttpRoute

from semrouter.config.schema import RouterConfig
from semrouter.pipeline.errors import RouterError, bad_request, body_too_large
from semrouter.pipeline.request import classify_input, parse_chat_request
from semrouter.pipeline.router import Router
from semrouter.proxy.metrics import Metrics
from semrouter.proxy.upstream import Upstreams

log = logging.getLogger("semrouter.proxy")
JSON = "application/json"


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(data), status, headers=headers, media_type=JSON)


def error_response(error: RouterError, headers: dict[str, str] | None = None) -> Response:
    return Response(error.body(), error.status, headers=headers, media_type=JSON)


def _sse_error(error: RouterError) -> bytes:
    return b"data: " + error.body() + b"\n\ndata: [DONE]\n\n"


class ProxyApp:
    def __init__(self, router: Router, upstreams: Upstreams | None = None) -> None:
        self.router = router
        self.config: RouterConfig = router.config
        self.upstreams = upstreams or Upstreams()
        self.metrics = Metrics()
        self.ready = False
        self._models_payload = orjson.dumps(self._models_listing())
        self.app = Starlette(
            routes=[
                HttpRoute("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                HttpRoute("/v1/models", self.models, methods=["GET"]),
                HttpRoute("/api/v1/classify", self.classify, methods=["POST"]),
                HttpRoute("/health", self.health, methods=["GET"]),
                HttpRoute("/ready", self.readiness, methods=["GET"]),
                HttpRoute("/metrics", self.prometheus, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_exception, Exception: self._unexpected},
            lifespan=self._lifespan,
        )

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.router.start()
        await self.upstreams.start()
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            await self.upstreams.close()
            await self.router.close()

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
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise body_too_large(size, limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def _failed(self, error: RouterError, headers: dict[str, str] | None = None) -> Response:
        self.metrics.errors.labels(str(error.status), error.code).inc()
        return error_response(error, headers)

    async def chat_completions(self, request: Request) -> Response:
        route_headers: dict[str, str] | None = None
        try:
            chat = parse_chat_request(
                await self._read_body(request), self.config.router.max_body_bytes
            )
            route = await self.router.route(chat)
            route_headers = route.headers()
            self.metrics.route_seconds.observe(route.route_ms / 1000)
            self.metrics.requests.labels(
                route_headers["x-semrouter-decision"], route.model.name, route.reasoning
            ).inc()
            body = orjson.dumps(self.router.rewrite(chat, route))
            started = time.perf_counter()
            upstream = await self.upstreams.post(
                route.model, "/chat/completions", body, request.headers
            )
            self.metrics.upstream_seconds.labels(route.model.name).observe(
                time.perf_counter() - started
            )
        except RouterError as error:
            return self._failed(error, route_headers)
        except ClientDisconnect:
            return Response(status_code=499)
        # The backend's cache policy if it states one, else no caching (as through Envoy).
        headers = {
            **route_headers,
            "cache-control": upstream.headers.get("cache-control", "no-cache"),
        }
        if upstream.is_event_stream:
            return StreamingResponse(
                self._relay(upstream.chunks()),
                status_code=upstream.status,
                headers=headers,
                media_type=upstream.content_type,
            )
        try:
            payload = await upstream.read()
        except RouterError as error:
            return self._failed(error, route_headers)
        return Response(payload, upstream.status, headers=headers, media_type=upstream.content_type)

    async def _relay(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass SSE chunks on as they come; a backend failure mid-stream ends in an error event."""
        try:
            async for chunk in chunks:
                yield chunk
        except RouterError as error:
            self.metrics.errors.labels(str(error.status), error.code).inc()
            yield _sse_error(error)

    async def classify(self, request: Request) -> Response:
        try:
            chat = classify_input(await self._read_body(request), self.config.router.max_body_bytes)
            chat.model = next(iter(self.config.router.auto_model_names))
            route = await self.router.route(chat)
        except RouterError as error:
            return self._failed(error)
        return json_response(route.summary(), headers=route.headers())

    async def models(self, _request: Request) -> Response:
        return Response(self._models_payload, media_type=JSON)

    async def health(self, _request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readiness(self, _request: Request) -> Response:
        if not self.ready:
            return json_response({"status": "starting"}, status=503)
        return json_response({"status": "ready"})

    async def prometheus(self, _request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def _http_exception(self, _request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(
            RouterError(exc.status_code, exc.detail, "invalid_request_error", code)
        )

    async def _unexpected(self, _request: Request, exc: Exception) -> Response:
        log.exception("unexpected error while serving a request", exc_info=exc)
        return self._failed(
            RouterError(500, "Internal router error", "api_error", "internal_error")
        )


def create_app(config: RouterConfig) -> Starlette:
    return ProxyApp(Router.from_config(config)).app
