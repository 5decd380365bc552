"""`CacheStage`: the pipeline stage that answers a request from an earlier one's response.

After the decision (and the other stages: the key sees the tools actually forwarded), for
each chat request it sets `x-semrouter-cache`:

  bypass  not looked up, not stored: the cache is off or disabled for the decision, the client
          sent `Cache-Control: no-store`, `n` > 1, no user turn, a last user turn longer than
          `max_text_chars`, no embedding, a guard redacted it (semrouter.guards: the entry would
          keep its values, and its answer holds placeholders), or the backend is unavailable
          (Redis down or slow)
  hit     an entry of the same scope (keys.py) whose last user turn is within the threshold
          (the decision's, else `cache.threshold`) and passes verification (verify.py): the
          stage answers (stages.StageAnswer), as JSON or SSE as asked; no backend call
  miss    none: the response will be stored if it completes successfully (responses.py), in
          the background, never delaying the client. `Cache-Control: no-cache` skips the
          lookup but stores.

The embedding is the router's one encoder pass over the last user turn (the SignalReport's);
only a request routed without signals (a named model) is encoded here, once. Counters (in the
pipeline's registry): lookups by result and reason, verification rejections by check, stores
by outcome, backend errors by operation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from semrouter.cache.backend import CacheBackend, CacheUnavailable, Entry
from semrouter.cache.keys import last_user_index, scope_of, tenant_of, user_text
from semrouter.cache.memory import MemoryBackend
from semrouter.cache.redis import RedisBackend
from semrouter.cache.responses import Answer, stored_answer
from semrouter.cache.verify import verify
from semrouter.config.schema import DIRECT_DECISION, CacheConfig
from semrouter.embed.base import Embedder, EmbeddingError
from semrouter.stages import (
    CompletedResponse,
    ResponseObserver,
    Stage,
    StageAnswer,
    StageContext,
)

log = logging.getLogger("semrouter.cache")

CACHE_HEADER = "x-semrouter-cache"
JSON = "application/json"
EVENT_STREAM = "text/event-stream"


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.lookups = Counter(
            "semrouter_cache_lookups",
            "Chat requests by cache result (hit, miss, bypass) and reason.",
            ["result", "reason"],
            registry=registry,
        )
        self.rejections = Counter(
            "semrouter_cache_verification_rejections",
            "Cached entries within the threshold that verification refused, by check.",
            ["check"],
            registry=registry,
        )
        self.stores = Counter(
            "semrouter_cache_stores",
            "Responses to cache misses by outcome (stored, unstorable, too_many_pending, "
            "backend_error).",
            ["outcome"],
            registry=registry,
        )
        self.backend_errors = Counter(
            "semrouter_cache_backend_errors",
            "Cache backend calls that failed or timed out, by operation.",
            ["backend", "op"],
            registry=registry,
        )


def create_backend(config: CacheConfig, metrics: CacheMetrics) -> CacheBackend | None:
    if config.backend == "memory":
        return MemoryBackend(config.max_entries, config.ttl_s)
    if config.backend == "redis":
        errors = metrics.backend_errors
        return RedisBackend(
            config.redis,
            config.max_entries,
            config.ttl_s,
            on_error=lambda op: errors.labels("redis", op).inc(),
        )
    return None


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the stage needs of a request to look it up and store its answer."""

    scope: str
    text: str
    vector: np.ndarray


