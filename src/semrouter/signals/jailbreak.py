"""The jailbreak / prompt-injection signal's model: a calibrated 2-class head on one encoder pass.

`load_jailbreak()` reads the shipped `models/jailbreak_head.npz` (or a path), a `Head` with the
classes ("benign", "jailbreak") plus the shipped decision threshold, chosen at training time on
a tuning split (see `semrouter.train.jailbreak`). `probabilities(encoded)` gives one calibrated
P(jailbreak) per encoded text, from the features and wordpieces the router already computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from semrouter.embed.base import Encoded
from semrouter.signals.heads import Head, head_file

JAILBREAK_SIGNAL = "jailbreak"
CLASSES = ("benign", "jailbreak")
DEFAULT_THRESHOLD = 0.5
THRESHOLD_KEY = "threshold"


@dataclass(frozen=True, slots=True)
class JailbreakHead:
    head: Head
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        if tuple(self.head.classes) != CLASSES:
            raise ValueError(f"a jailbreak head has the classes {CLASSES}, not {self.head.classes}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"jailbreak threshold {self.threshold} is not in [0, 1]")

    def probabilities(self, encoded: Encoded) -> np.ndarray:
        """(n,) float32 calibrated P(jailbreak), one per encoded text. Without wordpieces (a
        remote embedder) only the dense expert speaks."""
        token_ids = encoded.token_ids or None
        p = self.head.predict_proba(encoded.features, token_ids)[:, 1]
        return p.astype(np.float32)

    def flagged(self, encoded: Encoded, threshold: float | None = None) -> np.ndarray:
        """(n,) bool: probability at or above the threshold (the shipped one by default)."""
        limit = self.threshold if threshold is None else threshold
        return self.probabilities(encoded) >= limit


def load_jailbreak(name_or_path: str = JAILBREAK_SIGNAL) -> JailbreakHead:
    """The shipped jailbreak head by name, or a head file by path (see `head_file`)."""
    with resources.as_file(head_file(name_or_path)) as file:
        head = Head.load(file)
        with np.load(file, allow_pickle=False) as data:
            threshold = float(data[THRESHOLD_KEY]) if THRESHOLD_KEY in data else DEFAULT_THRESHOLD
    return JailbreakHead(head, threshold)


def save_jailbreak(model: JailbreakHead, path: str | Path) -> None:
    """Write the head with its threshold in the same .npz."""
    model.head.save(path, extra={THRESHOLD_KEY: np.array(model.threshold)})
