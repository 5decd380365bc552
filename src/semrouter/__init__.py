"""semrouter: an intent-aware, OpenAI-compatible router for LLM inference."""

__version__ = "0.1.0"
