"""Forwarding to model backends: pooled connections, weighted endpoints, retries, timeouts.

One aiohttp session (one connection pool) serves every backend. A request goes to an endpoint
picked by weight; if that endpoint refuses the connection or times out before answering, the
next endpoint of the same model is tried, up to the model's `retries`. Failures map to OpenAI
error bodies: connection failures → 502, timeouts → 504.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Mapping

import aiohttp

from semrouter.config.schema import Endpoint, ModelConfig
from semrouter.pipeline.errors import RouterError

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "upgrade",
    }
)


def backend_unavailable(model: str, detail: str) -> RouterError:
    return RouterError(
        502,
        f"Backend for model '{model}' is unavailable: {detail}",
        "api_error",
        "backend_unavailable",
    )


def backend_timeout(model: str, seconds: float) -> RouterError:
    return RouterError(
        504,
        f"Backend for model '{model}' did not answer within {seconds:g}s",
        "api_error",
        "backend_timeout",
    )


def endpoint_order(endpoints: list[Endpoint], rng: random.Random) -> list[Endpoint]:
    """All endpoints, the first drawn by weight, the rest in config order (for retries)."""
    if len(endpoints) == 1:
        return endpoints
    first = rng.choices(endpoints, weights=[e.weight for e in endpoints])[0]
    return [first, *(e for e in endpoints if e is not first)]


class UpstreamResponse:
    """An open backend response; the body is read whole or streamed, then released."""

    def __init__(self, response: aiohttp.ClientResponse, model: ModelConfig) -> None:
        self._response = response
        self._model = model
        self.status = response.status
        self.content_type = response.headers.get("content-type", "application/json")
        self.headers = {
            k.lower(): v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP
        }

    @property
    def is_event_stream(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except TimeoutError:
            raise backend_timeout(self._model.name, self._model.timeout_s) from None
        except aiohttp.ClientError as exc:
            raise backend_unavailable(self._model.name, str(exc) or type(exc).__name__) from None
        finally:
            self._response.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives. Closing early (client gone) aborts the upstream request."""
        completed = False
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
            completed = True
        finally:
            if completed:
                self._response.release()
            else:
                self._response.close()

    def abort(self) -> None:
        self._response.close()


class Upstreams:
    def __init__(self, max_connections: int = 1024, seed: int | None = None) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random(seed)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, model: ModelConfig, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": client_headers.get("accept", "*/*"),
        }
        key = os.environ.get(model.api_key_env) if model.api_key_env else None
        if key:
            headers["authorization"] = f"Bearer {key}"
        elif "authorization" in client_headers:
            headers["authorization"] = client_headers["authorization"]
        return headers

    async def post(
        self, model: ModelConfig, path: str, body: bytes, client_headers: Mapping[str, str]
    ) -> UpstreamResponse:
        """POST body to the model's backend; returns once response headers arrived."""
        assert self._session is not None, "Upstreams.start() was not called"
        headers = self._headers(model, client_headers)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=model.connect_timeout_s, sock_read=model.timeout_s
        )
        endpoints = endpoint_order(model.endpoints, self._rng)
        attempts = 1 + model.retries
        failure: RouterError | None = None
        for attempt in range(attempts):
            endpoint = endpoints[attempt % len(endpoints)]
            try:
                response = await self._session.post(
                    endpoint.url + path, data=body, headers=headers, timeout=timeout
                )
            except TimeoutError:
                failure = backend_timeout(model.name, model.timeout_s)
            except aiohttp.ClientError as exc:
                failure = backend_unavailable(model.name, str(exc) or type(exc).__name__)
            else:
                return UpstreamResponse(response, model)
        assert failure is not None
        raise failure
