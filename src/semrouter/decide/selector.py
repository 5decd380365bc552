"""The learned model selector at routing time (numpy only): which pool model should answer.

Owns the selector artifact (``selector_<name>.npz`` arrays + ``selector_<name>.json`` names and
training report), the per-model predictions and the choice rule. From the encoder's feature
vector of a request (``Encoded.features``) and its prompt length in characters it predicts,
for every pool model:

* ``p_correct``: the calibrated probability that the model answers correctly. Two linear heads
  read the features: a domain head (softmax over the 14 MMLU-Pro categories) and an easiness
  head (the share of recorded models that get such a question right, standardised).
  A logistic head per model maps ``[domain probabilities, easiness]`` to the probability;
  it was fitted on out-of-fold head outputs, so the probabilities are calibrated as they are.
* ``expected_cost``: ``request_cost(prompt_chars, expected output_chars, active_params_b)``,
  the expected output length being the model's mean per domain weighted by the domain head.

The choice is ``argmax_m p_correct[m] - cost_weight * expected_cost[m] / cost_scale`` where
``cost_scale`` is the mean cost, on the training questions, of the pool's most accurate model.
So ``cost_weight`` is unit-free: 0 picks the model most likely to be right; 1 gives up a
point of probability only to save 1% of an average best-model request; large values pick the
cheapest model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np

SHIPPED = resources.files("semrouter") / "models"
CHARS_PER_TOKEN = 4.0

_ARRAYS = (
    "domain_weight",
    "domain_bias",
    "easiness_weight",
    "head_weight",
    "head_bias",
    "output_chars",
    "active_params_b",
)


def request_cost(prompt_chars: Any, output_chars: Any, active_params_b: Any) -> np.ndarray:
    """The project's cost model: ``(prompt + output characters) / 4 * active parameters (B)``,
    i.e. approximate tokens times active parameters. Broadcasts like numpy."""
    total = np.asarray(prompt_chars, dtype=np.float64) + np.asarray(output_chars, dtype=np.float64)
    return total / CHARS_PER_TOKEN * np.asarray(active_params_b, dtype=np.float64)


def pick(
    p_correct: np.ndarray, expected_cost: np.ndarray, cost_weight: float, cost_scale: float
) -> np.ndarray:
    """Per row, the column maximising ``p_correct - cost_weight * expected_cost / cost_scale``
    (ties: the first column)."""
    if cost_weight < 0 or cost_scale <= 0:
        raise ValueError("cost_weight must be >= 0 and cost_scale > 0")
    utility = np.asarray(p_correct) - cost_weight * np.asarray(expected_cost) / cost_scale
    best: np.ndarray = np.argmax(utility, axis=-1)
    return best


@dataclass(frozen=True, slots=True)
class Prediction:
    """Per request (rows) and pool model (columns): probability of a correct answer and cost."""

    p_correct: np.ndarray
    expected_cost: np.ndarray


@dataclass(frozen=True, slots=True)
class Choice:
    """The chosen model, and every pool model's probability of being right and expected cost."""

    model: str
    probabilities: dict[str, float]
    expected_costs: dict[str, float]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    p: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return p


