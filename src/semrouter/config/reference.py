"""The config reference, generated from the pydantic schema (so it cannot drift from it).

`semrouter config reference` prints it; docs/config-reference.md is its output, and a unit test
fails when the two differ. Each section is one schema class: its fields, their types,
defaults, bounds and descriptions, in declaration order, starting from `RouterConfig` and
following every nested model once.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from semrouter.config.schema import RouterConfig

HEADER = """# Config reference

Generated from the schema (`semrouter config reference > docs/config-reference.md`; a unit test
keeps this file equal to that output). How the pieces fit together: docs/configuration.md.
Strings may use `${VAR}` / `${VAR:-default}` (replaced from the environment at load). Unknown
keys are errors.
"""

_BOUNDS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.MinLen, "min_length", "min length"),
    (annotated_types.MaxLen, "max_length", "max length"),
)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The schema classes an annotation refers to (in lists, dicts, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for argument in get_args(annotation):
        yield from _models_in(argument)


def type_name(annotation: Any) -> str:
    """A short, readable form of a field's type."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return type_name(get_args(annotation)[0])
    if origin is Literal:
        return " | ".join(f"`{value!r}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(annotation))
    if origin in (list, tuple, set, frozenset):
        inner = ", ".join(type_name(a) for a in get_args(annotation) if a is not Ellipsis)
        return f"list[{inner}]"
    if origin is dict:
        key, value = get_args(annotation)
        return f"map[{type_name(key)}, {type_name(value)}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _bounds(field: FieldInfo) -> list[str]:
    found: list[str] = []
    constraints = [*field.metadata]
    for argument in get_args(field.annotation):  # bounds inside `Annotated[...] | None`
        if get_origin(argument) is Annotated:
            constraints.extend(get_args(argument)[1:])
    for constraint in constraints:
        nested = getattr(constraint, "metadata", None)  # a FieldInfo inside Annotated
        for item in nested if nested is not None else [constraint]:
            for kind, attribute, sign in _BOUNDS:
                if isinstance(item, kind):
                    found.append(f"{sign} {getattr(item, attribute)}")
    return list(dict.fromkeys(found))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return ""
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(its defaults)"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except TypeError:  # an enum or another non-JSON value
        text = str(value)
    return f"`{text}`" if len(text) <= 40 else "(see schema)"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def reference() -> str:
    """The whole reference as Markdown."""
    lines = [HEADER]
    queue: list[type[BaseModel]] = [RouterConfig]
    seen: set[type[BaseModel]] = set()
    while queue:
        model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        lines += [f"## {model.__name__}", ""]
        doc = " ".join((model.__doc__ or "").split())
        if doc:
            lines += [doc, ""]
        lines += ["| key | type | default | bounds | description |", "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            key = field.alias or name
            description = _cell(field.description or "")
            row = [
                f"`{key}`",
                _cell(type_name(field.annotation)),
                _cell(_default(field)),
                _cell(", ".join(_bounds(field))),
                description,
            ]
            lines.append("| " + " | ".join(row) + " |")
            queue.extend(m for m in _models_in(field.annotation) if m not in seen)
        lines.append("")
    return "\n".join(lines)
