"""Training the jailbreak / prompt-injection head and the binary metrics that judge it.

The head (classes "benign", "jailbreak") is fitted with the shared head machinery
(`semrouter.train.heads.fit_head`: an MLP on the encoder's features plus a TF-IDF expert on the
same pass's wordpieces, mixed and temperature-calibrated on data held out from training) on the
train split of `semrouter.train.guard_data`, encoded by the router's own embedder, so the head
reads exactly what the router computes per request. The shipped threshold is picked on the tune
split: the lowest one at which at most TARGET_FPR of the tune split's benign prompts are
flagged (also bounding hard benign prompts at 5% there cost a third of the recall). The
project's own examples weigh more than a corpus row (they are few, and written for the kinds
the corpora lack). The validation split and the realistic chat set are only measured.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from semrouter.embed.base import Embedder
from semrouter.signals.jailbreak import CLASSES, JailbreakHead
from semrouter.train.features import encode_texts
from semrouter.train.guard_data import (
    GuardExample,
    Split,
    guard_examples,
    realistic_chat_validation,
    split_of,
)
from semrouter.train.heads import HeadSpec, fit_head

TARGET_FPR = 0.01
DEFAULT_HIDDEN = 256
AUTHORED_WEIGHT = 3.0
AUTHORED_BENIGN_WEIGHT = 6.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def threshold_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold flagging at most `fpr` of the negatives (score >= threshold)."""
    negatives = np.sort(scores[labels == 0])[::-1]
    allowed = int(np.floor(fpr * len(negatives)))
    if allowed >= len(negatives):
        return float(negatives[-1])
    return float(np.nextafter(negatives[allowed], np.float32(np.inf)))


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    return float(np.mean(scores[labels == 1] >= threshold_at_fpr(labels, scores, fpr)))


@dataclass(frozen=True)
class JailbreakReport:
    train_size: int
    tune_size: int
    validation_size: int
    threshold: float
    validation_auc: float
    validation_tpr: float
    validation_fpr: float
    chat_flagged: float
    mix: float

    def lines(self) -> list[str]:
        return [
            f"examples: train {self.train_size}, tune {self.tune_size}, "
            f"validation {self.validation_size}",
            f"lexical expert mix: {self.mix:.2f}",
            f"threshold (tune split, FPR <= {TARGET_FPR:.0%}): {self.threshold:.4f}",
            f"validation ROC AUC: {self.validation_auc:.4f}",
            f"validation at the threshold: TPR {self.validation_tpr:.4f}, "
            f"FPR {self.validation_fpr:.4f}",
            f"realistic chat validation flagged: {self.chat_flagged:.4f}",
        ]


def is_hard_benign(example: GuardExample) -> bool:
    """A benign prompt written to look like an attack (about injections, quoting
    instructions, role-play, other languages, documents and tool outputs)."""
    return (
        example.label == 0
        and example.kind.startswith("benign_")
        and (example.kind != "benign_corpus")
    )


def _weight(example: GuardExample) -> float:
    if example.source != "authored":
        return 1.0
    return AUTHORED_BENIGN_WEIGHT if example.label == 0 else AUTHORED_WEIGHT


def by_split(
    examples: Sequence[GuardExample], limit: int | None = None, seed: int = 0
) -> dict[Split, list[GuardExample]]:
    """The examples of each split; with `limit`, a seeded sample of at most that many each."""
    parts: dict[Split, list[GuardExample]] = {"train": [], "tune": [], "validation": []}
    for example in examples:
        parts[split_of(example.group)].append(example)
    if limit is not None:
        rng = random.Random(seed)
        parts = {k: rng.sample(v, min(limit, len(v))) for k, v in parts.items()}
    return parts


def train_jailbreak(
    embedder: Embedder, spec: HeadSpec, limit: int | None = None
) -> tuple[JailbreakHead, JailbreakReport]:
    parts = by_split(guard_examples(), limit, spec.seed)
    train = parts["train"]
    encoded = encode_texts(embedder, [e.text for e in train])
    weights = np.array([_weight(e) for e in train])
    head = fit_head(
        encoded.features,
        [CLASSES[e.label] for e in train],
        CLASSES,
        spec,
        sample_weight=weights,
        token_ids=encoded.token_ids,
    )

    def scores(texts: Sequence[str]) -> np.ndarray:
        return JailbreakHead(head).probabilities(encode_texts(embedder, texts))

    tune_labels = np.array([e.label for e in parts["tune"]])
    tune_scores = scores([e.text for e in parts["tune"]])
    threshold = threshold_at_fpr(tune_labels, tune_scores, TARGET_FPR)
    model = JailbreakHead(head, threshold)
    val_labels = np.array([e.label for e in parts["validation"]])
    val_scores = scores([e.text for e in parts["validation"]])
    chat = realistic_chat_validation()
    chat_scores = scores(chat[:limit] if limit is not None else chat)
    report = JailbreakReport(
        train_size=len(train),
        tune_size=len(parts["tune"]),
        validation_size=len(parts["validation"]),
        threshold=threshold,
        validation_auc=roc_auc(val_labels, val_scores),
        validation_tpr=float(np.mean(val_scores[val_labels == 1] >= threshold)),
        validation_fpr=float(np.mean(val_scores[val_labels == 0] >= threshold)),
        chat_flagged=float(np.mean(chat_scores >= threshold)),
        mix=head.mix,
    )
    return model, report
