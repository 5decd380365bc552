"""Client authentication and quotas (`router.auth`): the mechanics, not the request path.

keys.py: client keys (kept only as SHA-256 digests), who a request's headers say it comes from,
the tenant it acts for, and the admin check. quota.py: per-key token buckets. backend.py: the
credentials a backend gets. `semrouter.pipeline.flow.Pipeline` runs them and turns their answers
into the error catalogue's 401/403/429; nothing here knows the transports.
"""

from semrouter.auth.backend import backend_credentials
from semrouter.auth.keys import (
    CREDENTIAL_HEADERS,
    TENANT_HEADER,
    AdminGate,
    KeyStore,
    Principal,
    Rejection,
    key_errors,
)
from semrouter.auth.quota import Quotas, Refusal, TokenBucket

__all__ = [
    "CREDENTIAL_HEADERS",
    "TENANT_HEADER",
    "AdminGate",
    "KeyStore",
    "Principal",
    "Quotas",
    "Refusal",
    "Rejection",
    "TokenBucket",
    "backend_credentials",
    "key_errors",
]
