"""Where a model's backend lives, as the Envoy integration needs it: scheme, hosts, base path.

The router config names OpenAI base URLs (`http://vllm:8000/v1`). Behind Envoy, one cluster serves
all endpoints of a model and one path is sent to whichever endpoint Envoy picks, so the endpoints
of a model must agree on scheme and base path; `BackendLayout.of` checks that once, at startup.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from semrouter.config.schema import ModelConfig

CHAT_SUFFIX = "/chat/completions"


class BackendLayoutError(ValueError):
    """A model whose endpoints cannot sit behind one Envoy cluster."""


@dataclass(frozen=True, slots=True)
class EndpointAddress:
    host: str
    port: int
    weight: float


@dataclass(frozen=True, slots=True)
class BackendLayout:
    """One model's backends: `chat_path` is the path its endpoints serve chat completions on."""

    tls: bool
    base_path: str
    endpoints: tuple[EndpointAddress, ...]

    @property
    def chat_path(self) -> str:
        return self.base_path + CHAT_SUFFIX

    @classmethod
    def of(cls, model: ModelConfig) -> BackendLayout:
        schemes: set[str] = set()
        paths: set[str] = set()
        endpoints = []
        for endpoint in model.endpoints:
            url = urlsplit(endpoint.url)
            if url.hostname is None:
                raise BackendLayoutError(f"model '{model.name}': {endpoint.url} has no host")
            schemes.add(url.scheme)
            paths.add(url.path.rstrip("/"))
            default_port = 443 if url.scheme == "https" else 80
            endpoints.append(
                EndpointAddress(url.hostname, url.port or default_port, endpoint.weight)
            )
        if len(schemes) > 1 or len(paths) > 1:
            raise BackendLayoutError(
                f"model '{model.name}': all endpoints must share one scheme and base path "
                f"behind Envoy (got {', '.join(e.url for e in model.endpoints)})"
            )
        return cls(tls=schemes == {"https"}, base_path=paths.pop(), endpoints=tuple(endpoints))
