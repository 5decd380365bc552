"""Micro-batching of concurrent encode calls onto one inference worker thread.

Owns the queueing policy. Requests from many coroutines are coalesced into batches of at most
``max_batch`` texts and run by a single worker thread, so the event loop never blocks and the
engine sees few, larger calls:

* an idle engine runs a lone request at once (it never pays the wait);
* requests that pile up while a batch is running go together into the next batch;
* when several requests are already waiting but the batch is not full, it waits for more until
  ``max_wait_ms`` after the oldest request was queued, and no longer.

A failed batch fails only the callers whose texts were in it, always with an EmbeddingError
(an engine's own exception, e.g. onnxruntime failing to allocate, is wrapped), so the router's
`on_embedding_error` policy answers them instead of a 500. A caller that gives up
(cancellation, e.g. a missed deadline) is dropped from its batch if that batch has not started.
The queue is bounded: past ``max_queue`` waiting texts, ``submit`` fails at once with
``EncoderOverloaded`` instead of queueing without limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from semrouter.embed.base import EmbeddingError, Encoded, EncoderOverloaded

log = logging.getLogger("semrouter.embed")


@dataclass(slots=True)
class _Request:
    texts: list[str]
    future: asyncio.Future[Encoded]
    queued_at: float = field(default_factory=time.monotonic)


def _slice(result: Encoded, start: int, stop: int) -> Encoded:
    return Encoded(
        embeddings=result.embeddings[start:stop],
        features=result.features[start:stop],
        token_counts=result.token_counts[start:stop],
        token_ids=result.token_ids[start:stop],
    )


class MicroBatcher:
    """Coalesces concurrent ``submit`` calls into batched calls of ``run`` on one thread.

    ``run`` must accept any number of texts (the engine splits oversized input itself). The
    batcher is bound to the event loop that started it; ``close`` makes it restartable.
    """

    def __init__(
        self,
        run: Callable[[list[str]], Encoded],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 512,
        thread_name: str = "semrouter-embed",
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_ms >= 0")
        self._max_queue = max_queue
        self._queued_texts = 0
        self._run = run
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000.0
        self._thread_name = thread_name
        self._pending: deque[_Request] = deque()
        self._in_flight: list[_Request] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches_run = 0
        """Inference calls made so far (for metrics and tests)."""

    async def start(self) -> None:
        """Start the worker thread and the coalescing task on the running loop (idempotent)."""
        if self._task is not None:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._thread_name)
        self._task = asyncio.get_running_loop().create_task(self._work(), name=self._thread_name)

    async def close(self) -> None:
        """Stop the worker; requests not yet answered fail with ``EmbeddingError``."""
        task, executor = self._task, self._executor
        unanswered = [*self._in_flight, *self._pending]
        self._task = self._executor = self._wakeup = None
        self._in_flight, self._pending = [], deque()
        self._queued_texts = 0
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for req in unanswered:
            if not req.future.done():
                req.future.set_exception(EmbeddingError("embedder closed"))
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: Sequence[str]) -> Encoded:
        """Encode texts as part of whatever batch they land in."""
        if self._task is None:
            await self.start()
        assert self._wakeup is not None
        if self._queued_texts and self._queued_texts + len(texts) > self._max_queue:
            raise EncoderOverloaded(
                f"{self._queued_texts} texts already wait for the encoder (limit {self._max_queue})"
            )
        req = _Request(list(texts), asyncio.get_running_loop().create_future())
        self._pending.append(req)
        self._queued_texts += len(req.texts)
        self._wakeup.set()
        return await req.future

    async def _work(self) -> None:
        assert self._wakeup is not None and self._executor is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = await self._collect()
            live = [r for r in batch if not r.future.done()]
            if not live:
                continue
            self._in_flight = live
            texts = [t for r in live for t in r.texts]
            self.batches_run += 1
            try:
                result = await loop.run_in_executor(self._executor, self._run, texts)
            except Exception as exc:
                if not isinstance(exc, EmbeddingError):
                    log.warning("encoder batch of %d texts failed", len(texts), exc_info=exc)
                    exc = EmbeddingError(f"the encoder failed: {type(exc).__name__}")
                for r in live:
                    if not r.future.done():
                        r.future.set_exception(exc)
            else:
                start = 0
                for r in live:
                    stop = start + len(r.texts)
                    if not r.future.done():
                        r.future.set_result(_slice(result, start, stop))
                    start = stop
            finally:
                self._in_flight = []

    def _take(self) -> _Request:
        req = self._pending.popleft()
        self._queued_texts -= len(req.texts)
        return req

    async def _collect(self) -> list[_Request]:
        """Take the oldest request plus whatever fits, waiting only under concurrency."""
        assert self._wakeup is not None
        first = self._take()
        batch, size = [first], len(first.texts)
        deadline = first.queued_at + self._max_wait_s
        while size < self._max_batch:
            if self._pending:
                if size + len(self._pending[0].texts) > self._max_batch:
                    break
                nxt = self._take()
                batch.append(nxt)
                size += len(nxt.texts)
                continue
            remaining = deadline - time.monotonic()
            if len(batch) == 1 or remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        return batch
