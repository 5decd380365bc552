"""Spelling normalisation: the text the encoder reads has its misspelt words corrected.

A typo turns a word into wordpieces the encoder has rarely seen ("goverment" is
``go ##ver ##ment``), which is how one typo moves a query to another domain. Before
tokenisation, each ASCII word of four letters or more that is not known is replaced by the most
frequent known word one edit away (a dropped, added, replaced or swapped letter), if any.

Known words are those of the vocabulary file (word counts from the training texts, written by
``semrouter train vocabulary``) and the tokenizer's whole-word entries; a word that is a known
word plus or minus a common suffix ("webs", "devalue") counts as known. Corrections only go to
words seen at least ``MIN_TARGET_COUNT`` times, and words longer than ``max_word_chars`` are
never looked at, so the work per text is linear in its length. Words in capitals inside
mixed-case text are taken for acronyms and left alone. Only the text the encoder sees changes:
keyword and regex signals still read the request as written.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path

VOCABULARY_FILE = "vocabulary.tsv.gz"
MIN_TARGET_COUNT = 2
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_SUFFIXES = ("s", "es", "ed", "d", "ing", "er", "ers", "ly", "al")
_WORD = re.compile(r"[^\W\d_]{4,}")
MAX_WORD_CHARS = 40
"""Longer words are left alone (the longest English words of any use are under 30 letters)."""
_EDGE = 2_000
"""Long texts are normalised only in their first and last ``_EDGE`` characters: the encoder
reads a head and a tail window of about 128 wordpieces each, so the middle never matters."""


def edits1(word: str) -> set[str]:
    """Every string one deletion, transposition, replacement or insertion away from word."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    return (
        {a + b[1:] for a, b in splits if b}
        | {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
        | {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
        | {a + c + b for a, b in splits for c in _LETTERS}
    )


class SpellingNormaliser:
    """Callable ``text -> text`` correcting misspelt words against a known vocabulary."""

    def __init__(
        self,
        counts: Mapping[str, int],
        extra_known: Iterable[str] = (),
        max_word_chars: int = MAX_WORD_CHARS,
    ) -> None:
        self._counts = dict(counts)
        self._max_word_chars = max_word_chars
        self.digest = hashlib.sha256(
            "\n".join(f"{w}\t{n}" for w, n in sorted(self._counts.items())).encode()
        ).hexdigest()[:12]
        self._known = frozenset(self._counts) | frozenset(w.lower() for w in extra_known)
        self._targets = frozenset(w for w, n in self._counts.items() if n >= MIN_TARGET_COUNT)
        self.correct_word = lru_cache(maxsize=16_384)(self._correct_word)

    @classmethod
    def load(
        cls, path: str | Path, extra_known: Iterable[str] = (), max_word_chars: int = MAX_WORD_CHARS
    ) -> SpellingNormaliser:
        """Read a vocabulary file: gzip'd lines of ``word<TAB>count``."""
        counts: dict[str, int] = {}
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                word, _, count = line.rstrip("\n").partition("\t")
                if not word or not count.isdigit():
                    raise ValueError(f"{path}:{number}: expected 'word<TAB>count'")
                counts[word] = int(count)
        return cls(counts, extra_known, max_word_chars)

    def _is_known(self, word: str) -> bool:
        if word in self._known:
            return True
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and word[: -len(suffix)] in self._known:
                return True
            if word + suffix in self._known:
                return True
        return False

    def _correct_word(self, word: str) -> str:
        """The correction of a lower-case word, or the word itself."""
        if self._is_known(word):
            return word
        candidates = edits1(word) & self._targets
        return max(candidates, key=self._counts.__getitem__) if candidates else word

    def __call__(self, text: str) -> str:
        if len(text) > 3 * _EDGE:
            head = text.rfind(" ", 0, _EDGE)
            tail = text.find(" ", len(text) - _EDGE)
            head = head if head > 0 else _EDGE
            tail = tail if tail > head else len(text) - _EDGE
            return self(text[:head]) + text[head:tail] + self(text[tail:])
        shouting = text.isupper()

        def fix(match: re.Match[str]) -> str:
            word = match.group(0)
            # edits1 is quadratic in the word's length: a long "word" is no typo to correct.
            if len(word) > self._max_word_chars:
                return word
            if not word.isascii() or (word.isupper() and not shouting):
                return word
            lower = word.lower()
            corrected = self.correct_word(lower)
            return word if corrected == lower else corrected

        return _WORD.sub(fix, text)


def shipped_vocabulary() -> Path:
    """The vocabulary file shipped in ``semrouter/models``."""
    path = Path(str(resources.files("semrouter") / "models" / VOCABULARY_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: run 'semrouter train vocabulary'")
    return path


def count_words(texts: Iterable[str]) -> dict[str, int]:
    """Lower-case ASCII word counts over texts (the vocabulary file's content)."""
    counts: dict[str, int] = {}
    for text in texts:
        for word in re.findall(r"[a-z]+", text.lower()):
            counts[word] = counts.get(word, 0) + 1
    return counts


def write_vocabulary(counts: Mapping[str, int], path: Path) -> None:
    """Write counts, most frequent first, reproducibly (fixed gzip mtime)."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write("".join(f"{w}\t{n}\n" for w, n in ordered).encode())
