"""`POST /v1/completions` (legacy text completions), routed by its prompt.

The prompt (a string, or a list of strings, joined for routing) becomes the one user turn the
pipeline classifies; the request goes on as a completions request to the chosen model's
`/completions` (the routing decision's model, reasoning fields its family reads, a max_tokens
cap). A decision's system prompt does not apply: a completions request has no messages. The
backend's answer passes unchanged; errors keep OpenAI's shape. Token-id prompts cannot be
routed by meaning and are refused (400).
"""

from __future__ import annotations

from typing import Any

from semrouter.config.schema import LimitsConfig
from semrouter.pipeline.api import ClientApi
from semrouter.pipeline.errors import bad_request, too_large


def prompt_text(prompt: object, limits: LimitsConfig) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        if len(prompt) > limits.max_messages:
            raise too_large(
                f"'prompt' has {len(prompt)} entries; the limit is {limits.max_messages}",
                "too_many_messages",
            )
        return "\n".join(prompt)
    raise bad_request(
        "'prompt' is required: a string or a non-empty list of strings (token ids cannot be "
        "routed)",
        "invalid_prompt",
    )


class Completions(ClientApi):
    name = "completions"
    path = "/v1/completions"
    backend_path = "/completions"

    def translate(self, body: dict[str, Any], limits: LimitsConfig) -> dict[str, Any]:
        text = prompt_text(body.get("prompt"), limits)
        return {**body, "messages": [{"role": "user", "content": text}]}

    def backend_body(self, body: dict[str, Any]) -> None:
        body.pop("messages", None)