@dataclass(frozen=True, eq=False)
class LearnedSelector:
    """A trained selector. The heads take raw ``Encoded.features`` (their standardisation is
    folded into the weights); ``feature_dim`` is their width.

    domain_weight (feature_dim, domains), domain_bias (domains,): the domain head.
    easiness_weight (feature_dim,), easiness_bias: the standardised easiness head.
    head_weight (domains + 1, models), head_bias (models,): per-model logistic heads over
    ``[domain probabilities, easiness]``.
    output_chars (domains, models): mean output characters of each model per domain.
    active_params_b (models,), cost_scale: see the module docstring.
    info: the training report kept in the artifact's JSON (figures, data, seed).
    """

    models: tuple[str, ...]
    domains: tuple[str, ...]
    domain_weight: np.ndarray
    domain_bias: np.ndarray
    easiness_weight: np.ndarray
    easiness_bias: float
    head_weight: np.ndarray
    head_bias: np.ndarray
    output_chars: np.ndarray
    active_params_b: np.ndarray
    cost_scale: float
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m, k = len(self.models), len(self.domains)
        shapes = {
            "domain_weight": (self.feature_dim, k),
            "domain_bias": (k,),
            "easiness_weight": (self.feature_dim,),
            "head_weight": (k + 1, m),
            "head_bias": (m,),
            "output_chars": (k, m),
            "active_params_b": (m,),
        }
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")
        if len(set(self.models)) != m or self.cost_scale <= 0:
            raise ValueError("models must be distinct and cost_scale positive")

    @property
    def feature_dim(self) -> int:
        return int(self.domain_weight.shape[0])

    def _rows(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        x = x[None, :] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise ValueError(f"features must have {self.feature_dim} columns, got {x.shape}")
        return x

    def head_outputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, domains) probabilities of each MMLU-Pro category and (n,) standardised easiness."""
        x = self._rows(features)
        domains = _softmax(x @ self.domain_weight + self.domain_bias).astype(np.float64)
        return domains, (x @ self.easiness_weight).astype(np.float64) + self.easiness_bias

    def predict(self, features: np.ndarray, prompt_chars: Any) -> Prediction:
        """Predictions for requests: ``features`` (n, feature_dim) or (feature_dim,), and the
        prompt lengths in characters (n,) or a number."""
        domains, easiness = self.head_outputs(features)
        head_input = np.hstack([domains, easiness[:, None]])
        p = _sigmoid(head_input @ self.head_weight + self.head_bias)
        prompt = np.broadcast_to(np.asarray(prompt_chars, dtype=np.float64), (len(p),))
        cost = request_cost(prompt[:, None], domains @ self.output_chars, self.active_params_b)
        return Prediction(p_correct=p, expected_cost=cost)

    def choose(self, features: np.ndarray, prompt_chars: int, cost_weight: float) -> Choice:
        """The model for one request (``features`` of shape (feature_dim,))."""
        prediction = self.predict(features, prompt_chars)
        best = int(
            pick(prediction.p_correct, prediction.expected_cost, cost_weight, self.cost_scale)[0]
        )
        return self.choice(prediction, best)

    def choice(self, prediction: Prediction, best: int) -> Choice:
        """Model ``best`` (a column) chosen for the one request of ``prediction``."""
        return Choice(
            model=self.models[best],
            probabilities={
                m: float(p) for m, p in zip(self.models, prediction.p_correct[0], strict=True)
            },
            expected_costs={
                m: float(c) for m, c in zip(self.models, prediction.expected_cost[0], strict=True)
            },
        )

    def restrict(self, models: list[str] | tuple[str, ...]) -> LearnedSelector:
        """The same selector choosing only among ``models`` (a subset, in the order given);
        ``cost_scale`` is kept, so a ``cost_weight`` means the same trade-off."""
        unknown = [m for m in models if m not in self.models]
        if unknown or not models:
            raise ValueError(
                f"selector covers {list(self.models)}; cannot choose among {list(models)}"
            )
        cols = [self.models.index(m) for m in models]
        return LearnedSelector(
            models=tuple(models),
            domains=self.domains,
            domain_weight=self.domain_weight,
            domain_bias=self.domain_bias,
            easiness_weight=self.easiness_weight,
            easiness_bias=self.easiness_bias,
            head_weight=self.head_weight[:, cols],
            head_bias=self.head_bias[cols],
            output_chars=self.output_chars[:, cols],
            active_params_b=self.active_params_b[cols],
            cost_scale=self.cost_scale,
            info=self.info,
        )

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Writes ``path`` (.npz arrays) and the JSON beside it; returns both paths."""
        npz = Path(path).with_suffix(".npz")
        meta = npz.with_suffix(".json")
        arrays = {name: np.asarray(getattr(self, name), dtype=np.float32) for name in _ARRAYS}
        with open(npz, "wb") as handle:
            np.savez_compressed(handle, allow_pickle=False, **arrays)
        document = {
            "format": "semrouter-selector/1",
            "input": "features",
            "feature_dim": self.feature_dim,
            "models": list(self.models),
            "domains": list(self.domains),
            "easiness_bias": self.easiness_bias,
            "cost_scale": self.cost_scale,
            "info": self.info,
        }
        meta.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        return npz, meta

    @classmethod
    def load(cls, path: str | Path) -> LearnedSelector:
        """Reads an artifact written by ``save`` (give the .npz or the .json path)."""
        npz = Path(path).with_suffix(".npz")
        document = json.loads(npz.with_suffix(".json").read_text(encoding="utf-8"))
        if document.get("format") != "semrouter-selector/1":
            raise ValueError(f"{npz}: not a semrouter selector artifact")
        with np.load(npz, allow_pickle=False) as data:
            arrays = {name: data[name] for name in _ARRAYS}
        return cls(
            models=tuple(document["models"]),
            domains=tuple(document["domains"]),
            easiness_bias=float(document["easiness_bias"]),
            cost_scale=float(document["cost_scale"]),
            info=document.get("info", {}),
            **arrays,
        )


def artifact_files(artifact: str | Path) -> tuple[Traversable, Traversable]:
    """The (.npz, .json) files of a selector: ``artifact`` as a path if it ends in .npz or
    .json, else the shipped selector of that pool name. Raises FileNotFoundError."""
    path = Path(artifact)
    if path.suffix in (".npz", ".json"):
        npz: Traversable = path.with_suffix(".npz")
        if not npz.is_file():
            raise FileNotFoundError(f"selector artifact not found: {path}")
        return npz, path.with_suffix(".json")
    npz = SHIPPED / f"selector_{artifact}.npz"
    if not npz.is_file():
        raise FileNotFoundError(
            f"no shipped selector '{artifact}' (looked for {npz}); "
            f"run 'semrouter train selector --pool {artifact}'"
        )
    return npz, SHIPPED / f"selector_{artifact}.json"


def selector_models(artifact: str | Path) -> tuple[str, ...]:
    """The models a selector artifact chooses among, read from its JSON alone."""
    meta = artifact_files(artifact)[1]
    try:
        document = json.loads(meta.read_text(encoding="utf-8"))
        return tuple(str(m) for m in document["models"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{meta}: not a readable selector artifact ({exc})") from None


def load_selector(
    artifact: str | Path, models: list[str] | tuple[str, ...] | None = None
) -> LearnedSelector:
    """A shipped selector by name (``reference_pool`` → ``models/selector_reference_pool.npz``)
    or an artifact by path (.npz or .json); restricted to ``models`` when given."""
    with resources.as_file(artifact_files(artifact)[0]) as npz:
        selector = LearnedSelector.load(npz)
    return selector if models is None else selector.restrict(models)
