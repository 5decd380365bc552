"""Training and validation data: the shared MMLU-Pro files and the project's chat-style sets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semrouter.train.splits import is_validation

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_MMLU_DIR = REPO_ROOT.parent / "shared" / "data" / "mmlu_pro"
CHAT_TRAIN_DIR = REPO_ROOT / "data" / "train"
CHAT_VALIDATION_DIR = REPO_ROOT / "data" / "validation"


@dataclass(frozen=True, slots=True)
class Question:
    question_id: str
    text: str
    category: str
    src: str
    options: tuple[str, ...]


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: invalid JSON: {exc.msg}") from None


def mmlu_questions(path: Path, validation: bool) -> list[Question]:
    """The train (validation=False) or validation (True) part of an MMLU-Pro questions file."""
    return [
        Question(
            str(q["question_id"]),
            q["question"],
            q["category"],
            q.get("src", ""),
            tuple(q["options"]),
        )
        for q in read_jsonl(path)
        if is_validation(q["question_id"]) == validation
    ]


def chat_examples(name: str, validation: bool) -> list[dict[str, Any]]:
    folder = CHAT_VALIDATION_DIR if validation else CHAT_TRAIN_DIR
    path = folder / f"{name}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"missing chat data set {path}")
    return list(read_jsonl(path))


def training_texts(questions_path: Path) -> list[str]:
    """Every training text: MMLU-Pro train-split questions and the chat training sets."""
    texts = [q.text for q in mmlu_questions(questions_path, validation=False)]
    for name in ("chat_domain", "chat_reasoning"):
        texts += [c["text"] for c in chat_examples(name, validation=False)]
    return texts
