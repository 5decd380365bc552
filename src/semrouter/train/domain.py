"""Training the domain head: MMLU-Pro question text plus chat-style queries → 14 categories."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semrouter.config.schema import MMLU_PRO_DOMAINS
from semrouter.embed.base import Embedder
from semrouter.signals.heads import Head
from semrouter.train.data import chat_examples, mmlu_questions
from semrouter.train.features import encode_texts
from semrouter.train.heads import HeadSpec, accuracy, fit_head

CHAT_WEIGHT = 2.0


@dataclass(frozen=True)
class DomainReport:
    mmlu_validation_accuracy: float
    chat_validation_accuracy: float
    train_size: int

    def lines(self) -> list[str]:
        return [
            f"train examples: {self.train_size}",
            "MMLU-Pro validation accuracy (question text only): "
            f"{self.mmlu_validation_accuracy:.4f}",
            f"chat validation accuracy: {self.chat_validation_accuracy:.4f}",
        ]


def train_domain(
    embedder: Embedder, questions_path: Path, spec: HeadSpec
) -> tuple[Head, DomainReport]:
    questions = mmlu_questions(questions_path, validation=False)
    chat = chat_examples("chat_domain", validation=False)
    texts = [q.text for q in questions] + [c["text"] for c in chat]
    labels = [q.category for q in questions] + [c["domain"] for c in chat]
    weights = np.array([1.0] * len(questions) + [CHAT_WEIGHT] * len(chat))
    x = encode_texts(embedder, texts).features
    head = fit_head(x, labels, MMLU_PRO_DOMAINS, spec, sample_weight=weights)

    val_questions = mmlu_questions(questions_path, validation=True)
    val_chat = chat_examples("chat_domain", validation=True)
    mmlu_acc = accuracy(
        head,
        encode_texts(embedder, [q.text for q in val_questions]).features,
        [q.category for q in val_questions],
    )
    chat_acc = accuracy(
        head,
        encode_texts(embedder, [c["text"] for c in val_chat]).features,
        [c["domain"] for c in val_chat],
    )
    return head, DomainReport(mmlu_acc, chat_acc, len(texts))
