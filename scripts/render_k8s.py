#!/usr/bin/env python3
"""Render the Helm chart in deploy/helm/semrouter into plain manifests in deploy/kubernetes/.

helm itself cannot be installed here, so this renders the small part of Helm's template language
that the chart uses, and refuses anything else (so the chart cannot silently grow past it):

    {{ .Values.a.b }}  {{ .Release.Name }}  {{ .Release.Namespace }}  {{ .Chart.AppVersion }}
    pipelines with  quote  toYaml  nindent N  indent N  not
    {{ if PIPELINE }} ... {{ end }}        and the  {{-  -}}  whitespace trimming

Usage:
    scripts/render_k8s.py            # write deploy/kubernetes/*.yaml
    scripts/render_k8s.py --check    # exit 1 if deploy/kubernetes/ is not what the chart renders
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "helm" / "semrouter"
OUTPUT = REPO / "deploy" / "kubernetes"
RELEASE = "semrouter"
NAMESPACE = "semrouter"

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)


class TemplateError(ValueError):
    """The template uses something this renderer does not implement, or a value is missing."""


@dataclass
class Block:
    """A run of text and actions; `condition` is set for the body of an `if`."""

    condition: str | None = None
    parts: list[str | tuple[str] | Block] = field(default_factory=list)


def parse(source: str) -> Block:
    """Text and actions into a tree of blocks; `{{-`/`-}}` trim the neighbouring whitespace."""
    pieces: list[Any] = []
    position = 0
    for match in _ACTION.finditer(source):
        text = source[position : match.start()]
        if match.group(1):
            text = text.rstrip()
        if pieces and isinstance(pieces[-1], _TrimNext):
            text = text.lstrip()
            pieces.pop()
        pieces.append(text)
        pieces.append((match.group(2),))
        if match.group(3):
            pieces.append(_TrimNext())
        position = match.end()
    tail = source[position:]
    if pieces and isinstance(pieces[-1], _TrimNext):
        pieces.pop()
        tail = tail.lstrip()
    pieces.append(tail)

    stack = [Block()]
    for piece in pieces:
        if isinstance(piece, str):
            stack[-1].parts.append(piece)
            continue
        action = piece[0]
        if action.startswith("if "):
            block = Block(condition=action[3:].strip())
            stack[-1].parts.append(block)
            stack.append(block)
        elif action == "end":
            if len(stack) == 1:
                raise TemplateError("'end' without 'if'")
            stack.pop()
        else:
            stack[-1].parts.append((action,))
    if len(stack) != 1:
        raise TemplateError("'if' without 'end'")
    return stack[0]


class _TrimNext:
    """Marker: the action before it ended with `-}}`."""


def _lookup(path: str, scope: dict[str, Any]) -> Any:
    value: Any = scope
    for key in path.lstrip(".").split("."):
        if not isinstance(value, dict) or key not in value:
            raise TemplateError(f"no value for {path}")
        value = value[key]
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TemplateError(f"cannot print {type(value).__name__} {value!r} (use toYaml)")


def _indent(width: int, text: str) -> str:
    return "\n".join(" " * width + line for line in text.split("\n"))


FUNCTIONS = {
    "quote": lambda value: json.dumps(_text(value)),
    "toYaml": lambda value: yaml.safe_dump(value, sort_keys=True, default_flow_style=False).rstrip(
        "\n"
    ),
    "indent": lambda width, text: _indent(int(width), text),
    "nindent": lambda width, text: "\n" + _indent(int(width), text),
    "not": lambda value: not value,
}


def _argument(token: str, scope: dict[str, Any]) -> Any:
    if token.startswith("."):
        return _lookup(token, scope)
    if token.isdigit():
        return int(token)
    raise TemplateError(f"unsupported argument {token!r}")


def evaluate(pipeline: str, scope: dict[str, Any]) -> Any:
    value: Any = None
    for i, command in enumerate(pipeline.split("|")):
        words = command.split()
        if not words:
            raise TemplateError(f"empty command in {pipeline!r}")
        name, *rest = words
        args = [_argument(token, scope) for token in rest] + ([] if i == 0 else [value])
        if name in FUNCTIONS:
            value = FUNCTIONS[name](*args)
        elif i == 0 and not rest:
            value = _argument(name, scope)
        else:
            raise TemplateError(f"unsupported command {command.strip()!r}")
    return value


def render_block(block: Block, scope: dict[str, Any]) -> str:
    out = []
    for part in block.parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, Block):
            if evaluate(part.condition or "", scope):
                out.append(render_block(part, scope))
        else:
            out.append(_text(evaluate(part[0], scope)))
    return "".join(out)


def chart_values(chart: Path = CHART) -> dict[str, Any]:
    return yaml.safe_load((chart / "values.yaml").read_text())


def render_chart(
    values: dict[str, Any] | None = None,
    chart: Path = CHART,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> dict[str, str]:
    """Template file name → rendered manifest text (templates that render empty are left out).
    `values` replaces the chart's values.yaml."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    scope = {
        "Values": chart_values(chart) if values is None else values,
        "Release": {"Name": release, "Namespace": namespace},
        "Chart": {
            "Name": meta["name"],
            "Version": meta["version"],
            "AppVersion": meta["appVersion"],
        },
    }
    rendered = {}
    for template in sorted((chart / "templates").glob("*.yaml")):
        try:
            text = render_block(parse(template.read_text()), scope).strip()
        except TemplateError as exc:
            raise TemplateError(f"{template.name}: {exc}") from None
        if any(doc is not None for doc in yaml.safe_load_all(text)):
            header = f"# Source: {meta['name']}/templates/{template.name} (scripts/render_k8s.py)\n"
            rendered[template.name] = header + text + "\n"
    return rendered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    rendered = render_chart()
    existing = {p.name for p in args.output.glob("*.yaml")}
    if args.check:
        stale = sorted(
            name
            for name, text in rendered.items()
            if not (args.output / name).is_file() or (args.output / name).read_text() != text
        ) + sorted(existing - set(rendered))
        for name in stale:
            print(f"{args.output / name}: out of date; run scripts/render_k8s.py", file=sys.stderr)
        return 1 if stale else 0
    args.output.mkdir(parents=True, exist_ok=True)
    for name in existing - set(rendered):
        (args.output / name).unlink()
    for name, text in rendered.items():
        (args.output / name).write_text(text)
    print(f"rendered {len(rendered)} manifests into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
