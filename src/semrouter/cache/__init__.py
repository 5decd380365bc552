"""The semantic response cache: a pipeline stage that never answers a different question.

keys.py: a request's key (its last user turn) and exact scope (tenant, model, every other body
field). verify.py: the checks beyond cosine (numbers, polarity, order, names, rare words).
responses.py: what is stored of a response (JSON or a reassembled stream) and how a hit is
answered (JSON or SSE). backend.py: the backend interface; memory.py (HNSW, LRU, TTL) and
redis.py (Redis 8 vector sets, shared by replicas). stage.py: `CacheStage`, which sets
`x-semrouter-cache: hit|miss|bypass`.
"""

from semrouter.cache.backend import CacheBackend, CacheUnavailable, Candidate, Entry
from semrouter.cache.stage import CACHE_HEADER, CacheStage
from semrouter.cache.verify import Verdict, verify

__all__ = [
    "CACHE_HEADER",
    "CacheBackend",
    "CacheStage",
    "CacheUnavailable",
    "Candidate",
    "Entry",
    "Verdict",
    "verify",
]
