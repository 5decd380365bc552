"""Training the reasoning-need head: does a request need multi-step reasoning or a direct answer?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semrouter.embed.base import Embedder
from semrouter.signals.heads import Head
from semrouter.train.data import chat_examples
from semrouter.train.features import encode_texts
from semrouter.train.heads import HeadSpec, accuracy, fit_head

CLASSES = ("false", "true")


@dataclass(frozen=True)
class ReasoningReport:
    chat_validation_accuracy: float
    train_size: int
    positive_rate: float

    def lines(self) -> list[str]:
        return [
            f"train examples: {self.train_size} ({self.positive_rate:.0%} need reasoning)",
            f"chat validation agreement with human labels: {self.chat_validation_accuracy:.4f}",
        ]


def _labels(examples: list[dict[str, object]]) -> list[str]:
    return ["true" if e["reasoning"] else "false" for e in examples]


def train_reasoning(
    embedder: Embedder, learner: Embedder, spec: HeadSpec
) -> tuple[Head, ReasoningReport]:
    """Train on ``learner``'s features of the texts as written; validate with ``embedder``."""
    train = chat_examples("chat_reasoning", validation=False)
    labels = _labels(train)
    x = encode_texts(learner, [e["text"] for e in train]).features
    head = fit_head(x, labels, CLASSES, spec)
    validation = chat_examples("chat_reasoning", validation=True)
    val_acc = accuracy(
        head, encode_texts(embedder, [e["text"] for e in validation]).features, _labels(validation)
    )
    positive = float(np.mean([label == "true" for label in labels]))
    return head, ReasoningReport(val_acc, len(train), positive)
