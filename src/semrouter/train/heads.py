"""Fitting a classification head on encoder features and exporting it as a numpy Head.

A small MLP (or a linear model when hidden=0) is fitted with scikit-learn, then its probabilities
are calibrated by temperature scaling on a calibration split held out from training, so the
confidences the router reports are real probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from semrouter.signals.heads import Head


@dataclass(frozen=True)
class HeadSpec:
    hidden: int = 256
    alpha: float = 1e-3
    max_iter: int = 300
    calibration_fraction: float = 0.15
    seed: int = 0


def _fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood (golden-section search on log T)."""

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(labels)), labels].mean())

    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def fit_head(
    x: np.ndarray,
    labels: Sequence[str],
    classes: Sequence[str],
    spec: HeadSpec,
    sample_weight: np.ndarray | None = None,
    input_name: str = "features",
) -> Head:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[label] for label in labels])
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(y))
    n_cal = int(len(y) * spec.calibration_fraction)
    cal, fit = order[:n_cal], order[n_cal:]
    weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)

    if spec.hidden:
        # MLPClassifier has no sample weights: weighting is done by resampling the fit split.
        repeat = np.maximum(1, np.round(weights[fit] / weights[fit].min()).astype(int))
        fit_idx = np.repeat(fit, repeat)
        model = MLPClassifier(
            hidden_layer_sizes=(spec.hidden,),
            alpha=spec.alpha,
            max_iter=spec.max_iter,
            early_stopping=True,
            random_state=spec.seed,
        )
        model.fit(x[fit_idx], y[fit_idx])
        layers = [(w, b) for w, b in zip(model.coefs_, model.intercepts_, strict=True)]
        present = model.classes_
    else:
        model = LogisticRegression(C=1.0 / spec.alpha, max_iter=spec.max_iter)
        model.fit(x[fit], y[fit], sample_weight=weights[fit])
        layers = [(model.coef_.T, model.intercept_)]
        present = model.classes_
    layers = _expand_binary(layers, len(classes), present)
    head = Head(list(classes), layers, 1.0, input_name)
    head.temperature = _fit_temperature(head.logits(x[cal]), y[cal]) if n_cal else 1.0
    return head


def _expand_binary(
    layers: list[tuple[np.ndarray, np.ndarray]], n_classes: int, present: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """sklearn emits one logit for two classes: turn it into [0, z] so softmax equals sigmoid."""
    w, b = layers[-1]
    if n_classes == 2 and w.shape[1] == 1:
        w = np.hstack([np.zeros_like(w), w])
        b = np.concatenate([np.zeros_like(b), b])
    elif w.shape[1] != n_classes:
        raise ValueError(f"training data covers only classes {list(present)}")
    return [*layers[:-1], (w, b)]


def accuracy(head: Head, x: np.ndarray, labels: Sequence[str]) -> float:
    predicted = np.array(head.classes)[head.predict_proba(x).argmax(axis=1)]
    return float(np.mean(predicted == np.array(labels)))
