"""Fitting a classification head on one encoder pass and exporting it as a numpy Head.

The dense expert is an MLP (scikit-learn) on the encoder's features, optionally trained on finer
labels than the head's classes (their probabilities are summed into the classes). The optional
lexical expert is a logistic regression on the TF-IDF of the same pass's wordpieces. A
calibration split held out from training picks the experts' mix and a temperature, so the
reported confidences are real probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from semrouter.signals.heads import Head, Lexical

MIX_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


@dataclass(frozen=True)
class HeadSpec:
    hidden: int = 256
    alpha: float = 1e-3
    max_iter: int = 300
    lexical_c: float = 20.0
    calibration_fraction: float = 0.15
    seed: int = 0


def _nll(scores: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    z = scores / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def _fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood (golden-section search on log T)."""
    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if _nll(scores, labels, np.exp(a)) < _nll(scores, labels, np.exp(b)):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def _repeat_by_weight(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """MLPClassifier has no sample weights: weight by repeating rows."""
    repeat = np.maximum(1, np.round(weights[rows] / weights[rows].min()).astype(int))
    return np.repeat(rows, repeat)


def _fit_dense(
    x: np.ndarray, targets: np.ndarray, rows: np.ndarray, weights: np.ndarray, spec: HeadSpec
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=(spec.hidden,),
        alpha=spec.alpha,
        max_iter=spec.max_iter,
        early_stopping=True,
        random_state=spec.seed,
    )
    fit_rows = _repeat_by_weight(rows, weights)
    model.fit(x[fit_rows], targets[fit_rows])
    layers = list(zip(model.coefs_, model.intercepts_, strict=True))
    w, b = layers[-1]
    if w.shape[1] == 1:  # sklearn's binary output is one logit: make it [0, z] for softmax
        layers[-1] = (np.hstack([np.zeros_like(w), w]), np.concatenate([np.zeros_like(b), b]))
    return layers, model.classes_


def _fit_lexical(
    token_ids: Sequence[np.ndarray],
    y: np.ndarray,
    n_classes: int,
    rows: np.ndarray,
    weights: np.ndarray,
    spec: HeadSpec,
) -> Lexical:
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression

    vocab = np.unique(np.concatenate([token_ids[i] for i in rows]))
    df = np.zeros(len(vocab))
    for i in rows:
        df[np.searchsorted(vocab, np.unique(token_ids[i]))] += 1
    idf = (np.log((1 + len(rows)) / (1 + df)) + 1.0).astype(np.float32)
    data, cols, indptr = [], [], [0]
    for i in rows:
        unique, counts = np.unique(token_ids[i], return_counts=True)
        pos = np.searchsorted(vocab, unique)
        values = (1.0 + np.log(counts)) * idf[pos]
        data.append(values / np.sqrt((values**2).sum()))
        cols.append(pos)
        indptr.append(indptr[-1] + len(pos))
    matrix = sp.csr_matrix(
        (np.concatenate(data), np.concatenate(cols), indptr), shape=(len(rows), len(vocab))
    )
    model = LogisticRegression(C=spec.lexical_c, max_iter=1000)
    model.fit(matrix, y[rows], sample_weight=weights[rows])
    if len(model.classes_) != n_classes:
        raise ValueError("lexical training data must cover every class")
    return Lexical(
        vocab, idf, model.coef_.T.astype(np.float32), model.intercept_.astype(np.float32)
    )


def fit_head(
    x: np.ndarray,
    labels: Sequence[str],
    classes: Sequence[str],
    spec: HeadSpec,
    sample_weight: np.ndarray | None = None,
    fine_labels: Sequence[str] | None = None,
    token_ids: Sequence[np.ndarray] | None = None,
    input_name: str = "features",
) -> Head:
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[label] for label in labels])
    order = np.random.default_rng(spec.seed).permutation(len(y))
    n_cal = int(len(y) * spec.calibration_fraction)
    cal, fit = order[:n_cal], order[n_cal:]
    weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)

    targets = np.asarray(fine_labels if fine_labels is not None else labels)
    layers, outputs = _fit_dense(x, targets, fit, weights, spec)
    aggregate = None
    if fine_labels is not None:
        class_of = {fine: label for fine, label in zip(fine_labels, labels, strict=True)}
        aggregate = np.zeros((len(outputs), len(classes)), dtype=np.float32)
        for row, fine in enumerate(outputs):
            aggregate[row, index[class_of[fine]]] = 1.0
    else:
        missing = set(classes) - set(outputs)
        if missing:
            raise ValueError(f"training data has no examples of {sorted(missing)}")
        layers[-1] = (
            layers[-1][0][:, [list(outputs).index(c) for c in classes]],
            layers[-1][1][[list(outputs).index(c) for c in classes]],
        )
    lexical = None
    if token_ids is not None:
        lexical = _fit_lexical(token_ids, y, len(classes), fit, weights, spec)
    head = Head(list(classes), layers, 1.0, input_name, aggregate, lexical, mix=0.0)
    if not n_cal:
        return head
    cal_ids = [token_ids[i] for i in cal] if token_ids is not None else None
    if lexical is not None:

        def cal_score(mix: float) -> tuple[float, float]:
            head.mix = mix
            scores = head.combined_logits(x[cal], cal_ids)
            return float(np.mean(scores.argmax(axis=1) == y[cal])), -_nll(scores, y[cal])

        head.mix = max(MIX_GRID, key=cal_score)
    head.temperature = _fit_temperature(head.combined_logits(x[cal], cal_ids), y[cal])
    return head


def predict_labels(
    head: Head, x: np.ndarray, token_ids: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    labels: np.ndarray = np.array(head.classes)[head.predict_proba(x, token_ids).argmax(axis=1)]
    return labels


def accuracy(
    head: Head, x: np.ndarray, labels: Sequence[str], token_ids: Sequence[np.ndarray] | None = None
) -> float:
    return float(np.mean(predict_labels(head, x, token_ids) == np.array(labels)))
