"""The loaded config as the dashboard shows it, with its validation.

The config is shown as the router runs it (defaults filled in, environment variables
substituted), as YAML, with the user and password of every URL replaced by `***` (a Redis URL
may carry a password; API keys are never in the config, only the names of their variables).
Validation: the loaded config passed it, or the router would not be serving; what the dashboard
adds is the policy's warnings (decisions that can never be taken) and the file on disk checked
again now: unchanged, changed (valid; a restart applies it) or invalid (with every error).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from semrouter.config import ConfigError, RouterConfig, load_config
from semrouter.dashboard.policy import policy_graph

REDACTED = "***"


def redact_url(value: str) -> str:
    """`value` with a URL's user and password replaced; other strings unchanged."""
    if "://" not in value or "@" not in value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if parts.username is None and parts.password is None:
        return value
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))


def redacted(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: redacted(v) for k, v in node.items()}
    if isinstance(node, list):
        return [redacted(v) for v in node]
    return redact_url(node) if isinstance(node, str) else node


def file_status(config: RouterConfig, path: str | None) -> dict[str, Any]:
    if path is None:
        return {"path": None, "status": "unknown", "errors": []}
    try:
        on_disk = load_config(path)
    except ConfigError as exc:
        return {"path": path, "status": "invalid", "errors": exc.errors}
    same = on_disk.model_dump(mode="json") == config.model_dump(mode="json")
    return {"path": path, "status": "unchanged" if same else "changed", "errors": []}


def config_view(config: RouterConfig, path: str | None) -> dict[str, Any]:
    dumped = redacted(config.model_dump(mode="json"))
    return {
        "yaml": yaml.safe_dump(dumped, sort_keys=False, allow_unicode=True, width=100),
        "summary": {
            "models": len(config.models),
            "decisions": len(config.decisions),
            "signals": len(config.signals.names()),
            "auth": config.router.auth.enabled,
            "cache": config.cache.backend,
            "affinity": config.affinity.backend,
        },
        "warnings": policy_graph(config).warnings,
        "file": file_status(config, path),
    }
