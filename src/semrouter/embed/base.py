"""The embedding-engine interface every backend (local ONNX, remote HTTP) implements.

One call encodes a batch of texts once and returns both what similarity needs (a unit-norm
sentence embedding) and what learned heads need (a richer feature vector from the same pass).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Encoded:
    """The result of one encoder pass over a batch.

    embeddings: (n, dim) float32, L2-normalised sentence embeddings (cosine = dot product).
    features:   (n, feature_dim) float32, inputs for the learned heads (may equal embeddings).
    token_counts: (n,) int, tokens each text had before windowing.
    token_ids: per text, the wordpiece ids the encoder read (no special tokens), for lexical
      experts; empty when the backend does not expose its tokenizer (remote).
    """

    embeddings: np.ndarray
    features: np.ndarray
    token_counts: np.ndarray
    token_ids: tuple[np.ndarray, ...] = ()


class Embedder(ABC):
    """Encodes texts. Implementations must be safe to call from many coroutines at once."""

    dim: int
    feature_dim: int

    @property
    def dimensions_known(self) -> bool:
        """Whether dim and feature_dim are known before start() (a remote engine may probe)."""
        return True

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources (sessions, worker threads). Called once before use."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    @abstractmethod
    async def encode(self, texts: Sequence[str]) -> Encoded:
        """Encode texts without blocking the event loop."""

    @abstractmethod
    def encode_sync(self, texts: Sequence[str]) -> Encoded:
        """Encode texts in the calling thread (offline tools, training, batch routing)."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens in text under this engine's tokenizer (used by context-length signals)."""


class EmbeddingError(RuntimeError):
    """An embedding backend failed (remote HTTP error, closed engine, malformed response)."""


class EncoderOverloaded(EmbeddingError):
    """The encoder's queue is full: the request should be retried later, not queued."""
