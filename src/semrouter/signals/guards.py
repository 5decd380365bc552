"""The guard signals: `jailbreak`, `pii` and `pii:<TYPE>`, from the scanned messages of a request.

`GuardSignals(config)` reads a request's `ScanText`s (its user turns, tool/function results and
assistant turns, newest first, at most `guards.max_messages`; built by the pipeline):

- jailbreak: the shipped head (semrouter.signals.jailbreak) on the rows of the router's one
  encoder batch. `rows(item)` names the texts the engine adds to its batch; a scanned text equal
  to the routing text reuses the routing text's row (never a second embedding of the same
  text). The request's probability is the highest of its scanned texts'.
- pii: the detector (semrouter.signals.pii) on each scanned text, in a worker thread (spaCy NER
  takes milliseconds), beside the encoder pass. Entities keep their message's index, so a
  policy can redact them where they are.

A guard that fails (its model raises) gives no verdict: `GuardReport.errors` names it and
`guards.on_error` decides (semrouter.guards). Nothing here logs or keeps a text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from semrouter.config.schema import JAILBREAK_GUARD, PII_GUARD, GuardsConfig
from semrouter.embed.base import Embedder, EmbeddingError, Encoded
from semrouter.signals.jailbreak import load_jailbreak
from semrouter.signals.pii import PiiDetector, PiiEntity

JAILBREAK_ROLES = frozenset({"user", "tool", "function"})
"""Where injections arrive: the user's turns and what tools returned."""


@dataclass(frozen=True, slots=True)
class ScanText:
    """One scanned message: its index in the request's messages, its role, its text (for
    jailbreak: windowed as classification reads it; for PII: whole, the detector reads the
    first guards.pii.max_chars)."""

    message: int
    role: str
    text: str
    windowed: str


@dataclass(frozen=True, slots=True)
class FoundEntity:
    """A PII entity in message `message` (offsets are in that message's text)."""

    message: int
    entity: PiiEntity


@dataclass(slots=True)
class GuardReport:
    """What the guards found. jailbreak: the highest probability (None: not computed);
    entities: the PII found; errors: guard name -> what failed (never content)."""

    jailbreak: float | None = None
    jailbreak_threshold: float = 0.0
    entities: tuple[FoundEntity, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def jailbreak_flagged(self) -> bool:
        return self.jailbreak is not None and self.jailbreak >= self.jailbreak_threshold

    def fired(self) -> dict[str, float]:
        """The guard signals with their scores (a probability; an entity count)."""
        scores: dict[str, float] = {}
        if self.jailbreak is not None:
            scores[JAILBREAK_GUARD] = self.jailbreak
        if PII_GUARD not in self.errors:
            scores[PII_GUARD] = float(len(self.entities))
            for found in self.entities:
                key = f"{PII_GUARD}:{found.entity.type}"
                scores[key] = scores.get(key, 0.0) + 1.0
        return scores


class GuardSignals:
    def __init__(self, config: GuardsConfig) -> None:
        self.config = config
        jailbreak = config.jailbreak
        self.head = load_jailbreak(jailbreak.head or JAILBREAK_GUARD) if jailbreak.enabled else None
        self.threshold = (
            jailbreak.threshold
            if jailbreak.threshold is not None
            else (self.head.threshold if self.head is not None else 1.0)
        )
        self.detector = PiiDetector(config.pii) if config.pii.enabled else None

    @property
    def needs_embedding(self) -> bool:
        return self.head is not None

    def load(self) -> None:
        """Load what loads lazily (the NER model), before the first request."""
        if self.detector is not None:
            self.detector.load()

    def rows(self, routing_text: str, scan: Sequence[ScanText]) -> tuple[list[str], list[int]]:
        """(texts the encoder batch needs besides the routing text, each jailbreak-scanned
        text's row among [routing text, *those texts]): equal texts share one row."""
        if self.head is None:
            return [], []
        extra: list[str] = []
        index = {routing_text: 0}
        rows = []
        for item in scan:
            if item.role not in JAILBREAK_ROLES or not item.windowed:
                continue
            if item.windowed not in index:
                index[item.windowed] = len(extra) + 1
                extra.append(item.windowed)
            rows.append(index[item.windowed])
        return extra, rows

    def jailbreak(self, report: GuardReport, encoded: Encoded | None, rows: list[int]) -> None:
        """The highest probability among the batch rows `rows` of `encoded` (the scanned
        texts'; at least one)."""
        if self.head is None:
            return
        report.jailbreak_threshold = self.threshold
        if encoded is None:
            report.errors[JAILBREAK_GUARD] = "no encoder pass"
            return
        try:
            p = self.head.probabilities(take(encoded, rows))
        except Exception as exc:  # a failing guard is on_error's to handle
            report.errors[JAILBREAK_GUARD] = type(exc).__name__
            return
        report.jailbreak = float(p.max())

    def pii(self, scan: Sequence[ScanText]) -> tuple[tuple[FoundEntity, ...], str | None]:
        """The entities of every scanned text (sync: CPU work, run it in a thread); or the
        failure's name."""
        if self.detector is None:
            return (), None
        try:
            return tuple(
                FoundEntity(item.message, entity)
                for item in scan
                for entity in self.detector.detect(item.text)
            ), None
        except Exception as exc:  # a failing guard is on_error's to handle
            return (), type(exc).__name__

    async def pii_async(self, report: GuardReport, scan: Sequence[ScanText]) -> None:
        if self.detector is None:
            return
        entities, error = await asyncio.to_thread(self.pii, scan) if scan else ((), None)
        report.entities = entities
        if error is not None:
            report.errors[PII_GUARD] = error

    async def evaluate(self, scan: Sequence[ScanText], embedder: Embedder | None) -> GuardReport:
        """Both guards on their own, for a request the router did not classify (a named model,
        a fallback route): the jailbreak texts are encoded here, the only pass over them."""
        report = GuardReport()
        extra, rows = self.rows("", scan)
        texts = extra if rows else []

        async def encode() -> Encoded | None:
            if not texts or embedder is None:
                return None
            try:
                return await embedder.encode(texts)
            except EmbeddingError:
                return None

        encoded, _ = await asyncio.gather(encode(), self.pii_async(report, scan))
        if self.head is not None:
            if not texts:
                report.jailbreak_threshold = self.threshold
                report.jailbreak = 0.0  # no user turn, no tool result: nothing to inject
            else:  # rows count from 1: row 0 was the routing text, absent here
                self.jailbreak(report, encoded, [r - 1 for r in rows])
        return report


def take(encoded: Encoded, rows: Sequence[int]) -> Encoded:
    """The batch rows `rows` of an encoder pass, as a pass of their own."""
    index = np.asarray(rows, dtype=np.intp)
    ids = tuple(encoded.token_ids[i] for i in rows) if encoded.token_ids else ()
    return Encoded(
        encoded.embeddings[index], encoded.features[index], encoded.token_counts[index], ids
    )
