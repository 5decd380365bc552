"""Heads: training on separable synthetic data, fine-label aggregation, lexical mix, round-trip."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from semrouter.embed.base import Encoded
from semrouter.signals.heads import Head, load_head
from semrouter.train.features import encode_texts
from semrouter.train.heads import HeadSpec, accuracy, fit_head
from semrouter.train.robustness import flip_rate, perturb

CLASSES = ("a", "b", "c")


def blobs(n: int, seed: int) -> tuple[np.ndarray, list[str], list[str], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, 16)) * 3
    fine = rng.integers(0, 6, size=n)
    x = centers[fine] + rng.normal(size=(n, 16))
    labels = [CLASSES[f // 2] for f in fine]
    # each class has its own "words" (token ids), with noise words shared by all
    ids = [
        np.array([100 + (f // 2) * 10 + rng.integers(0, 3), rng.integers(500, 510)]) for f in fine
    ]
    return x.astype(np.float32), labels, [f"sub{f}" for f in fine], ids


def test_fine_labels_and_lexical_expert_train_and_round_trip(tmp_path: Path) -> None:
    x, labels, fine, ids = blobs(600, 0)
    head = fit_head(
        x, labels, CLASSES, HeadSpec(hidden=32, seed=0), fine_labels=fine, token_ids=ids
    )
    assert head.aggregate is not None and head.aggregate.shape == (6, 3)
    assert head.lexical is not None
    xv, lv, _, idv = blobs(300, 1)
    assert accuracy(head, xv, lv, idv) > 0.95
    probs = head.predict_proba(xv, idv)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    head.save(tmp_path / "h.npz")
    loaded = load_head(str(tmp_path / "h.npz"))
    np.testing.assert_allclose(loaded.predict_proba(xv, idv), probs, atol=2e-3)  # float16 weights
    assert loaded.mix == head.mix


def test_lexical_expert_alone_decides_when_features_are_noise() -> None:
    x, labels, _, ids = blobs(600, 2)
    noise = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    head = fit_head(noise, labels, CLASSES, HeadSpec(hidden=8, seed=0), token_ids=ids)
    assert head.mix > 0  # the calibration split prefers the informative expert
    _, lv, _, idv = blobs(200, 4)
    assert accuracy(head, np.zeros((200, 16), np.float32), lv, idv) > 0.9
    # without token ids the head falls back to the dense expert alone
    assert head.predict_proba(np.zeros((1, 16), np.float32)).shape == (1, 3)


def test_calibration_temperature_is_fitted() -> None:
    x, labels, _, _ = blobs(400, 5)
    head = fit_head(x, labels, CLASSES, HeadSpec(hidden=16, seed=1))
    assert head.temperature != 1.0


def test_head_rejects_inconsistent_shapes() -> None:
    with pytest.raises(ValueError):
        Head(["a", "b"], [(np.zeros((4, 3)), np.zeros(3))])


def test_perturb_is_a_small_deterministic_change() -> None:
    text = "What determines the boiling point of water at altitude?"
    one, two = perturb(text, random.Random(7)), perturb(text, random.Random(7))
    assert one == two
    assert one != text
    assert abs(len(one) - len(text)) <= 2


def test_flip_rate_counts_changed_predictions() -> None:
    def by_length(texts: list[str]) -> np.ndarray:
        return np.array([len(t) % 2 for t in texts])

    rate = flip_rate(by_length, ["alpha beta gamma delta"] * 50, seed=0)
    assert 0.0 < rate < 1.0
    assert flip_rate(lambda texts: np.zeros(len(texts)), ["some words here"] * 10) == 0.0


class CountingEmbedder:
    """A deterministic stand-in encoder (letters → ids) that counts its calls."""

    dim = feature_dim = 4

    def __init__(self) -> None:
        self.calls = 0

    def encode_sync(self, texts: list[str]) -> Encoded:
        self.calls += 1
        ids = tuple(np.array([ord(c) for c in t], dtype=np.int64) for t in texts)
        x = np.array([[len(t), t.count("a"), t.count("e"), 1.0] for t in texts], dtype=np.float32)
        return Encoded(x, x, np.array([len(i) for i in ids]), ids)


def test_feature_cache_round_trips_token_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEMROUTER_CACHE_DIR", str(tmp_path))
    embedder = CountingEmbedder()
    texts = ["alpha", "be", "", "gamma delta"]
    first = encode_texts(embedder, texts, batch_size=2)  # type: ignore[arg-type]
    second = encode_texts(embedder, texts, batch_size=2)  # type: ignore[arg-type]
    assert embedder.calls == 2  # two batches the first time, none the second
    assert [list(i) for i in second.token_ids] == [list(i) for i in first.token_ids]
    np.testing.assert_array_equal(second.features, first.features)
