"""`ClientApi`: a client API the router serves besides OpenAI chat completions.

Each one (semrouter.apis: Anthropic Messages, OpenAI Responses, completions, embeddings) says
how its request body becomes what the pipeline works on, which backend path gets it, how the
backend's response goes back to the client (a `ResponseRewriter`) and what its errors look
like. The transports pick one by the request's path and hand it to `Pipeline.prepare`; the
pipeline routes the translated request like any chat request, so nothing of the routing exists
twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from semrouter.config.schema import LimitsConfig
from semrouter.pipeline.errors import RouterError
from semrouter.stages import ResponseRewriter


class ClientApi(ABC):
    """One client API. Implementations hold no per-request state (one instance serves all)."""

    name: str
    """Short name, for logs and docs: 'anthropic', 'responses', 'completions', 'embeddings'."""
    path: str
    """The path clients send it to (`/v1/messages`)."""
    backend_path: str = "/chat/completions"
    """Where the backend gets the translated request, after the model's base URL."""
    routed: bool = True
    """False: not routed by meaning; the body goes to `router.embeddings_model` as it is."""

    @abstractmethod
    def translate(self, body: dict[str, Any], limits: LimitsConfig) -> dict[str, Any]:
        """The client's JSON object as a chat-completions body (routed) or checked as it is
        (not routed). Raises RouterError (400/413) for what cannot be translated; every loop
        is bounded by `limits` before it runs."""

    def backend_body(self, body: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """The routed, rewritten chat body, changed in place into what `backend_path` takes."""

    def rewriter(self, request: dict[str, Any], limits: LimitsConfig) -> ResponseRewriter | None:
        """What turns the backend's response into this API's response to `request` (the
        client's body, as it sent it); None: the backend's response is already that."""
        return None

    def error_body(self, error: RouterError) -> bytes:
        """The JSON body of an error on this route (default: OpenAI's error shape)."""
        return error.body()
