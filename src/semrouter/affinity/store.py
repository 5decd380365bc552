"""Where sessions' routes are kept: `SessionState`, the store interface and the in-memory store.

A session's state is small and fixed in size: the model and reasoning mode it is on, the user
turns it has seen, and the embeddings of its latest user turns (at most
`router.conversation.reask_turns`, float16) for the `reask` signal. The memory store is an LRU
of at most `affinity.max_sessions` entries, each expiring `ttl_s` after its last write, so no
client can grow it: a new session id evicts the least recently used one.
"""

from __future__ import annotations

import base64
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import orjson


class AffinityUnavailable(Exception):
    """The shared store cannot be reached: the request is routed on its own."""


@dataclass(slots=True)
class SessionState:
    """model, reasoning, effort, decision: the route the session is on; turns: user turns of
    the request that wrote it; embeddings: its latest user turns' (oldest first)."""

    model: str
    reasoning: bool
    effort: str | None
    decision: str
    turns: int
    embeddings: list[np.ndarray] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        stacked = np.stack(self.embeddings).astype(np.float16) if self.embeddings else None
        return orjson.dumps(
            {
                "model": self.model,
                "reasoning": self.reasoning,
                "effort": self.effort,
                "decision": self.decision,
                "turns": self.turns,
                "dim": 0 if stacked is None else stacked.shape[1],
                "emb": "" if stacked is None else base64.b64encode(stacked.tobytes()).decode(),
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> SessionState:
        data = orjson.loads(raw)
        dim = int(data["dim"])
        embeddings: list[np.ndarray] = []
        if dim:
            flat = np.frombuffer(base64.b64decode(data["emb"]), dtype=np.float16)
            embeddings = list(flat.reshape(-1, dim))
        return cls(
            str(data["model"]),
            bool(data["reasoning"]),
            data["effort"],
            str(data["decision"]),
            int(data["turns"]),
            embeddings,
        )


class AffinityStore(ABC):
    name: str

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect (a shared store)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Disconnect."""

    @abstractmethod
    async def get(self, key: str) -> SessionState | None:
        """The session's state, None when unknown or expired; AffinityUnavailable on failure."""

    @abstractmethod
    async def put(self, key: str, state: SessionState) -> None:
        """Write the session's state (its TTL starts again); AffinityUnavailable on failure."""


class MemoryStore(AffinityStore):
    """This process's sessions: an LRU bounded by max_sessions, entries expiring after ttl_s."""

    name = "memory"

    def __init__(self, max_sessions: int, ttl_s: float) -> None:
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self._entries: OrderedDict[str, tuple[float, SessionState]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> SessionState | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, state = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return state

    async def put(self, key: str, state: SessionState) -> None:
        self.put_now(key, state)

    def put_now(self, key: str, state: SessionState) -> None:
        self._entries[key] = (time.monotonic() + self.ttl_s, state)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_sessions:
            self._entries.popitem(last=False)
