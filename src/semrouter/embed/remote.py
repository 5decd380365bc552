"""Remote embedding backend: an OpenAI-compatible ``POST {base_url}/embeddings`` endpoint.

Owns the HTTP client side of embeddings: a pooled aiohttp session for the router, a short-lived
urllib call for offline tools. Embeddings are L2-normalised here (not every server does) and
double as ``features``; ``count_tokens`` uses a configured tokenizer or ~4 characters a token.
"""

from __future__ import annotations

import asyncio
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
from tokenizers import Tokenizer

from semrouter.embed.base import Embedder, EmbeddingError, Encoded

_PROBE_TEXT = "dimension probe"


def _parse(body: bytes, expected: int) -> np.ndarray:
    """The (expected, dim) float32 unit-norm matrix of an OpenAI ``/embeddings`` response."""
    try:
        data: list[dict[str, Any]] = orjson.loads(body)["data"]
        rows = sorted(data, key=lambda d: d.get("index", 0))
        matrix = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise EmbeddingError(f"malformed embeddings response: {body[:200]!r}") from exc
    if matrix.ndim != 2 or matrix.shape[0] != expected:
        raise EmbeddingError(f"expected {expected} embeddings, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: np.ndarray = matrix / np.maximum(norms, 1e-12)
    return unit


class RemoteEmbedder(Embedder):
    """Embeds through an OpenAI-compatible API. ``dim`` is probed in ``start`` if not given."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        timeout_s: float = 10.0,
        dim: int | None = None,
        batch_size: int = 32,
        tokenizer: str | Path | None = None,
    ) -> None:
        self._endpoint = url.rstrip("/") + "/embeddings"
        self._model = model
        self._timeout_s = timeout_s
        self._batch_size = batch_size
        self._headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(f"environment variable {api_key_env} (embedding API key) is unset")
            self._headers["Authorization"] = f"Bearer {key}"
        self._tokenizer = Tokenizer.from_file(str(tokenizer)) if tokenizer else None
        self._session: aiohttp.ClientSession | None = None
        self._dim = dim

    @property
    def dimensions_known(self) -> bool:
        return self._dim is not None

    @property
    def dim(self) -> int:  # type: ignore[override]
        if self._dim is None:
            raise EmbeddingError("remote embedding size unknown: call start() or set dim")
        return self._dim

    @property
    def feature_dim(self) -> int:  # type: ignore[override]
        return self.dim

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                headers=self._headers,
            )
        return self._session

    async def start(self) -> None:
        """Open the pooled HTTP session and learn ``dim`` from the server if not configured."""
        self._client()
        if self._dim is None:
            await self.encode([_PROBE_TEXT])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text, add_special_tokens=False).ids)
        return (len(text) + 3) // 4

    def _payload(self, texts: Sequence[str]) -> bytes:
        return orjson.dumps({"model": self._model, "input": list(texts)})

    def _chunks(self, texts: Sequence[str]) -> list[Sequence[str]]:
        return [texts[i : i + self._batch_size] for i in range(0, len(texts), self._batch_size)]

    def _result(self, texts: Sequence[str], parts: list[np.ndarray]) -> Encoded:
        if not parts:
            matrix = np.zeros((0, self._dim or 0), np.float32)
        else:
            matrix = np.concatenate(parts)
            if self._dim is None:
                self._dim = int(matrix.shape[1])
            elif matrix.shape[1] != self._dim:
                raise EmbeddingError(f"embedding size {matrix.shape[1]}, expected {self._dim}")
        counts = np.fromiter(map(self.count_tokens, texts), dtype=np.int64, count=len(texts))
        return Encoded(embeddings=matrix, features=matrix, token_counts=counts)

    async def _post(self, texts: Sequence[str]) -> np.ndarray:
        try:
            async with self._client().post(self._endpoint, data=self._payload(texts)) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise EmbeddingError(f"{self._endpoint} -> HTTP {resp.status}: {body[:200]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EmbeddingError(f"{self._endpoint} unreachable: {exc!r}") from exc
        return _parse(body, len(texts))

    async def encode(self, texts: Sequence[str]) -> Encoded:
        parts = await asyncio.gather(*(self._post(chunk) for chunk in self._chunks(texts)))
        return self._result(texts, list(parts))

    def encode_sync(self, texts: Sequence[str]) -> Encoded:
        parts = []
        for chunk in self._chunks(texts):
            req = urllib.request.Request(
                self._endpoint, data=self._payload(chunk), headers=self._headers, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=self._timeout_s) as resp:
                    body = resp.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:200]
                raise EmbeddingError(f"{self._endpoint} -> HTTP {exc.code}: {detail!r}") from exc
            except (urllib.error.URLError, TimeoutError) as exc:
                raise EmbeddingError(f"{self._endpoint} unreachable: {exc!r}") from exc
            parts.append(_parse(body, len(chunk)))
        return self._result(texts, parts)
