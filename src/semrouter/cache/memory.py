"""The in-process cache backend: per-scope exact scans and HNSW indexes, LRU and TTL eviction.

Each scope (keys.py: tenant, model, system prompt, parameters, ...) holds its own entries, so
a search never sees another scope's and costs what its own scope's size costs (one index
filtered by scope is a hundred times slower once the scope is a hundredth of it). A scope of
fewer than `GRAPH_AT` entries is scanned exactly (a matrix product: 0.07 ms for 1,024); at
`GRAPH_AT` it gets an HNSW index of its own (hnswlib, from the chroma-hnswlib wheels: PyPI's
hnswlib is source only), built in a worker thread (about 90 ms) while the scan goes on serving,
then grown entry by entry (the rows are dropped). An index costs 2.6 MB of its own (hnswlib's
per-index locks), which is why small scopes are not given one; at most `max_entries /
GRAPH_AT` exist.

Across all scopes at most `max_entries` are kept: past it the least recently used entry goes
(its row reused, or its index slot marked deleted and reused), so memory stays bounded; a scope
goes with its last entry. An entry older than `ttl_s` is never returned, and is evicted when a
search meets it or it reaches the LRU end. An entry with the same scope and text as a new one
replaces it. Searches and stores run on the event loop: a search of a 100k-entry scope takes
about 0.3 ms (docs/benchmarks.md), less than handing it to a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import hnswlib
import numpy as np

from semrouter.cache.backend import CacheBackend, Candidate, Entry

GRAPH_AT = 1024
EF_SEARCH = 64
M = 16
EF_CONSTRUCTION = 100


@dataclass(slots=True)
class _Slot:
    entry: Entry
    expires: float


@dataclass(slots=True)
class _Scope:
    """One scope's vectors: rows of a matrix (scanned) until it has an index, which then holds
    them alone (`row_of` maps each live label to its row, -1 once indexed)."""

    rows: np.ndarray
    labels: list[int | None] = field(default_factory=list)  # by row; None: a free row
    row_of: dict[int, int] = field(default_factory=dict)
    free: list[int] = field(default_factory=list)
    index: hnswlib.Index | None = None
    deleted: int = 0  # index slots marked deleted, to reuse
    building: bool = False

    @property
    def size(self) -> int:
        return len(self.row_of)

    def add(self, label: int, vector: np.ndarray, limit: int) -> None:
        if self.index is not None:
            self._index_add(self.index, label, vector, limit)
            self.row_of[label] = -1
            return
        if self.free:
            row = self.free.pop()
            self.labels[row] = label
        else:
            row = len(self.labels)
            if row == len(self.rows):
                grown = np.zeros((max(16, 2 * row), self.rows.shape[1]), dtype=np.float32)
                grown[:row] = self.rows
                self.rows = grown
            self.labels.append(label)
        self.rows[row] = vector
        self.row_of[label] = row

    def _index_add(self, index: hnswlib.Index, label: int, vector: np.ndarray, limit: int) -> None:
        if self.deleted:
            index.add_items(vector[None, :], [label], replace_deleted=True)
            self.deleted -= 1
            return
        if index.get_current_count() >= index.get_max_elements():
            index.resize_index(min(index.get_max_elements() * 2, limit))
        index.add_items(vector[None, :], [label])

    def remove(self, label: int) -> None:
        row = self.row_of.pop(label)
        if self.index is not None:
            self.index.mark_deleted(label)
            self.deleted += 1
            return
        self.labels[row] = None
        self.free.append(row)

    def query(self, vector: np.ndarray, count: int) -> list[tuple[int, float]]:
        k = min(count, self.size)
        if self.index is None:
            scores = self.rows[: len(self.labels)] @ vector
            if self.free:
                scores[self.free] = -np.inf
            best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(k)
            best = best[np.argsort(-scores[best])]
            return [
                (label, float(scores[i]))
                for i in best.tolist()
                if (label := self.labels[i]) is not None
            ]
        while True:
            try:
                labels, distances = self.index.knn_query(vector, k=k)
                break
            except RuntimeError:  # the graph search reached fewer live entries than k
                if k == 1:
                    return []
                k //= 2
        pairs = zip(labels[0].tolist(), distances[0].tolist(), strict=True)
        return [(label, 1.0 - distance) for label, distance in pairs]

    def wants_index(self) -> bool:
        return self.index is None and not self.building and self.size >= GRAPH_AT

    def snapshot(self) -> tuple[np.ndarray, list[int]]:
        live = sorted(self.row_of.items(), key=lambda item: item[1])
        return self.rows[[row for _, row in live]].copy(), [label for label, _ in live]

    def adopt(self, index: hnswlib.Index, built: list[int], limit: int) -> None:
        """Take the index built from `built`, catching up with what changed meanwhile."""
        for label in set(built) - self.row_of.keys():
            index.mark_deleted(label)
            self.deleted += 1
        for label in self.row_of.keys() - set(built):
            self._index_add(index, label, self.rows[self.row_of[label]], limit)
        self.index = index
        self.row_of = dict.fromkeys(self.row_of, -1)
        self.rows, self.labels, self.free = self.rows[:0], [], []


def _index_of(vectors: np.ndarray, labels: list[int], limit: int) -> hnswlib.Index:
    index = hnswlib.Index(space="ip", dim=int(vectors.shape[1]))
    index.init_index(
        max_elements=min(max(2 * len(labels), GRAPH_AT), limit),
        ef_construction=EF_CONSTRUCTION,
        M=M,
        allow_replace_deleted=True,
    )
    index.set_ef(EF_SEARCH)
    index.add_items(vectors, labels, num_threads=1)
    return index


class MemoryBackend(CacheBackend):
    name = "memory"

    def __init__(
        self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._slots: OrderedDict[int, _Slot] = OrderedDict()  # least recently used first
        self._scopes: dict[str, _Scope] = {}
        self._by_text: dict[tuple[str, str], int] = {}
        self._next_label = 0

    async def search(
        self, scope: str, vector: np.ndarray, count: int, min_similarity: float
    ) -> list[Candidate]:
        return self.search_sync(scope, vector, count, min_similarity)

    def search_sync(
        self, scope: str, vector: np.ndarray, count: int, min_similarity: float
    ) -> list[Candidate]:
        held = self._scopes.get(scope)
        if held is None:
            return []
        now = self._clock()
        found = []
        for label, similarity in held.query(np.asarray(vector, dtype=np.float32), count):
            slot = self._slots[label]
            if slot.expires <= now:
                self._evict(label)
            elif similarity >= min_similarity:
                found.append(Candidate(slot.entry, similarity, str(label)))
        return found

    async def store(self, entry: Entry, vector: np.ndarray) -> None:
        scope = self._add(entry, vector)
        if scope.wants_index():
            scope.building = True
            try:
                vectors, labels = scope.snapshot()
                index = await asyncio.to_thread(_index_of, vectors, labels, self.max_entries)
                scope.adopt(index, labels, self.max_entries)
            finally:
                scope.building = False

    def store_sync(self, entry: Entry, vector: np.ndarray) -> None:
        """`store` without an event loop (the index, when due, is built in this thread)."""
        scope = self._add(entry, vector)
        if scope.wants_index():
            vectors, labels = scope.snapshot()
            scope.adopt(_index_of(vectors, labels, self.max_entries), labels, self.max_entries)

    def _add(self, entry: Entry, vector: np.ndarray) -> _Scope:
        same = self._by_text.get((entry.scope, entry.text))
        if same is not None:
            self._evict(same)
        now = self._clock()
        while self._slots and (
            len(self._slots) >= self.max_entries or next(iter(self._slots.values())).expires <= now
        ):
            self._evict(next(iter(self._slots)))
        scope = self._scopes.get(entry.scope)
        if scope is None:
            rows = np.zeros((0, int(vector.shape[-1])), dtype=np.float32)
            scope = self._scopes[entry.scope] = _Scope(rows)
        label = self._next_label
        self._next_label += 1
        scope.add(label, np.asarray(vector, dtype=np.float32), self.max_entries)
        self._slots[label] = _Slot(entry, now + self.ttl_s)
        self._by_text[(entry.scope, entry.text)] = label
        return scope

    async def touch(self, candidate: Candidate) -> None:
        label = int(candidate.key)
        if label in self._slots:
            self._slots.move_to_end(label)

    async def size(self) -> int:
        return len(self._slots)

    def _evict(self, label: int) -> None:
        slot = self._slots.pop(label)
        del self._by_text[(slot.entry.scope, slot.entry.text)]
        scope = self._scopes[slot.entry.scope]
        scope.remove(label)
        if not scope.size:
            del self._scopes[slot.entry.scope]  # its rows and index go with its last entry
