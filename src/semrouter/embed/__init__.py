"""The embedding engine: turns prompts into sentence embeddings and classifier features.

Backends implement ``semrouter.embed.base.Embedder``:

* ``local.LocalEmbedder``: all-MiniLM-L6-v2 exported to ONNX without torch
  (``model_cache.ensure_model``), run by onnxruntime behind a micro-batcher (``batcher``);
* ``remote.RemoteEmbedder``: an OpenAI-compatible ``/embeddings`` endpoint.

``create_embedder`` builds the one that ``EmbeddingSettings`` (the YAML's ``embedding:``) picks.
"""

from __future__ import annotations

from semrouter.embed.base import Embedder, EmbeddingError, Encoded
from semrouter.embed.settings import EmbeddingSettings

__all__ = ["Embedder", "EmbeddingError", "EmbeddingSettings", "Encoded", "create_embedder"]


def create_embedder(
    settings: EmbeddingSettings | None = None, *, max_word_chars: int = 40, max_queue: int = 512
) -> Embedder:
    """The backend ``settings`` selects (default: local ONNX), ready for ``start()``.

    ``max_word_chars`` and ``max_queue`` are the router's limits on spelling correction and on
    texts waiting for the local encoder (see ``router.limits``)."""
    settings = settings or EmbeddingSettings()
    if settings.backend == "remote":
        from semrouter.embed.remote import RemoteEmbedder

        assert settings.url is not None and settings.model is not None  # checked by settings
        return RemoteEmbedder(
            settings.url,
            settings.model,
            api_key_env=settings.api_key_env,
            timeout_s=settings.timeout_s,
            dim=settings.dim,
            batch_size=settings.batch_size,
            tokenizer=settings.tokenizer,
        )
    from semrouter.embed.local import LocalEmbedder

    return LocalEmbedder(
        max_tokens=settings.max_tokens,
        threads=settings.threads,
        batch_size=settings.batch_size,
        batch_wait_ms=settings.batch_wait_ms,
        quantize=settings.quantize,
        spelling=settings.spelling,
        cache_dir=settings.cache_dir,
        max_word_chars=max_word_chars,
        max_queue=max_queue,
        max_batch_tokens=settings.max_batch_tokens,
        short_lane_chars=settings.short_lane_chars,
    )
