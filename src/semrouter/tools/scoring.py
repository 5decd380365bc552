"""`ToolScorer`: how relevant each of a request's tools is, from the router's one encoder pass.

first stage = cosine(query embedding, tool embedding) + lexical_weight * BM25 / (catalog's best)
then, with `tools.rerank`, the best `rerank_candidates` are reordered by the shipped re-ranker
(`rerank.py`: a small tree ensemble over cheap features of the request and each tool).

The query embedding is the SignalReport's (the routing text, encoded once for every signal);
the query's words are the routing text's and, at `context_weight`, the recent turns' (no encoder
pass: what the embedding cannot see of the context costs a regex). Without a query embedding
(a direct model request, a fallback route, no encoder) or before a catalog's tools are encoded,
the score is the lexical term alone.

Caches, all bounded by `tools.cache`:
- tools: per distinct tool definition (a digest of its JSON), its words, the text the encoder
  reads and its embedding;
- catalogs: per distinct tools list, the stacked embedding matrix and the BM25 index, so a
  known catalog costs one hash of the list, one matrix-vector product, one addition per
  query word and the re-ranker over its rerank_candidates best.

A catalog with tools never encoded before starts one background encoding of them (through the
embedder's async path, in calls of `embedding.batch_size` texts, so routing requests queue
between them rather than behind the whole catalog) and waits for it up to
`tools.encode_wait_ms`; past that the request is scored lexically, and the next request with
that catalog finds it encoded. At most `cache.max_entries` tools wait to be encoded at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from semrouter.config.schema import ToolsConfig
from semrouter.embed.base import Embedder, EmbeddingError
from semrouter.signals.engine import SignalInput
from semrouter.tools.cache import LRU
from semrouter.tools.lexical import BM25, query_weights
from semrouter.tools.metrics import ToolMetrics
from semrouter.tools.rerank import ToolFacts, TreeEnsemble, features, reordered, sentences
from semrouter.tools.text import (
    description_chars,
    embedding_text,
    lexical_text,
    name_words,
    parameter_names,
    tool_digest,
    tool_name,
    words,
)

log = logging.getLogger("semrouter.tools")
OFF_LOOP_TOOLS = 64
"""A new catalog with more new tools than this is analysed in a worker thread, not on the
event loop (words and BM25: about 12 ms for 200 tools, 50 ms for 1,000 on a 2-core VM)."""


@dataclass(slots=True)
class ToolEntry:
    """One distinct tool definition, as the scorer keeps it."""

    words: Counter[str]
    text: str
    """What the encoder reads."""
    facts: ToolFacts
    """What the re-ranker reads."""
    embedding: np.ndarray | None = None


@dataclass(slots=True)
class Catalog:
    """One distinct tools list."""

    entries: tuple[ToolEntry, ...]
    bm25: BM25
    matrix: np.ndarray | None = None
    """(tools, dim) embeddings, once every tool has one."""

    def embedded(self) -> np.ndarray | None:
        if (
            self.matrix is None
            and self.entries
            and all(e.embedding is not None for e in self.entries)
        ):
            self.matrix = np.stack([e.embedding for e in self.entries if e.embedding is not None])
        return self.matrix


def catalog_key(tools: Sequence[dict[str, Any]]) -> bytes:
    """Identifies a tools list as the client serialised it (order included): one SHA-256 of
    its JSON (200 tools: about 0.17 ms), the only per-request hashing of a known catalog. A new
    one's tools are then identified one by one, by `tool_digest` (keys sorted)."""
    return hashlib.sha256(orjson.dumps(list(tools))).digest()


@dataclass(frozen=True, slots=True)
class FirstStage:
    """A request's first-stage scores over one catalog, and what they were made of."""

    scores: np.ndarray
    """cosine + lexical_weight * lexical (the lexical term alone without cosine)."""
    lexical: np.ndarray
    """BM25 over the catalog's best (0..1)."""
    cosine: np.ndarray | None
    text_words: list[str]
    context_words: list[str]


def _relative(scores: np.ndarray) -> np.ndarray:
    """scores over their maximum (0..1), or as they are when none is positive."""
    best = scores.max(initial=0.0)
    return scores / best if best > 0 else scores


