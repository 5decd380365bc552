"""Training the domain head: MMLU-Pro question text plus chat-style queries → 14 categories.

The dense expert learns finer labels than the 14 categories: each MMLU-Pro question's source
subject (`src`, e.g. `ori_mmlu-high_school_biology`, `stemez-Physics`) and, for chat examples,
a separate 'chat:<domain>' label, since chat queries look nothing like exam questions. Their
probabilities are summed back into the 14 categories. A lexical expert on the same pass's
wordpieces is mixed in (see semrouter.signals.heads). Training texts are doubled with a
typo'd copy of each, for robustness to misspellings.

The heads learn from the texts as written (``learner``: spelling normalisation off), typos
included, and are validated the way the router reads requests (``embedder``: normalisation
on). Training on normalised texts instead measured worse (MMLU-Pro 0.8505, chat 0.9589, typo
flips 0.034), since most typo'd copies then collapse back into duplicates of the original.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semrouter.config.schema import MMLU_PRO_DOMAINS
from semrouter.embed.base import Embedder
from semrouter.signals.heads import Head
from semrouter.train.data import chat_examples, mmlu_questions
from semrouter.train.features import encode_texts
from semrouter.train.heads import HeadSpec, accuracy, fit_head, predict_labels
from semrouter.train.robustness import flip_rate, perturb

CHAT_WEIGHT = 2.0
TYPO_COPIES = 1


@dataclass(frozen=True)
class DomainReport:
    mmlu_validation_accuracy: float
    chat_validation_accuracy: float
    typo_flip_rate: float
    mmlu_typo_flip_rate: float
    train_size: int
    mix: float

    def lines(self) -> list[str]:
        return [
            f"train examples: {self.train_size}",
            "MMLU-Pro validation accuracy (question text only): "
            f"{self.mmlu_validation_accuracy:.4f}",
            f"chat validation accuracy: {self.chat_validation_accuracy:.4f}",
            f"typo/casing flip rate on the chat validation set: {self.typo_flip_rate:.4f}",
            f"typo/casing flip rate on the MMLU-Pro validation set: {self.mmlu_typo_flip_rate:.4f}",
            f"lexical expert mix: {self.mix:.2f}",
        ]


def train_domain(
    embedder: Embedder, learner: Embedder, questions_path: Path, spec: HeadSpec
) -> tuple[Head, DomainReport]:
    questions = mmlu_questions(questions_path, validation=False)
    chat = chat_examples("chat_domain", validation=False)
    texts = [q.text for q in questions] + [c["text"] for c in chat]
    labels = [q.category for q in questions] + [c["domain"] for c in chat]
    fine = [q.src or q.category for q in questions] + [f"chat:{c['domain']}" for c in chat]
    weights = np.array([1.0] * len(questions) + [CHAT_WEIGHT] * len(chat))
    # Every text also appears with typos, TYPO_COPIES times (random streams other than the
    # evaluation's), so that a misspelt keyword does not move a query to another domain.
    rng = random.Random(spec.seed + 1)
    texts += [perturb(t, rng) for _ in range(TYPO_COPIES) for t in texts]
    copies = TYPO_COPIES + 1
    labels, fine, weights = labels * copies, fine * copies, np.tile(weights, copies)
    encoded = encode_texts(learner, texts)
    head = fit_head(
        encoded.features,
        labels,
        MMLU_PRO_DOMAINS,
        spec,
        sample_weight=weights,
        fine_labels=fine,
        token_ids=encoded.token_ids,
    )

    def evaluate(val_texts: list[str], val_labels: list[str]) -> float:
        val = encode_texts(embedder, val_texts)
        return accuracy(head, val.features, val_labels, val.token_ids)

    def predict(batch: Sequence[str]) -> np.ndarray:
        val = embedder.encode_sync(batch)
        return predict_labels(head, val.features, val.token_ids)

    val_questions = mmlu_questions(questions_path, validation=True)
    val_chat = chat_examples("chat_domain", validation=True)
    chat_texts = [c["text"] for c in val_chat]
    mmlu_texts = [q.text for q in val_questions]
    report = DomainReport(
        mmlu_validation_accuracy=evaluate(mmlu_texts, [q.category for q in val_questions]),
        chat_validation_accuracy=evaluate(chat_texts, [c["domain"] for c in val_chat]),
        typo_flip_rate=flip_rate(predict, chat_texts, seed=spec.seed),
        mmlu_typo_flip_rate=flip_rate(predict, mmlu_texts, seed=spec.seed),
        train_size=len(texts),
        mix=head.mix,
    )
    return head, report
