"""HTTP helpers shared by the end-to-end tests (plain urllib: nothing of semrouter's own)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call(
    url: str,
    payload: Any = None,
    raw: bytes | None = None,
    path: str = "/v1/chat/completions",
    method: str | None = None,
    chunked: bool = False,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data: Any = (
        raw if raw is not None else json.dumps(payload).encode() if payload is not None else None
    )
    if chunked:
        data = iter([data])  # no Content-Length: urllib sends it chunked
    request = urllib.request.Request(
        url + path,
        data=data,
        method=method,
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def chat(text: str, max_tokens: int = 16, **extra: Any) -> dict[str, Any]:
    return {
        "model": "auto",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        **extra,
    }
