"""Forwarding to model backends: pooled connections, weighted endpoints, retries, breakers.

One aiohttp session (one connection pool) serves every backend. A request goes to an endpoint
picked by weight, then, for each of the model's `retries`, to the next one in config order. An
attempt fails when the connection is refused or reset, when no response headers come within
`timeout_s` (connecting included), or when the backend answers 429 or 5xx. Endpoints whose
circuit breaker is open (semrouter.proxy.breaker), or that answered with `Retry-After` (honoured
up to five minutes), are skipped until then. When every attempt failed the client gets the last
failure: 502 `backend_unavailable`, 504 `backend_timeout` or 429 `rate_limit_exceeded`, with a
`Retry-After` header when an endpoint is known to be out until some time; when no endpoint was
in rotation at all, 503 `no_backend_available` with `Retry-After`.

With a TTFT watchdog (`first_byte_s`, the model's `slo.first_byte_timeout_ms`, streamed requests
only), an attempt also fails when the first body byte of a 2xx event stream has not come within
that time of sending (headers included); the byte is read before `post` returns, so nothing has
reached the client and the next endpoint can be tried.

Once headers came, no gap between body chunks may exceed `stream_idle_timeout_s`. A non-streamed
body is read up to `router.limits.max_response_bytes`, and a 2xx one must be JSON; a stream is
relayed in whole events, each checked (semrouter.proxy.sse), until `data: [DONE]`. A body that
goes wrong (silence, a lost connection, a stream ending before `[DONE]`, garbage, over a cap)
raises RouterError: a 502/504 response before anything was sent, an SSE error event after.
Every failure is counted by model and kind; all but 429s and oversized responses also count
against the endpoint's breaker.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial

import aiohttp
import orjson

from semrouter.auth import backend_credentials
from semrouter.config.schema import Endpoint, LimitsConfig, ModelConfig
from semrouter.observe import PROPAGATED_HEADERS
from semrouter.pipeline.errors import (
    RouterError,
    backend_first_byte_timeout,
    backend_invalid,
    backend_rate_limited,
    backend_stalled,
    backend_timeout,
    backend_too_large,
    backend_unavailable,
    no_backend_available,
)
from semrouter.proxy.breaker import BreakerState, CircuitBreaker
from semrouter.proxy.metrics import Metrics
from semrouter.proxy.sse import SseEvents, SseViolation

log = logging.getLogger("semrouter.proxy.upstream")

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
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 300.0


class Fault(StrEnum):
    """Why a backend attempt failed: the `kind` label of semrouter_backend_failures."""

    CONNECT = "connect"  # refused, reset, unreachable, or no connection within connect_timeout_s
    TIMEOUT = "timeout"  # no response headers within timeout_s
    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    IDLE_TIMEOUT = "idle_timeout"  # headers, then silence for stream_idle_timeout_s
    CLOSED = "closed"  # connection lost mid-body, or a stream ending before [DONE]
    INVALID = "invalid"  # a 2xx body that is not JSON, a stream that is not SSE of JSON
    TOO_LARGE = "too_large"  # over max_response_bytes or max_sse_event_bytes
    FIRST_BYTE = "first_byte_timeout"  # the TTFT watchdog: no first stream byte in time


_NOT_THE_ENDPOINTS_FAULT = frozenset({Fault.RATE_LIMITED, Fault.TOO_LARGE})


def endpoint_order(endpoints: list[Endpoint], rng: random.Random) -> list[Endpoint]:
    """All endpoints, the first drawn by weight, the rest in config order (for retries)."""
    if len(endpoints) == 1:
        return endpoints
    first = rng.choices(endpoints, weights=[e.weight for e in endpoints])[0]
    return [first, *(e for e in endpoints if e is not first)]


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """The wait a Retry-After value asks for (delta-seconds or HTTP-date), at most 5 minutes."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class UpstreamResponse:
    """An open backend response; the body is read whole or relayed as SSE, then released."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        model: ModelConfig,
        limits: LimitsConfig,
        on_fault: Callable[[Fault], None],
        first: bytes = b"",
    ) -> None:
        self._response = response
        self._first = first  # what the TTFT watchdog read already
        self._model = model
        self._limits = limits
        self._on_fault = on_fault
        self.status = response.status
        self.content_type = response.headers.get("content-type", "application/json")
        self.headers = {
            k.lower(): v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP
        }

    @property
    def is_event_stream(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    def _fail(self, fault: Fault, error: RouterError) -> RouterError:
        self._on_fault(fault)
        return error

    def _finish(self, complete: bool) -> None:
        """Give the connection back to the pool, or close it if the body was not read to the end
        (aiohttp closes a released connection whose body is unfinished, too)."""
        if complete:
            self._response.release()
        else:
            self._response.close()

    async def _next_chunk(self) -> bytes:
        """The body's next bytes (b"" at its end), waiting at most stream_idle_timeout_s."""
        if self._first:
            chunk, self._first = self._first, b""
            return chunk
        idle = self._model.stream_idle_timeout_s
        try:
            async with asyncio.timeout(idle):
                return await self._response.content.readany()
        except aiohttp.ClientError as exc:
            raise self._fail(
                Fault.CLOSED,
                backend_unavailable(
                    self._model.name, f"connection lost mid-body ({_describe(exc)})"
                ),
            ) from None
        except TimeoutError:
            raise self._fail(Fault.IDLE_TIMEOUT, backend_stalled(self._model.name, idle)) from None

    async def read(self) -> bytes:
        """The whole body, at most max_response_bytes; a 2xx body must be JSON."""
        cap = self._limits.max_response_bytes
        complete = False
        try:
            declared = self._response.content_length
            if declared is not None and declared > cap:
                raise self._too_large(cap, "a response")
            body = bytearray()
            while chunk := await self._next_chunk():
                body += chunk
                if len(body) > cap:
                    raise self._too_large(cap, "a response")
            if 200 <= self.status < 300:
                try:
                    orjson.loads(body)
                except orjson.JSONDecodeError:
                    raise self._fail(
                        Fault.INVALID, backend_invalid(self._model.name, "the body is not JSON")
                    ) from None
            complete = True
            return bytes(body)
        finally:
            self._finish(complete)

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """Whole SSE events as they arrive, up to `data: [DONE]`. Closing the iterator early
        (the client went away) aborts the upstream request."""
        events = SseEvents(self._limits.max_sse_event_bytes)
        try:
            while not events.done:
                chunk = await self._next_chunk()
                if not chunk:
                    raise self._fail(
                        Fault.CLOSED,
                        backend_unavailable(self._model.name, "the stream ended before [DONE]"),
                    )
                try:
                    ready = events.feed(chunk)
                except SseViolation as violation:
                    if violation.ready:
                        yield violation.ready
                    raise self._violation(violation) from None
                if ready:
                    yield ready
        finally:
            self._finish(events.done)

    def _too_large(self, limit: int, what: str) -> RouterError:
        return self._fail(Fault.TOO_LARGE, backend_too_large(self._model.name, limit, what))

    def _violation(self, violation: SseViolation) -> RouterError:
        if violation.too_large:
            return self._too_large(self._limits.max_sse_event_bytes, "an SSE event")
        return self._fail(Fault.INVALID, backend_invalid(self._model.name, str(violation)))


