"""The tool re-ranker: a small gradient-boosted tree ensemble that reorders a catalog's best
candidates, on features the scorer has anyway (no encoder pass).

`ToolScorer` ranks every tool by cosine + lexical_weight * BM25 (the first-stage score), takes
the best `tools.rerank_candidates` and scores each of them on `FEATURES`: the first-stage terms,
their ranks and gaps to the catalog's best, how many of the tool's name and parameter words the
request uses, the best BM25 of any one sentence of the request (a request asking for several
things), the description's length. The ensemble was fitted on the BFCL `tune` split by
`semrouter bench tools --fit-reranker` (sklearn's HistGradientBoostingClassifier, exported as
complete binary trees of one depth so that evaluation is a few numpy gathers: 20 candidates x
100 trees of depth 3).

The first stage's best KEEP_FIRST tools keep their places; the other candidates keep the
first-stage scores as a set: the re-ranker's best of them gets the highest one, and so on. So
what `min_score` and the `signals.tools` rules read (a score threshold, the best score) means
what it meant without re-ranking; only who holds which score changes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURES = (
    "cosine",
    "lexical",
    "first_stage",
    "log_rank_first_stage",
    "log_rank_cosine",
    "log_rank_lexical",
    "gap_first_stage",
    "gap_cosine",
    "name_share_text",
    "name_share_context",
    "parameter_share_text",
    "parameter_count_text",
    "log_description_chars",
    "name_count_text",
    "sentence_lexical",
    "sentences_matched",
)
KEEP_FIRST = 3
"""The first stage's best tools keep their places: the re-ranker reorders the candidates below
them. It can demote a tool that matches the request's words but not its embedding (in
tests/e2e/test_tools.py, `send_email` for 'Email Ann the stock levels of line 7', third by the
first stage, sixth by the re-ranker among 36 stock-report tools). On the tune split (two-fold,
200 trees over 40 candidates) keeping 0, 2, 3 or 4 in place gives recall@10 0.960, 0.960,
0.959, 0.959 at 1,000 tools and 0.981 at 200 for all four; recall@5 at 1,000 0.923, 0.923,
0.922, 0.921."""

ARTIFACT = Path(__file__).resolve().parents[1] / "models" / "tool_reranker.npz"
_SENTENCE = re.compile(r"(?<=[.?!;])\s+|\n+")
MAX_SENTENCES = 16
"""Sentences of the routing text scored on their own (the rest count as one)."""


def sentences(text: str) -> list[str]:
    """The routing text's sentences, at most MAX_SENTENCES (the last one holds the rest)."""
    return _SENTENCE.split(text, maxsplit=MAX_SENTENCES - 1)


@dataclass(frozen=True, slots=True)
class ToolFacts:
    """What the features read of one tool, computed once per distinct tool."""

    name_words: frozenset[str]
    parameter_words: frozenset[str]
    description_chars: int


