"""Signals: everything the router learns about a request, derived from one encoder pass.

The engine encodes the routing text once, then evaluates every configured signal on the result:
the domain head, the reasoning-need head, similarity to example phrases, keyword/regex rules and
context length. Each signal has a name; decisions' rule trees refer to those names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from semrouter.config.schema import (
    MMLU_PRO_DOMAINS,
    REASONING_SIGNAL,
    KeywordSignalConfig,
    SignalsConfig,
)
from semrouter.embed.base import Embedder, Encoded
from semrouter.pipeline.request import ChatRequest
from semrouter.signals.heads import Head, load_head


@dataclass(slots=True)
class SignalReport:
    """What the signals said about one request.

    fired: names of the signals that are true (what rule trees test).
    scores: every signal's score: a probability for learned heads, a cosine for similarity,
      1.0/0.0 for keywords, a token count for context rules.
    """

    fired: set[str] = field(default_factory=set)
    scores: dict[str, float] = field(default_factory=dict)
    domain: str | None = None
    domain_confidence: float | None = None
    domain_probabilities: dict[str, float] | None = None
    reasoning_probability: float | None = None
    tokens: int = 0
    features: np.ndarray | None = None


class KeywordRule:
    """A keyword/regex signal. 'any' rules compile to one alternation: one scan of the text."""

    def __init__(self, config: KeywordSignalConfig) -> None:
        self.name = config.name
        flags = 0 if config.case_sensitive else re.IGNORECASE
        groups = [[p] for p in config.patterns] if config.match == "all" else [config.patterns]
        self.patterns: list[re.Pattern[str] | Literals] = [
            re.compile("|".join(f"(?:{p})" for p in group), flags)
            if config.regex
            else Literals(group, config.case_sensitive)
            for group in groups
        ]

    def matches(self, text: str) -> bool:
        return all(p.search(text) is not None for p in self.patterns)


class Literals:
    """Whole-word occurrence of any of some phrases, found fast. Python's regex engine tries
    every position of the text for a pattern that begins with a word boundary, and is slow with
    IGNORECASE; a plain alternation skips ahead to the phrases' first characters. So candidates
    come from the plain alternation (on the lowercased text when the rule ignores case and the
    text is ASCII, where lowercasing keeps positions), and each candidate position is then
    checked with the boundaries. About 4x faster on a 2,000-token prompt without a hit."""

    def __init__(self, phrases: Sequence[str], case_sensitive: bool) -> None:
        self.case_sensitive = case_sensitive
        self.whole_words = re.compile(
            "|".join(f"(?:{_literal(p)})" for p in phrases), 0 if case_sensitive else re.IGNORECASE
        )
        keys = phrases if case_sensitive else [p.lower() for p in phrases]
        self.candidates = re.compile("|".join(re.escape(k) for k in keys))

    def search(self, text: str) -> re.Match[str] | None:
        haystack = text
        if not self.case_sensitive:
            if not text.isascii():
                return self.whole_words.search(text)
            haystack = text.lower()
        position = 0
        while (candidate := self.candidates.search(haystack, position)) is not None:
            found = self.whole_words.match(text, candidate.start())
            if found is not None:
                return found
            position = candidate.start() + 1
        return None


def _literal(phrase: str) -> str:
    escaped = re.escape(phrase)
    start = r"\b" if phrase[:1].isalnum() else ""
    end = r"\b" if phrase[-1:].isalnum() else ""
    return f"{start}{escaped}{end}"


class SignalEngine:
    def __init__(self, config: SignalsConfig, embedder: Embedder | None) -> None:
        self.config = config
        self.embedder = embedder
        self.keywords = [KeywordRule(k) for k in config.keywords]
        self.domain_head: Head | None = (
            load_head(config.domain.head or "domain") if config.domain.enabled else None
        )
        self.reasoning_head: Head | None = (
            load_head(config.reasoning.head or "reasoning") if config.reasoning.enabled else None
        )
        if self.domain_head is not None:
            unknown = set(self.domain_head.classes) - set(MMLU_PRO_DOMAINS)
            if unknown:
                raise ValueError(f"domain head has unknown classes: {sorted(unknown)}")
        self._similarity_names = [s.name for s in config.similarity]
        self._similarity_thresholds = np.array([s.threshold for s in config.similarity])
        self._example_offsets = np.cumsum([0] + [len(s.examples) for s in config.similarity])[:-1]
        self._example_matrix: np.ndarray | None = None
        self.needs_embedding = config.needs_embedding
        if self.needs_embedding and embedder is None:
            raise ValueError("embedding-based signals are configured but no embedder was given")

    def _examples(self) -> list[str]:
        return [example for s in self.config.similarity for example in s.examples]

    async def start(self) -> None:
        if self.config.similarity and self.embedder is not None:
            self._example_matrix = (
                await self.embedder.encode(self._examples())
            ).embeddings.T.copy()

    def start_sync(self) -> None:
        if self.config.similarity and self.embedder is not None:
            self._example_matrix = self.embedder.encode_sync(self._examples()).embeddings.T.copy()

    async def evaluate(self, request: ChatRequest) -> SignalReport:
        text = request.routing_text()
        encoded = (
            await self.embedder.encode([text]) if self.needs_embedding and self.embedder else None
        )
        return self._reports([request], [text], encoded)[0]

    def evaluate_many_sync(self, requests: Sequence[ChatRequest]) -> list[SignalReport]:
        texts = [r.routing_text() for r in requests]
        encoded = (
            self.embedder.encode_sync(texts) if self.needs_embedding and self.embedder else None
        )
        return self._reports(requests, texts, encoded)

    def _reports(
        self, requests: Sequence[ChatRequest], texts: Sequence[str], encoded: Encoded | None
    ) -> list[SignalReport]:
        reports = [SignalReport() for _ in texts]
        if encoded is not None:
            self._embedding_signals(reports, encoded)
        for report, request, text in zip(reports, requests, texts, strict=True):
            for rule in self.keywords:
                hit = rule.matches(text)
                report.scores[rule.name] = float(hit)
                if hit:
                    report.fired.add(rule.name)
            if self.config.context:
                report.tokens = self._context_tokens(request, report)
                for ctx in self.config.context:
                    report.scores[ctx.name] = float(report.tokens)
                    if report.tokens >= ctx.min_tokens and (
                        ctx.max_tokens is None or report.tokens <= ctx.max_tokens
                    ):
                        report.fired.add(ctx.name)
        return reports

    def _context_tokens(self, request: ChatRequest, report: SignalReport) -> int:
        if self.embedder is None:
            return len(request.conversation_text()) // 4
        if len(request.messages) == 1 and report.tokens:
            return report.tokens
        return self.embedder.count_tokens(request.conversation_text())

    def _embedding_signals(self, reports: list[SignalReport], encoded: Encoded) -> None:
        for report, count, feature_row in zip(
            reports, encoded.token_counts, encoded.features, strict=True
        ):
            report.tokens = int(count)
            report.features = feature_row
        if self.domain_head is not None:
            probs = self.domain_head.predict_proba(
                head_input(self.domain_head, encoded), encoded.token_ids
            )
            threshold = self.config.domain.threshold
            classes = self.domain_head.classes
            for report, row in zip(reports, probs, strict=True):
                best = int(row.argmax())
                confidence = float(row[best])
                label = classes[best] if confidence >= threshold else "other"
                report.domain = label
                report.domain_confidence = confidence
                report.domain_probabilities = {
                    c: float(p) for c, p in zip(classes, row, strict=True)
                }
                report.scores.update(report.domain_probabilities)
                report.fired.add(label)
        if self.reasoning_head is not None:
            positive = self.reasoning_head.classes.index("true")
            probs = self.reasoning_head.predict_proba(head_input(self.reasoning_head, encoded))
            for report, row in zip(reports, probs, strict=True):
                p = float(row[positive])
                report.reasoning_probability = p
                report.scores[REASONING_SIGNAL] = p
                if p >= self.config.reasoning.threshold:
                    report.fired.add(REASONING_SIGNAL)
        if self._example_matrix is not None:
            cosines = encoded.embeddings @ self._example_matrix
            best = np.maximum.reduceat(cosines, self._example_offsets, axis=1)
            fired = best >= self._similarity_thresholds
            for report, scores, hits in zip(reports, best, fired, strict=True):
                for name, score, hit in zip(self._similarity_names, scores, hits, strict=True):
                    report.scores[name] = float(score)
                    if hit:
                        report.fired.add(name)


def head_input(head: Head, encoded: Encoded) -> np.ndarray:
    return encoded.embeddings if head.input_name == "embeddings" else encoded.features
