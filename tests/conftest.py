"""Shared fixtures: small configs built in code, so unit tests need no files or servers."""

from __future__ import annotations

from typing import Any

import pytest


def minimal_config(**overrides: Any) -> dict[str, Any]:
    """A valid config dict using only keyword signals (no embedder needed)."""
    config: dict[str, Any] = {
        "models": [
            {
                "name": "fast",
                "provider_model_id": "fast-id",
                "endpoints": [{"url": "http://127.0.0.1:9/v1"}],
            },
            {
                "name": "reasoner",
                "provider_model_id": "qwen3-id",
                "reasoning_family": "qwen3",
                "endpoints": [{"url": "http://127.0.0.1:9/v1"}],
            },
        ],
        "signals": {
            "domain": {"enabled": False},
            "reasoning": {"enabled": False},
            "keywords": [{"name": "math_words", "patterns": ["integral", "prove"]}],
        },
        "decisions": [
            {
                "name": "math",
                "rules": {"conditions": [{"name": "math_words"}]},
                "model": "reasoner",
                "use_reasoning": True,
            },
        ],
        "default": {"model": "fast"},
    }
    config.update(overrides)
    return config


@pytest.fixture
def config_dict() -> dict[str, Any]:
    return minimal_config()
