"""Small learned classification heads evaluated with numpy on one encoder pass.

A head has up to two experts whose log-probabilities are mixed (a product of experts):

* a dense MLP on the encoder's features (`W{i}`/`b{i}`, ReLU between layers). It may predict
  finer labels than the head's classes (e.g. MMLU-Pro source subjects); `aggregate` (fine × class,
  0/1) sums their probabilities into the classes;
* an optional lexical linear model on the TF-IDF of the request's wordpieces (from the same
  tokenizer pass): `lex_ids` (vocabulary ids with a weight), `lex_idf`, `lex_W`, `lex_b`.

p ∝ exp(((1 - mix) · log p_dense + mix · log p_lexical) / temperature), with `mix` and
`temperature` fitted on data held out from training, so reported confidences are real
probabilities. One `.npz` file holds it all; `input` names the Encoded array the MLP reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np

SHIPPED = resources.files("semrouter") / "models"
_EPS = 1e-9


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    log_p: np.ndarray = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return log_p


@dataclass(frozen=True, slots=True)
class Lexical:
    """A linear model over sublinear TF-IDF of wordpiece ids (L2-normalised rows)."""

    ids: np.ndarray  # (v,) sorted vocabulary ids that carry weight
    idf: np.ndarray  # (v,)
    weights: np.ndarray  # (v, classes)
    bias: np.ndarray  # (classes,)

    def logits(self, token_ids: Sequence[np.ndarray]) -> np.ndarray:
        out = np.tile(self.bias, (len(token_ids), 1)).astype(np.float32)
        for row, ids in enumerate(token_ids):
            unique, counts = np.unique(ids, return_counts=True)
            pos = np.searchsorted(self.ids, unique)
            pos[pos == len(self.ids)] = 0
            known = self.ids[pos] == unique
            if not known.any():
                continue
            tfidf = (1.0 + np.log(counts[known])) * self.idf[pos[known]]
            tfidf /= np.sqrt((tfidf**2).sum() + _EPS)
            out[row] += tfidf @ self.weights[pos[known]]
        return out


class Head:
    def __init__(
        self,
        classes: list[str],
        weights: list[tuple[np.ndarray, np.ndarray]],
        temperature: float = 1.0,
        input_name: str = "features",
        aggregate: np.ndarray | None = None,
        lexical: Lexical | None = None,
        mix: float = 0.0,
    ) -> None:
        if not weights:
            raise ValueError("a head needs at least one layer")
        width = weights[-1][0].shape[1]
        expected = aggregate.shape[0] if aggregate is not None else len(classes)
        if width != expected:
            raise ValueError(f"last layer width {width} != {expected} outputs")
        if aggregate is not None and aggregate.shape[1] != len(classes):
            raise ValueError("aggregate must map onto the classes")
        self.classes = classes
        self.weights = [(w.astype(np.float32), b.astype(np.float32)) for w, b in weights]
        self.temperature = float(temperature)
        self.input_name = input_name
        self.aggregate = None if aggregate is None else aggregate.astype(np.float32)
        self.lexical = lexical
        self.mix = float(mix) if lexical is not None else 0.0

    @property
    def input_dim(self) -> int:
        return int(self.weights[0][0].shape[0])

    def dense_log_proba(self, x: np.ndarray) -> np.ndarray:
        h = np.atleast_2d(x).astype(np.float32, copy=False)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(self.weights):
            h = h @ w + b
            if i < last:
                np.maximum(h, 0.0, out=h)
        log_p = _log_softmax(h)
        if self.aggregate is None:
            return log_p
        aggregated: np.ndarray = np.log(np.exp(log_p) @ self.aggregate + _EPS)
        return aggregated

    def combined_logits(
        self, x: np.ndarray, token_ids: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """Uncalibrated log-scores (temperature not applied)."""
        scores = self.dense_log_proba(x)
        if self.lexical is not None and self.mix and token_ids:
            lexical = _log_softmax(self.lexical.logits(token_ids))
            scores = (1.0 - self.mix) * scores + self.mix * lexical
        return scores

    def predict_proba(
        self, x: np.ndarray, token_ids: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """(n, input_dim) → (n, classes) calibrated probabilities."""
        p: np.ndarray = np.exp(_log_softmax(self.combined_logits(x, token_ids) / self.temperature))
        return p

    def save(self, path: str | Path, extra: dict[str, np.ndarray] | None = None) -> None:
        """Write the head as one .npz; `extra` arrays (e.g. a threshold) ride along unread."""
        arrays: dict[str, np.ndarray] = {
            **(extra or {}),
            "classes": np.array(self.classes),
            "layers": np.array(len(self.weights)),
            "temperature": np.array(self.temperature),
            "input": np.array(self.input_name),
            "mix": np.array(self.mix),
        }
        for i, (w, b) in enumerate(self.weights):
            arrays[f"W{i}"] = w.astype(np.float16)
            arrays[f"b{i}"] = b
        if self.aggregate is not None:
            arrays["aggregate"] = self.aggregate.astype(np.uint8)
        if self.lexical is not None:
            arrays["lex_ids"] = self.lexical.ids.astype(np.int32)
            arrays["lex_idf"] = self.lexical.idf.astype(np.float32)
            arrays["lex_W"] = self.lexical.weights.astype(np.float16)
            arrays["lex_b"] = self.lexical.bias.astype(np.float32)
        with open(path, "wb") as handle:
            np.savez_compressed(handle, allow_pickle=False, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Head:
        with np.load(path, allow_pickle=False) as data:
            layers = int(data["layers"])
            lexical = None
            if "lex_ids" in data:
                lexical = Lexical(
                    data["lex_ids"].astype(np.int64),
                    data["lex_idf"].astype(np.float32),
                    data["lex_W"].astype(np.float32),
                    data["lex_b"].astype(np.float32),
                )
            return cls(
                classes=[str(c) for c in data["classes"]],
                weights=[(data[f"W{i}"], data[f"b{i}"]) for i in range(layers)],
                temperature=float(data["temperature"]),
                input_name=str(data["input"]),
                aggregate=data.get("aggregate"),
                lexical=lexical,
                mix=float(data["mix"]) if "mix" in data else 0.0,
            )


def head_file(name_or_path: str) -> Traversable:
    """Where a head lives: ``name_or_path`` if it ends in .npz, else the shipped head of that
    name (e.g. 'domain'). Raises FileNotFoundError naming what was looked for."""
    path = Path(name_or_path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"head artifact not found: {path}")
        return path
    shipped = SHIPPED / f"{name_or_path}_head.npz"
    if not shipped.is_file():
        raise FileNotFoundError(
            f"no shipped head '{name_or_path}' (looked for {shipped}); "
            f"run 'semrouter train {name_or_path}'"
        )
    return shipped


def load_head(name_or_path: str) -> Head:
    """A shipped head by name (e.g. 'domain') or a head file by path."""
    with resources.as_file(head_file(name_or_path)) as file:
        return Head.load(file)
