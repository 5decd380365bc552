"""`semrouter extproc --metrics-port`: the pipeline's Prometheus metrics over plain HTTP.

The gRPC port speaks only ext_proc and health, so metrics get a port of their own, served on the
same event loop. GET /metrics passes the same admin check as `semrouter serve`'s /metrics
(`Pipeline.authorize_admin`); anything else is a 404.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from semrouter.pipeline.errors import RouterError
from semrouter.pipeline.flow import Pipeline


def _error(error: RouterError) -> web.Response:
    return web.Response(
        body=error.body(),
        status=error.status,
        headers=error.headers(),
        content_type="application/json",
    )


async def serve_metrics(pipeline: Pipeline, host: str, port: int) -> web.AppRunner:
    """Start serving; the caller cleans the returned runner up. Raises OSError if the address
    cannot be bound."""

    async def metrics(request: web.Request) -> web.Response:
        try:
            pipeline.authorize_admin(request.headers, request.remote)
        except RouterError as error:
            pipeline.metrics.failed(error)
            return _error(error)
        return web.Response(
            body=generate_latest(pipeline.metrics.registry),
            headers={"content-type": CONTENT_TYPE_LATEST},
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
