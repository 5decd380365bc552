"""The interface every cache backend implements (memory.py, redis.py), and what it holds.

A backend keeps entries, each under a scope (keys.py), with the unit-norm embedding of its last
user turn. `search` returns the nearest entries of one scope, best first, never one of another
scope; what counts as a hit is decided above it (stage.py: threshold, verification). Every
backend bounds its entries (`max_entries`, LRU past it) and their lifetime (`ttl_s`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


class CacheUnavailable(Exception):
    """The backend could not answer in time (Redis down or slow): go on without the cache."""


@dataclass(frozen=True, slots=True)
class Entry:
    """scope: keys.scope_of's digest; text: the last user turn as written (for verification);
    answer: responses.Answer.dumps()."""

    scope: str
    text: str
    answer: bytes


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored entry near a query; `key` identifies it to the backend (for `touch`)."""

    entry: Entry
    similarity: float
    key: str


class CacheBackend(ABC):
    name: str

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect (never fails for an unreachable server: lookups are skipped until it is)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect."""

    @abstractmethod
    async def search(
        self, scope: str, vector: np.ndarray, count: int, min_similarity: float
    ) -> list[Candidate]:
        """Up to `count` live entries of `scope` with cosine >= min_similarity, best first."""

    @abstractmethod
    async def store(self, entry: Entry, vector: np.ndarray) -> None:
        """Keep an entry for ttl_s (evicting the least recently used one past max_entries)."""

    @abstractmethod
    async def touch(self, candidate: Candidate) -> None:
        """A hit: the entry becomes the most recently used."""

    @abstractmethod
    async def size(self) -> int:
        """Entries held now (expired ones not yet evicted included)."""
