"""Encoding training texts with the router's own embedding engine (cached on disk by content)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from semrouter.embed.base import Embedder, Encoded


def _cache_dir() -> Path:
    root = os.environ.get("SEMROUTER_CACHE_DIR") or Path.home() / ".cache" / "semrouter"
    path = Path(root) / "features"
    path.mkdir(parents=True, exist_ok=True)
    return path


def encode_texts(embedder: Embedder, texts: Sequence[str], batch_size: int = 64) -> Encoded:
    """Encode texts in batches; results are cached under the cache dir keyed by the texts."""
    # The key names what the engine computes too (model file, spelling vocabulary).
    model = str(getattr(embedder, "fingerprint", type(embedder).__name__))
    digest = hashlib.sha256("\x00".join([model, *texts]).encode()).hexdigest()[:24]
    path = _cache_dir() / f"{type(embedder).__name__}-{embedder.feature_dim}-{digest}-v3.npz"
    if path.is_file():
        with np.load(path) as data:
            ids = tuple(np.split(data["token_ids"], data["token_offsets"][1:-1]))
            return Encoded(data["embeddings"], data["features"], data["token_counts"], ids)
    parts = [
        embedder.encode_sync(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)
    ]
    encoded = Encoded(
        np.concatenate([p.embeddings for p in parts]),
        np.concatenate([p.features for p in parts]),
        np.concatenate([p.token_counts for p in parts]),
        tuple(ids for p in parts for ids in p.token_ids),
    )
    offsets = np.cumsum([0, *(len(ids) for ids in encoded.token_ids)])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        embeddings=encoded.embeddings,
        features=encoded.features,
        token_counts=encoded.token_counts,
        token_ids=np.concatenate(encoded.token_ids) if encoded.token_ids else np.zeros(0, np.int64),
        token_offsets=offsets,
    )
    tmp.replace(path)
    return encoded
