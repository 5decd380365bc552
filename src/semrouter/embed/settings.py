"""Settings of the embedding engine (the ``embedding:`` section of the router's YAML)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_WINDOW = 512
"""The encoder's longest input (its position embeddings), in wordpieces."""


class EmbeddingSettings(BaseModel):
    """Which embedding backend to run and how.

    local: all-MiniLM-L6-v2 exported to ONNX (built once into ``cache_dir``), run by
    onnxruntime with ``threads`` intra-op threads; ``quantize`` selects the int8 model;
    ``spelling`` corrects misspelt words before encoding.
    remote: an OpenAI-compatible ``POST {url}/embeddings`` serving ``model``; the API key is
    read from the environment variable named by ``api_key_env``.
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "remote"] = "local"
    max_tokens: int = Field(
        256, ge=8, le=MAX_WINDOW, description="window size in wordpieces (local)"
    )
    threads: int = Field(2, ge=1, le=64, description="onnxruntime intra-op threads (local)")
    batch_size: int = Field(32, ge=1, le=1024, description="most texts per inference call")
    max_batch_tokens: int = Field(
        2048,
        ge=MAX_WINDOW,
        le=65_536,
        description="most padded tokens per inference call (local): bounds the memory "
        "onnxruntime keeps after a burst of long prompts",
    )
    short_lane_chars: int = Field(
        512,
        ge=0,
        le=65_536,
        description="calls whose texts hold at most this many characters in all run on a "
        "second encoder thread (local), so a short prompt never waits behind a long prompt's "
        "or a tool catalog's inference; 0: one thread for all",
    )
    batch_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="longest a queued request waits for a batch to fill"
    )
    quantize: bool = Field(False, description="use the int8 dynamically quantised model (local)")
    spelling: bool = Field(
        True, description="correct misspelt words before encoding (local; see embed.spelling)"
    )
    cache_dir: str | None = Field(None, description="default $SEMROUTER_CACHE_DIR or ~/.cache")
    url: str | None = Field(None, description="base URL of the remote API, e.g. http://h/v1")
    model: str | None = Field(None, description="model name sent to the remote API")
    api_key_env: str | None = Field(None, description="env var holding the remote API key")
    timeout_s: float = Field(10.0, gt=0, description="remote request timeout")
    dim: int | None = Field(None, ge=1, description="remote embedding size; probed if unset")
    tokenizer: str | None = Field(
        None, description="tokenizer.json for remote count_tokens (else ~4 chars a token)"
    )

    @model_validator(mode="after")
    def _remote_needs_endpoint(self) -> Self:
        if self.backend == "remote" and not (self.url and self.model):
            raise ValueError("embedding backend 'remote' needs both url and model")
        return self