class CacheStage(Stage):
    name = "cache"

    def __init__(
        self,
        config: CacheConfig,
        embedder: Embedder | None,
        registry: CollectorRegistry | None = None,
        backend: CacheBackend | None = None,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.metrics = CacheMetrics(registry)
        self.backend = backend or create_backend(config, self.metrics)
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self.backend is not None:
            await self.backend.start()

    async def close(self) -> None:
        """Let the stores in flight finish (each is bounded by the backend's timeout)."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=5)
        if self.backend is not None:
            await self.backend.close()

    def threshold(self, decision: str) -> float | None:
        """The decision's similarity threshold; None where the cache is off for it."""
        override = self.config.decisions.get(decision)
        if self.backend is None or (override is not None and override.enabled is False):
            return None
        if override is not None and override.threshold is not None:
            return override.threshold
        return self.config.threshold

    async def apply(self, context: StageContext) -> None:
        threshold = self.threshold(context.decision)
        reason = "off" if threshold is None else self._refusal(context)
        lookup = None
        if reason is None:
            lookup = await self._lookup_key(context)
            reason = "no_embedding" if lookup is None else None
        if reason is not None or lookup is None or threshold is None:
            self._result(context, "bypass", reason or "off")
            return
        if "no-cache" in _directives(context):
            self._miss(context, lookup, "no-cache")
            return
        assert self.backend is not None
        try:
            candidates = await self.backend.search(
                lookup.scope, lookup.vector, self.config.candidates, threshold
            )
        except CacheUnavailable as exc:
            log.debug("cache lookup skipped: %s", exc)
            self._result(context, "bypass", "backend_unavailable")
            return
        for candidate in candidates:
            similarity = candidate.similarity
            if self.config.verify:
                verdict = verify(lookup.text, candidate.entry.text)
                check = verdict.check
                similarity -= verdict.penalty
                if check is None and similarity < threshold:
                    check = "wording"
                if check is not None:
                    if not context.probe:
                        self.metrics.rejections.labels(check).inc()
                    context.trace.setdefault(self.name, {}).setdefault("rejected", []).append(
                        {"check": check, "similarity": round(candidate.similarity, 4)}
                    )
                    continue
            self._hit(context, Answer.loads(candidate.entry.answer), similarity)
            if not context.probe:
                self._background(self.backend.touch(candidate))
            return
        self._miss(context, lookup, "not_found")

    def _refusal(self, context: StageContext) -> str | None:
        """Why this request is neither looked up nor stored (None: it may be)."""
        if context.private:  # a guard redacted it: neither its values nor its answer are kept
            return "redacted"
        if "no-store" in _directives(context):
            return "no-store"
        n = context.body.get("n")
        if isinstance(n, int) and n > 1:
            return "n"
        return None

    async def _lookup_key(self, context: StageContext) -> Lookup | None:
        last = last_user_index(context.messages)
        if last is None:
            return None
        text = user_text(context.messages[last])
        if not text or len(text) > self.config.max_text_chars:
            return None
        signals = context.signals
        vector = signals.embedding if signals is not None else None
        # Encoded here only where the router ran no encoder pass: a named model, or signals
        # that need no embedding (a fallback route's encoder failed or was too slow).
        unencoded = signals is not None or context.decision == DIRECT_DECISION
        if vector is None and unencoded and self.embedder is not None:
            try:
                vector = (await self.embedder.encode([text])).embeddings[0]
            except EmbeddingError:
                return None
        if vector is None:
            return None
        tenant = tenant_of(context.tenant, context.client_headers)
        return Lookup(scope_of(context.body, context.model.name, tenant), text, vector)

    def _result(self, context: StageContext, result: str, reason: str) -> None:
        context.headers[CACHE_HEADER] = result
        trace = context.trace.setdefault(self.name, {})
        trace.update(action=result, reason=reason)
        if not context.probe:
            self.metrics.lookups.labels(result, reason).inc()

    def _hit(self, context: StageContext, answer: Answer, similarity: float) -> None:
        body = context.body
        if body.get("stream") is True:
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            context.answer = StageAnswer(answer.events(usage), EVENT_STREAM)
        else:
            context.answer = StageAnswer(answer.completion(), JSON)
        self._result(context, "hit", "verified" if self.config.verify else "similar")
        context.trace[self.name]["similarity"] = round(similarity, 4)

    def _miss(self, context: StageContext, lookup: Lookup, reason: str) -> None:
        self._result(context, "miss", reason)
        context.observers.append(_Store(self, lookup))

    def store(self, lookup: Lookup, response: CompletedResponse) -> None:
        """Keep a miss's completed response, in the background (bounded)."""
        answer = stored_answer(response)
        if answer is None:
            self.metrics.stores.labels("unstorable").inc()
            return
        if len(self._pending) >= self.config.max_pending_stores or self.backend is None:
            self.metrics.stores.labels("too_many_pending").inc()
            return
        entry = Entry(lookup.scope, lookup.text, answer.dumps())
        self._background(self._store(entry, lookup.vector))

    async def _store(self, entry: Entry, vector: np.ndarray) -> None:
        assert self.backend is not None
        try:
            await self.backend.store(entry, vector)
        except CacheUnavailable as exc:
            log.debug("cache store skipped: %s", exc)
            self.metrics.stores.labels("backend_error").inc()
            return
        self.metrics.stores.labels("stored").inc()

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error("cache background work failed", exc_info=exc)


class _Store(ResponseObserver):
    """Stores one miss's response once it completed."""

    def __init__(self, stage: CacheStage, lookup: Lookup) -> None:
        self.stage = stage
        self.lookup = lookup
        self.max_bytes = stage.config.max_response_bytes

    def wants(self, status: int, content_type: str) -> bool:
        return 200 <= status < 300 and content_type.startswith((JSON, EVENT_STREAM))

    def completed(self, response: CompletedResponse) -> None:
        self.stage.store(self.lookup, response)


def _directives(context: StageContext) -> set[str]:
    value = context.client_headers.get("cache-control", "")
    return {d.strip().lower() for d in value.split(",")}
