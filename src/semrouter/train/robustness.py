"""Typo and casing robustness: how often does a small perturbation flip a predicted label?

`perturb` applies what people really do to a query: one typo (a dropped, doubled, swapped or
neighbouring-key letter inside a word of four letters or more) and, in three cases out of five,
a casing change as well (all lower, all upper, or sentence case). `flip_rate` is the share of
texts whose predicted label changes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

_KEYBOARD_NEIGHBOURS = {
    "a": "qwsz",
    "b": "vghn",
    "c": "xdfv",
    "d": "serfcx",
    "e": "wsdr",
    "f": "drtgvc",
    "g": "ftyhbv",
    "h": "gyujnb",
    "i": "ujko",
    "j": "huikmn",
    "k": "jiolm",
    "l": "kop",
    "m": "njk",
    "n": "bhjm",
    "o": "iklp",
    "p": "ol",
    "q": "wa",
    "r": "edft",
    "s": "awedxz",
    "t": "rfgy",
    "u": "yhji",
    "v": "cfgb",
    "w": "qase",
    "x": "zsdc",
    "y": "tghu",
    "z": "asx",
}


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("drop", "double", "swap", "replace"))
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    neighbours = _KEYBOARD_NEIGHBOURS.get(word[i].lower(), word[i])
    return word[:i] + rng.choice(neighbours) + word[i + 1 :]


def perturb(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if candidates:
        i = rng.choice(candidates)
        words[i] = _typo(words[i], rng)
    result = " ".join(words)
    casing = rng.choice(("keep", "keep", "lower", "upper", "sentence"))
    if casing == "lower":
        return result.lower()
    if casing == "upper":
        return result.upper()
    if casing == "sentence":
        return result[:1].upper() + result[1:].lower()
    return result


def flip_rate(
    predict: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str], seed: int = 0
) -> float:
    """Share of texts whose predicted label differs after perturbation."""
    rng = random.Random(seed)
    perturbed = [perturb(t, rng) for t in texts]
    return float(np.mean(predict(texts) != predict(perturbed)))