class Upstreams:
    """Every backend of every model: one connection pool, and a breaker per endpoint."""

    def __init__(
        self,
        limits: LimitsConfig | None = None,
        metrics: Metrics | None = None,
        max_connections: int = 1024,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits or LimitsConfig()
        self._metrics = metrics or Metrics()
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random(seed)
        self._clock = clock
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}

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

    def _breaker(self, model: ModelConfig, endpoint: Endpoint) -> CircuitBreaker:
        """The endpoint's breaker for this model (made on first use)."""
        key = (model.name, endpoint.url)
        breaker = self._breakers.get(key)
        if breaker is None:
            on_change = partial(self._breaker_changed, model.name, endpoint.url)
            breaker = self._breakers[key] = CircuitBreaker(model.breaker, on_change, self._clock)
        return breaker

    def _breaker_changed(self, model: str, url: str, state: BreakerState) -> None:
        self._metrics.breaker_transitions.labels(model, url, state).inc()
        log.warning("circuit breaker of model %s endpoint %s is now %s", model, url, state)

    def _record(self, model: ModelConfig, breaker: CircuitBreaker, fault: Fault) -> None:
        self._metrics.backend_failures.labels(model.name, fault).inc()
        if fault in _NOT_THE_ENDPOINTS_FAULT:
            breaker.release()
        else:
            breaker.failure()

    def _headers(self, model: ModelConfig, client_headers: Mapping[str, str]) -> dict[str, str]:
        """Never the client's credentials, unless the model forwards them (BYOK); the request
        id and W3C trace context (the observation's, semrouter.observe) go along."""
        headers = {
            "content-type": "application/json",
            "accept": client_headers.get("accept", "*/*"),
            **backend_credentials(model, client_headers),
        }
        for name in PROPAGATED_HEADERS:
            if (value := client_headers.get(name)) is not None:
                headers[name] = value
        return headers

    async def post(
        self,
        model: ModelConfig,
        path: str,
        body: bytes,
        client_headers: Mapping[str, str],
        first_byte_s: float | None = None,
    ) -> UpstreamResponse:
        """POST body to the model's backend; returns once response headers arrived (with
        first_byte_s, for an event stream: once its first body bytes arrived too).

        Raises RouterError when every attempt failed or no endpoint was in rotation."""
        headers = self._headers(model, client_headers)
        order = endpoint_order(model.endpoints, self._rng)
        endpoints = itertools.cycle(order)
        failure: RouterError | None = None
        tries = skipped = 0
        while tries <= model.retries and skipped < len(order):
            endpoint = next(endpoints)
            breaker = self._breaker(model, endpoint)
            if not breaker.acquire():
                skipped += 1
                continue
            tries, skipped = tries + 1, 0
            outcome = await self._attempt(
                model, breaker, endpoint.url + path, body, headers, first_byte_s
            )
            if isinstance(outcome, UpstreamResponse):
                return outcome
            failure = outcome
        back_in = min(self._breaker(model, e).ready_in() for e in order)
        if failure is None:
            raise no_backend_available(model.name, back_in)
        if failure.retry_after_s is None and back_in > 0:
            failure.retry_after_s = back_in  # e.g. the failure opened the only breaker
        raise failure

    async def _attempt(
        self,
        model: ModelConfig,
        breaker: CircuitBreaker,
        url: str,
        body: bytes,
        headers: dict[str, str],
        first_byte_s: float | None = None,
    ) -> UpstreamResponse | RouterError:
        """One try at one endpoint: its response, or the error it ended in (already recorded)."""
        assert self._session is not None, "Upstreams.start() was not called"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=model.connect_timeout_s)
        started = time.monotonic()
        watchdog = first_byte_s is not None and first_byte_s < model.timeout_s
        try:
            async with asyncio.timeout(first_byte_s if watchdog else model.timeout_s):
                response = await self._session.post(
                    url, data=body, headers=headers, timeout=timeout
                )
        except aiohttp.ClientError as exc:
            self._record(model, breaker, Fault.CONNECT)
            return backend_unavailable(model.name, _describe(exc))
        except TimeoutError:
            if watchdog:
                return self._first_byte_missed(model, breaker, first_byte_s)
            self._record(model, breaker, Fault.TIMEOUT)
            return backend_timeout(model.name, model.timeout_s)
        except BaseException:
            breaker.release()  # cancelled: the client went away, no verdict on the endpoint
            raise
        if response.status not in _RETRY_STATUSES:
            first = b""
            is_stream = response.headers.get("content-type", "").startswith("text/event-stream")
            if first_byte_s is not None and is_stream and response.status < 300:
                left = first_byte_s - (time.monotonic() - started)
                try:
                    async with asyncio.timeout(max(left, 0.0)):
                        first = await response.content.readany()
                except TimeoutError:
                    response.close()
                    return self._first_byte_missed(model, breaker, first_byte_s)
                except aiohttp.ClientError:
                    pass  # the stream's reader reports the lost connection (nothing read)
                except BaseException:
                    response.close()
                    breaker.release()
                    raise
            breaker.success()
            return UpstreamResponse(
                response, model, self._limits, partial(self._record, model, breaker), first
            )
        response.close()  # its body is not needed, and the connection is not worth keeping
        wait = retry_after_s(response.headers.get("retry-after")) or None
        if wait is not None:
            breaker.hold(wait)
        detail = f"HTTP {response.status}"
        if response.status == 429:
            self._record(model, breaker, Fault.RATE_LIMITED)
            return backend_rate_limited(model.name, detail, wait)
        self._record(model, breaker, Fault.SERVER_ERROR)
        return backend_unavailable(model.name, detail, wait)

    def _first_byte_missed(
        self, model: ModelConfig, breaker: CircuitBreaker, first_byte_s: float | None
    ) -> RouterError:
        assert first_byte_s is not None
        self._record(model, breaker, Fault.FIRST_BYTE)
        return backend_first_byte_timeout(model.name, first_byte_s)