class ToolScorer:
    """Implements `semrouter.signals.engine.ToolScorer`; shared by every request."""

    def __init__(
        self,
        config: ToolsConfig,
        embedder: Embedder | None,
        batch_size: int,
        metrics: ToolMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or ToolMetrics(None)
        """Replaced by the stage's, on the pipeline's registry (`ToolStage`)."""
        self.embedder = embedder
        self.batch_size = batch_size
        self.tools: LRU[bytes, ToolEntry] = LRU(config.cache.max_entries)
        self.catalogs: LRU[bytes, Catalog] = LRU(config.cache.max_catalogs)
        self._encoding: dict[int, asyncio.Task[None]] = {}
        """In-flight encodings by the id() of each tool entry they cover."""
        self._wait_s = config.encode_wait_ms / 1000
        self.reranker = TreeEnsemble.load() if config.rerank else None

    def _cached(self, tools: Sequence[dict[str, Any]]) -> tuple[bytes, Catalog | None]:
        key = catalog_key(tools)
        found = self.catalogs.get(key)
        self.metrics.catalogs.labels("miss" if found is None else "hit").inc()
        return key, found

    def catalog(self, tools: Sequence[dict[str, Any]]) -> Catalog:
        """The catalog of these tools, analysed now if it is new."""
        key, found = self._cached(tools)
        if found is not None:
            return found
        digests = [tool_digest(t) for t in tools]
        return self._register(key, digests, self._analyse(digests, tools, self._known(digests)))

    async def _catalog(self, tools: Sequence[dict[str, Any]]) -> Catalog:
        """As `catalog`; a large new one is analysed in a worker thread."""
        key, found = self._cached(tools)
        if found is not None:
            return found
        digests = [tool_digest(t) for t in tools]
        known = self._known(digests)
        if len(tools) - len(known) > OFF_LOOP_TOOLS:
            analysed = await asyncio.to_thread(self._analyse, digests, tools, known)
        else:
            analysed = self._analyse(digests, tools, known)
        return self._register(key, digests, analysed)

    def _known(self, digests: Sequence[bytes]) -> dict[bytes, ToolEntry]:
        known = {d: entry for d in digests if (entry := self.tools.get(d)) is not None}
        self.metrics.definitions.labels("hit").inc(len(known))
        self.metrics.definitions.labels("miss").inc(len(set(digests)) - len(known))
        return known

    def _analyse(
        self,
        digests: Sequence[bytes],
        tools: Sequence[dict[str, Any]],
        known: dict[bytes, ToolEntry],
    ) -> Catalog:
        """A new catalog (touches no cache: safe in a worker thread)."""
        entries = tuple(
            known.get(digest) or self._entry(tool)
            for digest, tool in zip(digests, tools, strict=True)
        )
        return Catalog(entries, BM25([e.words for e in entries]))

    def _entry(self, tool: dict[str, Any]) -> ToolEntry:
        limit = self.config.max_text_chars
        facts = ToolFacts(
            frozenset(words(name_words(tool_name(tool)[:limit]))),
            frozenset(w for n in parameter_names(tool, limit) for w in words(name_words(n))),
            description_chars(tool),
        )
        return ToolEntry(
            Counter(words(lexical_text(tool, limit))), embedding_text(tool, limit), facts
        )

    def _register(self, key: bytes, digests: Sequence[bytes], catalog: Catalog) -> Catalog:
        for digest, entry in zip(digests, catalog.entries, strict=True):
            self.tools.put(digest, entry)
        self.catalogs.put(key, catalog)
        return catalog

    async def score(self, item: SignalInput, embedding: np.ndarray | None) -> np.ndarray:
        catalog = await self._catalog(item.tools)
        if embedding is not None and catalog.embedded() is None:
            await self._wait_encoded(catalog)
        return self._scores(catalog, item, embedding)

    def score_sync(self, item: SignalInput, embedding: np.ndarray | None) -> np.ndarray:
        """As `score`, encoding any new tools in the calling thread (offline routing, bench)."""
        catalog = self.catalog(item.tools)
        if embedding is not None and self.embedder is not None and catalog.embedded() is None:
            missing = [e for e in catalog.entries if e.embedding is None]
            encoded = self.embedder.encode_sync([e.text for e in missing])
            for entry, row in zip(missing, encoded.embeddings, strict=True):
                entry.embedding = row
            self.metrics.encodes.labels("encoded").inc(len(missing))
        return self._scores(catalog, item, embedding)

    def _scores(
        self, catalog: Catalog, item: SignalInput, embedding: np.ndarray | None
    ) -> np.ndarray:
        stage = self._first_stage(catalog, item, embedding)
        self.metrics.scoring.labels("lexical" if stage.cosine is None else "embedding").inc()
        if stage.cosine is None or self.reranker is None:
            return stage.scores
        candidates, rows = self._candidates(catalog, item, stage)
        return reordered(stage.scores, candidates, self.reranker(rows))

    def _first_stage(
        self, catalog: Catalog, item: SignalInput, embedding: np.ndarray | None
    ) -> FirstStage:
        text_words, context_words = words(item.text), words(item.context)
        query = query_weights(text_words, context_words, self.config.context_weight)
        lexical = _relative(catalog.bm25.scores(query))
        weighted = lexical * self.config.lexical_weight
        matrix = catalog.embedded()
        if embedding is None or matrix is None:
            return FirstStage(weighted, lexical, None, text_words, context_words)
        cosine: np.ndarray = matrix @ embedding
        return FirstStage(cosine + weighted, lexical, cosine, text_words, context_words)

    def _candidates(
        self, catalog: Catalog, item: SignalInput, stage: FirstStage
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best rerank_candidates tools by first-stage score (best first) and their
        re-ranker features."""
        assert stage.cosine is not None
        count = min(self.config.rerank_candidates, stage.scores.size)
        best = np.argpartition(-stage.scores, count - 1)[:count]
        candidates = best[np.argsort(-stage.scores[best], kind="stable")]
        by_sentence = np.zeros_like(stage.lexical)
        matched = 0
        for sentence in sentences(item.text):
            scores = _relative(catalog.bm25.scores(dict.fromkeys(words(sentence), 1.0)))
            if scores.any():
                np.maximum(by_sentence, scores, out=by_sentence)
                matched += 1
        rows = features(
            candidates,
            [catalog.entries[i].facts for i in candidates],
            stage.cosine,
            stage.lexical,
            stage.scores,
            by_sentence,
            matched,
            stage.text_words,
            stage.context_words,
        )
        return candidates, rows

    def candidates(
        self, item: SignalInput, embedding: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """What the re-ranker sees of a request whose catalog is encoded (`score_sync` first):
        its candidate tools, best first-stage score first, and their features (the fit in
        `semrouter bench tools --fit-reranker`)."""
        catalog = self.catalog(item.tools)
        stage = self._first_stage(catalog, item, embedding)
        if stage.cosine is None:
            raise ValueError("the catalog is not encoded")
        return self._candidates(catalog, item, stage)

    def pending(self) -> set[asyncio.Task[None]]:
        """The tool encodings under way."""
        return set(self._encoding.values())

    async def _wait_encoded(self, catalog: Catalog) -> None:
        """Start encoding the catalog's new tools (unless under way or over the bound) and wait
        for them up to encode_wait_ms."""
        if self.embedder is None:
            return
        missing = [e for e in catalog.entries if e.embedding is None]
        new = list({id(e): e for e in missing if id(e) not in self._encoding}.values())
        if new and len(self._encoding) + len(new) <= self.config.cache.max_entries:
            task = asyncio.get_running_loop().create_task(self._encode(self.embedder, new))
            for entry in new:
                self._encoding[id(entry)] = task
        elif new:
            self.metrics.encodes.labels("over_limit").inc(len(new))
        waiting = {self._encoding[id(e)] for e in missing if id(e) in self._encoding}
        if waiting and self._wait_s > 0:
            await asyncio.wait(waiting, timeout=self._wait_s)

    async def _encode(self, embedder: Embedder, entries: list[ToolEntry]) -> None:
        try:
            for start in range(0, len(entries), self.batch_size):
                chunk = entries[start : start + self.batch_size]
                encoded = await embedder.encode([e.text for e in chunk])
                for entry, row in zip(chunk, encoded.embeddings, strict=True):
                    entry.embedding = row
                self.metrics.encodes.labels("encoded").inc(len(chunk))
        except EmbeddingError as exc:
            self.metrics.encodes.labels("failed").inc(
                sum(1 for e in entries if e.embedding is None)
            )
            log.warning(
                "encoding %d tools failed (scored lexically until seen again): %s",
                len(entries),
                exc,
            )
        finally:
            for entry in entries:
                self._encoding.pop(id(entry), None)