def _ranks(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The candidates' ranks among all values, best first, ties sharing the better one (0 =
    the best): how many values are greater."""
    greater: np.ndarray = (values[None, :] > values[candidates, None]).sum(axis=1)
    return greater.astype(np.float64)


def features(
    candidates: np.ndarray,
    facts: Sequence[ToolFacts],
    cosine: np.ndarray,
    lexical: np.ndarray,
    first_stage: np.ndarray,
    sentence_lexical: np.ndarray,
    sentences_matched: int,
    text_words: Iterable[str],
    context_words: Iterable[str],
) -> np.ndarray:
    """(candidates, FEATURES) for the catalog's candidate tools (facts: theirs, in the same
    order). cosine, lexical (BM25 over the catalog's best), first_stage and sentence_lexical
    are per catalog tool."""
    text = frozenset(text_words)
    every = text.union(context_words)
    # Per candidate: name words, name words in the text, in text or context, parameter words,
    # parameter words in the text, description characters.
    counts = np.array(
        [
            (
                len(f.name_words),
                len(f.name_words & text),
                len(f.name_words & every),
                len(f.parameter_words),
                len(f.parameter_words & text),
                f.description_chars,
            )
            for f in facts
        ],
        dtype=np.float64,
    ).reshape(-1, 6)
    names, parameters = np.maximum(counts[:, 0], 1), np.maximum(counts[:, 3], 1)
    rows = np.empty((len(candidates), len(FEATURES)), dtype=np.float64)
    rows[:, 0] = cosine[candidates]
    rows[:, 1] = lexical[candidates]
    rows[:, 2] = first_stage[candidates]
    for column, values in ((3, first_stage), (4, cosine), (5, lexical)):
        rows[:, column] = np.log1p(_ranks(values, candidates))
    rows[:, 6] = rows[:, 2] - first_stage.max()
    rows[:, 7] = rows[:, 0] - cosine.max()
    rows[:, 8] = counts[:, 1] / names
    rows[:, 9] = counts[:, 2] / names
    rows[:, 10] = counts[:, 4] / parameters
    rows[:, 11] = counts[:, 4]
    rows[:, 12] = np.log1p(counts[:, 5])
    rows[:, 13] = counts[:, 1]
    rows[:, 14] = sentence_lexical[candidates]
    rows[:, 15] = sentences_matched
    return rows


class TreeEnsemble:
    """Complete binary trees of one depth: `feature`/`threshold` (trees, 2**depth - 1) per
    inner node in breadth-first order (x <= threshold goes left), `value` (trees, 2**depth)
    per leaf. The score is the sum of the leaves reached (log-odds, up to a constant)."""

    def __init__(self, feature: np.ndarray, threshold: np.ndarray, value: np.ndarray) -> None:
        trees, inner = feature.shape
        depth = int(math.log2(inner + 1))
        if (
            inner != 2**depth - 1
            or threshold.shape != (trees, inner)
            or value.shape != (trees, inner + 1)
            or (trees and not 0 <= int(feature.min()) <= int(feature.max()) < len(FEATURES))
        ):
            raise ValueError("tool re-ranker: malformed tree arrays")
        self.depth = depth
        self.feature = feature.astype(np.intp)
        self.threshold = threshold.astype(np.float64)
        self.value = value.astype(np.float64)
        self._inner = np.arange(trees) * inner
        self._leaves = np.arange(trees) * (inner + 1)

    @classmethod
    def load(cls, path: Path = ARTIFACT) -> TreeEnsemble:
        with np.load(path, allow_pickle=False) as data:
            if tuple(str(n) for n in data["features"]) != FEATURES:
                raise ValueError(f"{path}: fitted on other features than semrouter's")
            return cls(data["feature"], data["threshold"], data["value"])

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            features=np.array(FEATURES),
            feature=self.feature.astype(np.int16),
            threshold=self.threshold,
            value=self.value.astype(np.float32),
        )

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """The ensemble's score of each row of (n, FEATURES)."""
        # Every inner node's test at once, (rows, trees * inner); then one gather per level.
        right = (rows[:, self.feature.ravel()] > self.threshold.ravel()).ravel()
        width = self.feature.size
        base = (np.arange(rows.shape[0]) * width)[:, None] + self._inner
        node = np.zeros((rows.shape[0], self._inner.size), dtype=np.intp)
        for _ in range(self.depth):
            node = 2 * node + 1 + right[base + node]
        leaf = node - self.feature.shape[1] + self._leaves
        scores: np.ndarray = self.value.ravel()[leaf].sum(axis=1)
        return scores


def reordered(first_stage: np.ndarray, candidates: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """first_stage with the candidates' scores (candidates: best first-stage score first)
    handed out again in the order of the re-ranker's scores, the first KEEP_FIRST candidates
    keeping theirs."""
    out = first_stage.copy()
    rest = candidates[KEEP_FIRST:]
    out[rest[np.argsort(-scores[KEEP_FIRST:], kind="stable")]] = first_stage[rest]
    return out
