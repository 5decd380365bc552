"""The dashboard's routes: server-rendered pages under /dashboard and their admin JSON APIs.

    /dashboard             live traffic (polls /api/v1/stats)
    /dashboard/policy      the routing policy graph (/api/v1/policy as data)
    /dashboard/playground  a query's signals, decision trace, model and body (/api/v1/playground)
    /dashboard/config      the loaded config and its validation (/api/v1/config)
    /dashboard/recent      recent decisions (/api/v1/recent)
    /dashboard/login       the admin key form (when one is configured)

Every page and API but login and the static files passes `DashboardGate`. Pages are Jinja2
templates (autoescaped); the browser code is static/dashboard.js with the charting library
scripts/setup.sh vendors from npm (static/vendor/, git-ignored; without it the pages show their
numbers and tables, not the charts). Responses forbid framing, caching and foreign scripts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from semrouter.dashboard.config_view import config_view
from semrouter.dashboard.gate import COOKIE, DashboardGate
from semrouter.dashboard.policy import policy_graph
from semrouter.dashboard.stats import Stats
from semrouter.dashboard.svg import render
from semrouter.dashboard.trace import decision_trace
from semrouter.pipeline.errors import RouterError, bad_request
from semrouter.pipeline.flow import Pipeline

HERE = Path(__file__).parent
STATIC = HERE / "static"
VENDOR_SCRIPT = "vendor/uPlot.iife.min.js"
JSON = "application/json"
MAX_LOGIN_BYTES = 4096
MAX_WINDOW_S = 3600.0
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
PAGES = {
    "traffic": "live traffic",
    "policy": "policy",
    "playground": "playground",
    "config": "config",
    "recent": "recent decisions",
}

ReadBody = Callable[[Request], Awaitable[bytes]]


def error_json(error: RouterError) -> Response:
    return Response(
        error.body(), error.status, {**SECURITY_HEADERS, **error.headers()}, media_type=JSON
    )


def data(payload: object) -> Response:
    return Response(orjson.dumps(payload), headers=SECURITY_HEADERS, media_type=JSON)


class Dashboard:
    def __init__(
        self, pipeline: Pipeline, read_body: ReadBody, config_path: str | None = None
    ) -> None:
        """read_body: the transport's bounded body reader. ConfigError for a bad admin key."""
        self.pipeline = pipeline
        self.config = pipeline.config
        self.read_body = read_body
        self.config_path = config_path
        self.gate = DashboardGate(self.config.router.auth)
        self.stats = Stats(pipeline.metrics.registry, self.config.dashboard)
        self.graph = policy_graph(self.config)
        self.graph_svg = render(self.graph)
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def routes(self) -> list[BaseRoute]:
        if not self.config.dashboard.enabled:
            return []
        pages = [
            Route(path, self._page(name), methods=["GET"])
            for name, path in (
                ("traffic", "/dashboard"),
                ("traffic", "/dashboard/"),
                ("policy", "/dashboard/policy"),
                ("playground", "/dashboard/playground"),
                ("config", "/dashboard/config"),
                ("recent", "/dashboard/recent"),
            )
        ]
        apis = [
            Route("/api/v1/stats", self._api(self.stats_api), methods=["GET"]),
            Route("/api/v1/recent", self._api(self.recent_api), methods=["GET"]),
            Route("/api/v1/policy", self._api(self.policy_api), methods=["GET"]),
            Route("/api/v1/config", self._api(self.config_api), methods=["GET"]),
            Route("/api/v1/playground", self._api(self.playground_api), methods=["POST"]),
        ]
        return [
            *pages,
            *apis,
            Route("/dashboard/login", self.login_form, methods=["GET"]),
            Route("/dashboard/login", self.login, methods=["POST"]),
            Route("/dashboard/logout", self.logout, methods=["POST"]),
            Mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static"),
        ]

    def _refusal(self, request: Request) -> RouterError | None:
        host = request.client.host if request.client else None
        return self.gate.refusal(request.headers, request.cookies, host)

    def _page(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        async def page(request: Request) -> Response:
            refusal = self._refusal(request)
            if refusal is not None:
                if self.gate.has_key:
                    return RedirectResponse("/dashboard/login", 303, SECURITY_HEADERS)
                return error_json(refusal)
            return await self._render(name, await self._context(name))

        return page

    def _api(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def api(request: Request) -> Response:
            refusal = self._refusal(request)
            if refusal is not None:
                return error_json(refusal)
            try:
                return await handler(request)
            except RouterError as error:
                self.pipeline.metrics.failed(error)
                return error_json(error)

        return api

    async def _render(self, name: str, context: dict[str, Any], status: int = 200) -> Response:
        html = self.templates.get_template(f"{name}.html").render(
            page=name,
            pages=PAGES,
            charts=(STATIC / VENDOR_SCRIPT).is_file(),
            vendor_script=VENDOR_SCRIPT,
            admin_key=self.gate.has_key,
            **context,
        )
        return HTMLResponse(html, status, SECURITY_HEADERS)

    async def _context(self, name: str) -> dict[str, Any]:
        if name == "policy":
            return {"svg": self.graph_svg, "graph": self.graph}
        if name == "config":
            return {"view": await asyncio.to_thread(config_view, self.config, self.config_path)}
        if name == "recent":
            recent = self.pipeline.recent
            return {"size": recent.size, "content": self.config.dashboard.record_content}
        return {}

    async def stats_api(self, request: Request) -> Response:
        window = _number(request.query_params.get("window", "60"), "window")
        window = min(max(window, 1.0), MAX_WINDOW_S)
        return data(await asyncio.to_thread(self.stats.report, window))

    async def recent_api(self, request: Request) -> Response:
        recent = self.pipeline.recent
        limit = int(_number(request.query_params.get("limit", str(recent.size)), "limit"))
        return data(
            {"size": recent.size, "recorded": recent.recorded, "entries": recent.entries(limit)}
        )

    async def policy_api(self, _request: Request) -> Response:
        return data(self.graph.to_dict())

    async def config_api(self, _request: Request) -> Response:
        return data(await asyncio.to_thread(config_view, self.config, self.config_path))

    async def playground_api(self, request: Request) -> Response:
        """What /api/v1/classify answers for this input (the same Pipeline.classify: no backend
        call, nothing counted), with the decision trace beside it."""
        if request.headers.get("content-type", "").split(";")[0].strip() != JSON:
            raise bad_request("Send the input as application/json", "invalid_content_type")
        summary, headers = await self.pipeline.classify(
            await self.read_body(request), request.headers
        )
        fired = set(summary.get("signals", {}).get("fired", ()))
        return data(
            {
                "route": summary,
                "headers": headers,
                "trace": decision_trace(self.config, fired),
                "kinds": self.config.signals.names(),
            }
        )

    async def login_form(self, _request: Request) -> Response:
        return await self._render("login", {"error": None})

    async def login(self, request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BYTES:
                return error_json(bad_request("The login form is too large", "invalid_form"))
        key = parse_qs(body.decode("utf-8", "replace")).get("key", [""])[0]
        if not self.gate.accepts(key):
            return await self._render("login", {"error": "That is not the admin key."}, 401)
        response = RedirectResponse("/dashboard", 303, SECURITY_HEADERS)
        response.set_cookie(
            COOKIE,
            key,
            max_age=12 * 3600,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, _request: Request) -> Response:
        response = RedirectResponse("/dashboard/login", 303, SECURITY_HEADERS)
        response.delete_cookie(COOKIE, path="/")
        return response


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise bad_request(f"'{name}' must be a number", f"invalid_{name}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise bad_request(f"'{name}' must be a finite number", f"invalid_{name}")
    return value
