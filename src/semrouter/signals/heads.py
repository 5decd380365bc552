"""Small learned classification heads evaluated with numpy on the encoder's features.

An artifact is one `.npz` file: `classes` (string array), `layers` (count), `W{i}`/`b{i}` per
dense layer (ReLU between layers), `temperature` (calibration, fitted on held-out data), and
`input` ("features" or "embeddings": which Encoded array feeds it). The final layer is a softmax
over `classes`; a binary head simply has two classes.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

SHIPPED = resources.files("semrouter") / "models"


class Head:
    def __init__(
        self,
        classes: list[str],
        weights: list[tuple[np.ndarray, np.ndarray]],
        temperature: float = 1.0,
        input_name: str = "features",
    ) -> None:
        if not weights:
            raise ValueError("a head needs at least one layer")
        if weights[-1][0].shape[1] != len(classes):
            raise ValueError("last layer width must equal the number of classes")
        self.classes = classes
        self.weights = [(w.astype(np.float32), b.astype(np.float32)) for w, b in weights]
        self.temperature = float(temperature)
        self.input_name = input_name

    @property
    def input_dim(self) -> int:
        return self.weights[0][0].shape[0]

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = x.astype(np.float32, copy=False)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(self.weights):
            h = h @ w + b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, input_dim) → (n, classes) calibrated probabilities."""
        z = self.logits(np.atleast_2d(x)) / self.temperature
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "classes": np.array(self.classes),
            "layers": np.array(len(self.weights)),
            "temperature": np.array(self.temperature),
            "input": np.array(self.input_name),
        }
        for i, (w, b) in enumerate(self.weights):
            arrays[f"W{i}"] = w
            arrays[f"b{i}"] = b
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Head:
        with np.load(path, allow_pickle=False) as data:
            layers = int(data["layers"])
            return cls(
                classes=[str(c) for c in data["classes"]],
                weights=[(data[f"W{i}"], data[f"b{i}"]) for i in range(layers)],
                temperature=float(data["temperature"]),
                input_name=str(data["input"]),
            )


def load_head(name_or_path: str) -> Head:
    """A shipped head by name (e.g. 'domain') or a head file by path."""
    path = Path(name_or_path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"head artifact not found: {path}")
        return Head.load(path)
    shipped = SHIPPED / f"{name_or_path}_head.npz"
    if not shipped.is_file():
        raise FileNotFoundError(
            f"no shipped head '{name_or_path}' (looked for {shipped}); "
            f"run 'semrouter train {name_or_path}'"
        )
    with resources.as_file(shipped) as file:
        return Head.load(file)
