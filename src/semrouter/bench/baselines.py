"""Domain-classification baselines, trained and scored on the domain head's own data splits.

Owns the four baselines that issue 3 names for the MMLU-Pro domain task, so that the domain
head's accuracy is reported next to figures measured the same way, on the same questions:

* ``tfidf_svm``: TF-IDF of word 1–2-grams, linear SVM;
* ``minilm_logreg``: logistic regression on the all-MiniLM-L6-v2 sentence embedding;
* ``nearest_utterance``: the label of the most similar training text (cosine on that
  embedding), i.e. semantic routing with every training text as an utterance;
* ``tfidf_minilm_svm``: linear SVM on the TF-IDF and the embedding side by side.

Each is fitted on two training sets: the MMLU-Pro train split alone (question text, as in the
issue) and that plus the project's chat training set (the data the domain head learns from,
without its typo'd copies). Regularisation is chosen by 3-fold cross-validation on the training
set only. Embeddings come from the router's own engine (spelling normalisation as configured),
for training and scoring alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from semrouter.embed.base import Embedder
from semrouter.signals.engine import head_input
from semrouter.signals.heads import Head

BASELINES = ("tfidf_svm", "minilm_logreg", "nearest_utterance", "tfidf_minilm_svm")
C_GRID = {"tfidf_svm": (0.1, 0.3, 1.0, 3.0), "minilm_logreg": (1.0, 10.0, 100.0)}
C_GRID["tfidf_minilm_svm"] = C_GRID["tfidf_svm"]

Labelled = Sequence[tuple[str, str]]
Predict = Callable[[list[str]], np.ndarray]


def _fit(
    name: str, texts: list[str], labels: np.ndarray, embed: Callable[[list[str]], np.ndarray]
) -> tuple[Predict, float | None]:
    """One baseline fitted on (texts, labels): its predict function and the C chosen."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import LinearSVC

    embeddings = embed(texts)
    if name == "nearest_utterance":
        return lambda batch: labels[np.argmax(embed(batch) @ embeddings.T, axis=1)], None
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(texts)

    def inputs(batch: list[str], batch_embeddings: np.ndarray) -> Any:
        if name == "minilm_logreg":
            return batch_embeddings
        words = tfidf.transform(batch)
        if name == "tfidf_svm":
            return words
        return sparse.hstack([words, sparse.csr_matrix(batch_embeddings)]).tocsr()

    estimator = LogisticRegression(max_iter=3000) if name == "minilm_logreg" else LinearSVC()
    search = GridSearchCV(estimator, {"C": list(C_GRID[name])}, cv=3)
    model = search.fit(inputs(texts, embeddings), labels).best_estimator_
    return lambda batch: model.predict(inputs(batch, embed(batch))), float(search.best_params_["C"])


def domain_baselines(
    embedder: Embedder,
    head: Head,
    train_sets: Mapping[str, Labelled],
    eval_sets: Mapping[str, Labelled],
) -> dict[str, Any]:
    """Accuracy of the domain head and of every baseline (fitted on each training set) on each
    evaluation set: ``{"semrouter_head": {set: acc}, "train_sets": {name: {"examples": n,
    baseline: {"C": c, set: acc}}}}``."""
    from semrouter.train.features import encode_texts

    known: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        # Encode each distinct text once (the training sets overlap), in a stable order so
        # that encode_texts' disk cache serves the next run.
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            known.update(zip(missing, encode_texts(embedder, missing).embeddings, strict=True))
        return np.stack([known[t] for t in texts])

    def head_predictions(texts: list[str]) -> np.ndarray:
        encoded = encode_texts(embedder, texts)
        probabilities = head.predict_proba(head_input(head, encoded), encoded.token_ids)
        labels: np.ndarray = np.asarray(head.classes)[probabilities.argmax(axis=1)]
        return labels

    def scores(predict: Predict) -> dict[str, float]:
        return {
            name: round(float(np.mean(predict([t for t, _ in items]) == [c for _, c in items])), 4)
            for name, items in eval_sets.items()
        }

    fitted: dict[str, Any] = {}
    for train_name, items in train_sets.items():
        texts, labels = [t for t, _ in items], np.array([c for _, c in items])
        fitted[train_name] = {"examples": len(texts)}
        for baseline in BASELINES:
            predict, c = _fit(baseline, texts, labels, embed)
            fitted[train_name][baseline] = {"C": c, **scores(predict)}
    return {"status": "ok", "semrouter_head": scores(head_predictions), "train_sets": fitted}
