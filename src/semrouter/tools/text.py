"""What a tool definition is to the scorer: its name, its words, its embedded text, its digest.

A tool is an entry of the request's `tools` (OpenAI shape, `{"type": "function", "function":
{"name", "description", "parameters"}}`; request parsing has checked that it is an object with
a name). Every text derived here is cut to `max_chars`, so a tool with a 1 MB description costs
no more to score than one with a short one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain
from typing import Any

import orjson

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_STOPWORDS = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "could",
        "do",
        "does",
        "for",
        "from",
        "get",
        "give",
        "has",
        "have",
        "how",
        "i",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "please",
        "should",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
        "would",
        "you",
        "your",
    )
)


def definition(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object holding the tool's name, description and parameters: `tool[tool.type]`
    (`function` by default), or the tool itself for a flat definition."""
    inner = tool.get(str(tool.get("type", "function")))
    # `type(...) is dict` first: the usual case, and an ABC isinstance check is slow enough to
    # matter 200 times per request.
    return inner if type(inner) is dict or isinstance(inner, Mapping) else tool


def tool_name(tool: Mapping[str, Any]) -> str:
    name = definition(tool).get("name")
    return name if isinstance(name, str) else ""


def tool_digest(tool: Mapping[str, Any]) -> bytes:
    """Identifies a tool definition: a hash of its JSON with sorted keys."""
    return hashlib.sha256(orjson.dumps(tool, option=orjson.OPT_SORT_KEYS)).digest()


def _parameters(spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(name, description) of each top-level parameter."""
    parameters = spec.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
    if not isinstance(properties, Mapping):
        return
    for name, schema in properties.items():
        described = schema.get("description") if isinstance(schema, Mapping) else None
        yield str(name), described if isinstance(described, str) else ""


def name_words(name: str) -> str:
    """`get_current_weather`, `getCurrentWeather`, `weather.current` → words."""
    return " ".join(w.lower() for w in _WORD.findall(name))


def embedding_text(tool: Mapping[str, Any], max_chars: int) -> str:
    """What the encoder reads of a tool: its name as words, its description, the names of its
    parameters (cut to max_chars; no more of the tool is read than that needs)."""
    description = _string(definition(tool).get("description"))[:max_chars]
    head = f"{name_words(tool_name(tool)[:max_chars])}: {description}"
    names = _bounded((name_words(n) for n in parameter_names(tool, max_chars)), max_chars)
    text = f"{head} Parameters: {', '.join(names)}." if names else head
    return text[:max_chars]


def parameter_names(tool: Mapping[str, Any], max_chars: int) -> list[str]:
    """The leading top-level parameter names (each cut to max_chars) holding max_chars
    characters in all."""
    return _bounded((n for n, _ in _parameters(definition(tool))), max_chars)


def description_chars(tool: Mapping[str, Any]) -> int:
    return len(_string(definition(tool).get("description")))


def lexical_text(tool: Mapping[str, Any], max_chars: int) -> str:
    """What BM25 reads of a tool: its name, description, parameter names and descriptions (cut
    to max_chars, read no further)."""
    spec = definition(tool)
    parts = chain(
        (tool_name(tool), _string(spec.get("description"))),
        (f"{n} {d}" for n, d in _parameters(spec)),
    )
    return " ".join(_bounded(parts, max_chars))[:max_chars]


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _bounded(parts: Iterable[str], max_chars: int) -> list[str]:
    """The leading parts (each cut to max_chars) until they hold max_chars characters."""
    taken: list[str] = []
    size = 0
    for part in parts:
        if size >= max_chars:
            break
        taken.append(part[:max_chars])
        size += len(taken[-1]) + 1
    return taken


def words(text: str) -> list[str]:
    """Lowercased words of text (identifiers split at case changes and punctuation), stopwords
    dropped, a few English suffixes folded (weathers/weather, booking/book)."""
    return [_stem(w.lower()) for w in _WORD.findall(text) if w.lower() not in _STOPWORDS]


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word
