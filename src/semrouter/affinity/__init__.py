"""Session affinity: a conversation stays on its route; tool loops are locked to their model."""

from semrouter.affinity.hook import AFFINITY_HEADER, SESSION_HEADER, Affinity, Session
from semrouter.affinity.store import AffinityStore, AffinityUnavailable, MemoryStore, SessionState

__all__ = [
    "AFFINITY_HEADER",
    "SESSION_HEADER",
    "Affinity",
    "AffinityStore",
    "AffinityUnavailable",
    "MemoryStore",
    "Session",
    "SessionState",
]
