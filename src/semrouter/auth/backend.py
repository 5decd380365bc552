"""The credentials a model's backend gets, the same through `semrouter serve` and Envoy.

Either the router's own key for that backend (`api_key_env`, sent as a Bearer token) or, with
bring-your-own-key (`forward_client_key: true`), the client's Authorization and x-api-key headers
as it sent them. Never the client's headers by default: with router auth on they carry the
client's router key, and a model without a configured key gets no credentials at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from semrouter.auth.keys import CREDENTIAL_HEADERS
from semrouter.config.schema import ModelConfig


def backend_credentials(model: ModelConfig, client_headers: Mapping[str, str]) -> dict[str, str]:
    """The credential headers (lowercase names) to send to model's backend; {} for none."""
    if model.forward_client_key:
        return {name: client_headers[name] for name in CREDENTIAL_HEADERS if name in client_headers}
    key = os.environ.get(model.api_key_env) if model.api_key_env else None
    return {"authorization": f"Bearer {key}"} if key else {}
