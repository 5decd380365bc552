"""Okapi BM25 over one catalog's tools, built once per distinct catalog.

The index keeps, per word, the tools it occurs in and their BM25 weights, so scoring a query
costs one numpy addition per distinct query word, however many tools the catalog has.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

K1 = 1.2
B = 0.75


class BM25:
    def __init__(self, documents: Sequence[Mapping[str, int]]) -> None:
        """documents: each tool's word counts."""
        self.size = len(documents)
        lengths = np.array([sum(d.values()) for d in documents], dtype=np.float64)
        average = float(lengths.mean()) if self.size and lengths.any() else 1.0
        norms = K1 * (1 - B + B * lengths / average)
        found: dict[str, tuple[list[int], list[int]]] = {}
        for i, document in enumerate(documents):
            for word, count in document.items():
                rows, counts = found.setdefault(word, ([], []))
                rows.append(i)
                counts.append(count)
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for word, (rows, counts) in found.items():
            idf = math.log(1 + (self.size - len(rows) + 0.5) / (len(rows) + 0.5))
            at = np.array(rows, dtype=np.intp)
            tf = np.array(counts, dtype=np.float64)
            self._postings[word] = (at, idf * tf * (K1 + 1) / (tf + norms[at]))

    def scores(self, query: Mapping[str, float]) -> np.ndarray:
        """Each tool's BM25 score for the query's weighted words."""
        total = np.zeros(self.size, dtype=np.float64)
        for word, weight in query.items():
            posting = self._postings.get(word)
            if posting is not None:
                total[posting[0]] += weight * posting[1]
        return total


def query_weights(
    text_words: Sequence[str], context_words: Sequence[str], context_weight: float
) -> dict[str, float]:
    """A query's words with their weights: the routing text's words by their count, context
    words by their count times context_weight."""
    weights: dict[str, float] = dict(Counter(text_words))
    for word, count in Counter(context_words).items():
        weights[word] = weights.get(word, 0.0) + context_weight * count
    return weights
