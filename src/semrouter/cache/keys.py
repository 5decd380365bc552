"""A request's cache key: its last user turn (embedded and verified) and an exact scope.

The scope is a digest of everything else that changes the answer, so two requests share
entries only when all of it is equal: the tenant, the chosen model, and every field of the body
the backend gets (system and developer messages, earlier turns, the reasoning fields the
router set, temperature, top_p, max_tokens, response_format, tools, tool_choice, stop, seed,
...), except the last user turn's text and `stream` / `stream_options`, which only change how
the answer is delivered.

The tenant: the authenticated one (router.auth on); else the client's `x-semrouter-tenant`
header; else a digest of its `Authorization` header; else one shared scope.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

TENANT_HEADER = "x-semrouter-tenant"
"""semrouter.auth's tenant header (auth is a sibling stage package, not imported here)."""
DELIVERY_FIELDS = frozenset({"stream", "stream_options", "messages"})
SHARED_TENANT = "shared"


def last_user_index(messages: list[dict[str, Any]]) -> int | None:
    return next(
        (i for i in reversed(range(len(messages))) if messages[i].get("role") == "user"), None
    )


def user_text(message: dict[str, Any]) -> str:
    """The text parts of a message, as the router reads them."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def tenant_of(tenant: str | None, headers: Mapping[str, str]) -> str:
    if tenant is not None:
        return f"tenant:{tenant}"
    if header := headers.get(TENANT_HEADER):
        return f"tenant:{header}"
    if authorization := headers.get("authorization"):
        return "key:" + hashlib.sha256(authorization.encode()).hexdigest()
    return SHARED_TENANT


def scope_of(body: Mapping[str, Any], model: str, tenant: str) -> str:
    """The digest of everything but the last user turn's text (see the module docstring)."""
    messages = list(body.get("messages") or ())
    last = last_user_index(messages)
    if last is not None:
        message = messages[last]
        content = message.get("content")
        others = (
            [p for p in content if not (isinstance(p, dict) and p.get("type") == "text")]
            if isinstance(content, list)
            else None
        )
        messages[last] = {**message, "content": others}
    rest = {k: v for k, v in body.items() if k not in DELIVERY_FIELDS}
    payload = orjson.dumps(
        [tenant, model, rest, messages], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    )
    return hashlib.blake2b(payload, digest_size=16).hexdigest()
