"""The domain baselines of `semrouter bench classify`, on a toy task whose answers are known."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import numpy as np
import pytest

from semrouter.bench.baselines import BASELINES, C_GRID, domain_baselines
from semrouter.embed.base import Embedder, Encoded
from semrouter.signals.heads import Head

CLASSES = ("biology", "law", "math")
WORDS = {
    "biology": ["cell", "enzyme", "gene", "protein", "tissue"],
    "law": ["court", "statute", "tort", "contract", "plaintiff"],
    "math": ["integral", "matrix", "prime", "theorem", "vector"],
}
FILLER = ["what", "is", "the", "a", "of", "explain", "how", "why", "does", "this"]


class BagOfWordsEmbedder(Embedder):
    """Embeddings: hashed bag of words (unit norm). Features: the count of each class's words,
    which the toy head reads."""

    dim, feature_dim = 64, 3

    async def encode(self, texts: list[str]) -> Encoded:  # type: ignore[override]
        return self.encode_sync(texts)

    def encode_sync(self, texts: list[str]) -> Encoded:  # type: ignore[override]
        bags = np.zeros((len(texts), self.dim), dtype=np.float32)
        counts = np.zeros((len(texts), 3), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.split():
                bags[i, zlib.crc32(word.encode()) % self.dim] += 1
                counts[i] += [word in WORDS[c] for c in CLASSES]
        bags /= np.linalg.norm(bags, axis=1, keepdims=True)
        ids = tuple(np.zeros(0, dtype=np.int64) for _ in texts)
        return Encoded(bags, counts, np.zeros(len(texts), dtype=np.int64), ids)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def sentences(n: int, rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        label = CLASSES[i % 3]
        words = rng.sample(FILLER, 2) + rng.sample(WORDS[label], 3)
        rng.shuffle(words)
        out.append((" ".join(words), label))
    return out


def test_baselines_learn_a_separable_task_and_report_the_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEMROUTER_CACHE_DIR", str(tmp_path))
    rng = random.Random(0)
    train, held_out = sentences(90, rng), sentences(30, rng)
    # The toy head only ever answers 'law': its accuracy must come out as a third.
    head = Head(list(CLASSES), [(np.zeros((3, 3)), np.array([0.0, 1.0, 0.0]))])
    report = domain_baselines(
        BagOfWordsEmbedder(),
        head,
        {"small": train[:45], "all": train},
        {"held_out": held_out, "train": train},
    )
    assert report["semrouter_head"] == {"held_out": pytest.approx(1 / 3, abs=1e-4), "train": 0.3333}
    for name, fitted in report["train_sets"].items():
        assert fitted["examples"] == {"small": 45, "all": 90}[name]
        for baseline in BASELINES:
            row = fitted[baseline]
            assert row["held_out"] >= 0.9, (name, baseline, row)
            assert (
                row["C"] is None
                if baseline == "nearest_utterance"
                else row["C"] in C_GRID[baseline]
            )
    # Nearest utterance answers each text it was given with that text's own label.
    assert report["train_sets"]["all"]["nearest_utterance"]["train"] == 1.0
