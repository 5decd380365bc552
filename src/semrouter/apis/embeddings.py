"""`POST /v1/embeddings`, passed through to the configured embedding backend.

Not routed by meaning: the body goes as it is (its `model` replaced by the backend's id) to the
model `router.embeddings_model` names, on its `/embeddings` path; without one configured the
route answers 404. Authentication, model permissions and quotas apply as on every route;
errors keep OpenAI's shape.
"""

from __future__ import annotations

from typing import Any

from semrouter.config.schema import LimitsConfig
from semrouter.pipeline.api import ClientApi
from semrouter.pipeline.errors import bad_request


class Embeddings(ClientApi):
    name = "embeddings"
    path = "/v1/embeddings"
    backend_path = "/embeddings"
    routed = False

    def translate(self, body: dict[str, Any], limits: LimitsConfig) -> dict[str, Any]:
        value = body.get("input")
        if isinstance(value, str) or (isinstance(value, list) and value):
            return body
        raise bad_request("'input' is required: a string or a non-empty list", "invalid_input")
