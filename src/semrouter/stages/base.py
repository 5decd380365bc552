"""`Stage` and `StageContext`: what every pipeline stage implements and what it is given.

`Pipeline.prepare` routes a request, rewrites its body for the chosen model, then hands one
`StageContext` to each configured stage in order (`await stage.apply(context)`) before the body
is serialised. A stage changes `body` in place (never `messages`, the client's), adds response
headers to `headers` and what /api/v1/classify should show to `trace` under its own name; it
refuses a request by raising the pipeline's RouterError.

Two more things a stage may do, which both transports carry out the same way:
- answer the request itself: set `context.answer` (a `StageAnswer`); the later stages do not
  run and the backend is never called (`semrouter serve` sends it as the response, ext_proc as
  an ImmediateResponse);
- watch the backend's response: append a `ResponseObserver` to `context.observers`. The
  transport keeps the body as it passes (a `ResponseCapture`, bounded by the observer's
  `max_bytes`; the client is never held up) and calls `completed` once it ended normally;
- change the response on its way to the client: append a `ResponseRewriter` to
  `context.rewriters`. Every body chunk passes through the rewriters in order (a stage's own
  answer too); observers see the backend's bytes before any rewriting.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from semrouter.config.schema import ModelConfig
from semrouter.signals.engine import SignalInput, SignalReport


@dataclass(slots=True)
class StageContext:
    """One request as the stages see it, after routing.

    messages: the client's messages (read only).
    body: the body the backend will get, already rewritten for `model`; stages change it.
    decision: the routing decision's name ('direct' for a request that named its model).
    model: the chosen model.
    request: the bounded view of the request the signals read (routing text, tools, context).
    signals: the SignalReport, None when no classification ran (direct model, fallback).
    headers: response headers to add (`x-semrouter-*`).
    trace: per stage, what it did, for /api/v1/classify.
    client_headers: the client's request headers (lowercase names).
    tenant: the authenticated tenant (router.auth on), else None.
    answer: set by a stage that answers the request itself (no backend call).
    observers: what wants to see the backend's completed response.
    rewriters: what changes the response the client gets, in order.
    probe: /api/v1/classify: report what would happen, change no state (no stores, counters).
    private: the body holds values the client's were replaced by (a guard's redaction): no
      stage keeps the request or its response (the cache bypasses it).
    retarget: sends the request to another model: the route and `body` are made anew for it
      (what earlier stages changed in `body` is lost, so a stage that re-routes runs first).
    """

    messages: list[dict[str, Any]]
    body: dict[str, Any]
    decision: str
    model: ModelConfig
    request: SignalInput
    signals: SignalReport | None
    headers: dict[str, str] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)
    client_headers: Mapping[str, str] = field(default_factory=dict)
    tenant: str | None = None
    answer: StageAnswer | None = None
    observers: list[ResponseObserver] = field(default_factory=list)
    rewriters: list[ResponseRewriter] = field(default_factory=list)
    probe: bool = False
    private: bool = False
    retarget: Callable[[ModelConfig], None] | None = None


@dataclass(frozen=True, slots=True)
class StageAnswer:
    """A whole response a stage gives instead of the backend's (the route headers are added)."""

    body: bytes
    content_type: str
    status: int = 200


@dataclass(frozen=True, slots=True)
class CompletedResponse:
    """A backend response that ended normally: its status, content type and whole body (for an
    event stream, the events as they were relayed, `[DONE]` included)."""

    status: int
    content_type: str
    body: bytes


class ResponseObserver(ABC):
    """Sees the backend's response to one request, once it is complete."""

    max_bytes: int
    """The most body bytes it wants; past that the response is not handed over at all."""

    @abstractmethod
    def wants(self, status: int, content_type: str) -> bool:
        """Whether the response with these headers is worth keeping (else it is not)."""

    @abstractmethod
    def completed(self, response: CompletedResponse) -> None:
        """The response ended normally (no backend failure, no disconnect). Must return at
        once: slow work goes to the background."""


class ResponseCapture:
    """What a transport keeps of one backend response for the observers of its request: the
    body as it passes, up to the largest `max_bytes` wanted. `feed` each chunk as it is
    forwarded, `finish` when the body ended normally; an abandoned capture is just dropped."""

    def __init__(
        self, observers: Sequence[ResponseObserver], status: int, content_type: str
    ) -> None:
        self.status = status
        self.content_type = content_type
        self.observers = [o for o in observers if o.wants(status, content_type)]
        self.limit = max((o.max_bytes for o in self.observers), default=0)
        self._body = bytearray()

    @property
    def active(self) -> bool:
        """Some observer still wants the body (False once it outgrew every limit)."""
        return bool(self.observers)

    def feed(self, chunk: bytes) -> None:
        if not self.observers:
            return
        self._body += chunk
        if len(self._body) > self.limit:
            self.observers = []
            self._body = bytearray()

    def finish(self) -> None:
        body = bytes(self._body)
        response = CompletedResponse(self.status, self.content_type, body)
        for observer in self.observers:
            if len(body) <= observer.max_bytes:
                observer.completed(response)
        self.observers = []


class ResponseRewriter(ABC):
    """Changes the backend's response body (JSON or an event stream) on its way to the client,
    chunk by chunk. One instance per request. What it holds back between chunks (a partial
    event) must be bounded."""

    def begin(self, status: int, content_type: str) -> str:
        """The response's status and content type, before any body: returns the content type
        the client gets."""
        return content_type

    @abstractmethod
    def feed(self, chunk: bytes) -> bytes:
        """The next chunk as the backend sent it; returns what the client gets now."""

    @abstractmethod
    def finish(self) -> bytes:
        """The body ended normally: what is still held back."""


class RewriteChain:
    """The rewriters of one response, applied in order (the first sees the backend's bytes)."""

    def __init__(self, rewriters: Sequence[ResponseRewriter]) -> None:
        self.rewriters = list(rewriters)

    def __bool__(self) -> bool:
        return bool(self.rewriters)

    def begin(self, status: int, content_type: str) -> str:
        for rewriter in self.rewriters:
            content_type = rewriter.begin(status, content_type)
        return content_type

    def feed(self, chunk: bytes) -> bytes:
        for rewriter in self.rewriters:
            if not chunk:
                break
            chunk = rewriter.feed(chunk)
        return chunk

    def finish(self) -> bytes:
        pending = b""
        for rewriter in self.rewriters:
            pending = (rewriter.feed(pending) if pending else b"") + rewriter.finish()
        return pending

    def whole(self, status: int, content_type: str, body: bytes) -> tuple[str, bytes]:
        """A body that is all there: its content type and bytes as the client gets them."""
        content_type = self.begin(status, content_type)
        return content_type, self.feed(body) + self.finish()


class Stage(ABC):
    """A step of the request path after routing. Implementations are shared by every request
    (and both transports): per-request state belongs in the context, and every cache a stage
    keeps has a bound from config."""

    name: str
    """The key of this stage's entry in `StageContext.trace`."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources once, after the router has started (its embedder is running)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release them, at shutdown."""

    @abstractmethod
    async def apply(self, context: StageContext) -> None:
        """Do this stage's work on one request; raise RouterError to refuse it."""
