"""Loading a router config: YAML → environment interpolation → validated RouterConfig.

Every problem is reported with its path in the file (`decisions[3].rules.conditions[1].name: ...`)
and all problems are reported at once, so one `semrouter config validate` run shows them all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from semrouter.config.schema import RouterConfig

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_LEADING_PATH = re.compile(r"^([A-Za-z_][\w\-]*(?:\[\d+\])?(?:\.[\w\-]+(?:\[\d+\])?)*): ")


class ConfigError(Exception):
    """A config that cannot be used; `errors` holds one 'path: message' line per problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: {len(errors)} error(s)\n" + "\n".join(errors))


def _interpolate(node: Any, path: str, env: Mapping[str, str], errors: list[str]) -> Any:
    if isinstance(node, dict):
        return {
            key: _interpolate(value, _join(path, str(key)), env, errors)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_interpolate(item, f"{path}[{i}]", env, errors) for i, item in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        errors.append(f"{path or '<root>'}: environment variable '{name}' is not set")
        return ""

    return _VAR.sub(substitute, node)


def _join(prefix: str, key: str) -> str:
    if not prefix:
        return key
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


def _location(loc: tuple[str | int, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("node", "leaf"):  # tags of the rule-tree union: not part of the file's path
            continue
        else:
            path = _join(path, str(part))
    return path


def _format(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        where = _location(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        for line in message.splitlines():
            inner = _LEADING_PATH.match(line)
            if inner:
                lines.append(f"{_join(where, inner.group(1))}: {line[inner.end() :]}")
            else:
                lines.append(f"{where or '<root>'}: {line}")
    return lines


def parse_config(
    data: Any, source: str = "<config>", env: Mapping[str, str] | None = None
) -> RouterConfig:
    """Validate already-parsed YAML/JSON data."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["<root>: the config must be a mapping"])
    errors: list[str] = []
    data = _interpolate(data, "", os.environ if env is None else env, errors)
    if errors:
        raise ConfigError(source, errors)
    try:
        return RouterConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _format(exc)) from None


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The config used when no ``--config`` is given: ``$SEMROUTER_CONFIG``, else the packaged
    default (``semrouter/config/default.yaml``, which ``config/default.yaml`` links to)."""
    configured = (os.environ if env is None else env).get("SEMROUTER_CONFIG")
    return Path(configured) if configured else Path(__file__).with_name("default.yaml")


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> RouterConfig:
    """Read, interpolate and validate a YAML config file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"<file>: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}: invalid YAML: {problem}"]) from None
    return parse_config(data, source, env)
