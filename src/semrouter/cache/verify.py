"""Verification beyond cosine: would the cached question's answer answer this one?

On MiniLM a negated or otherwise flipped question is often *closer* to the original than a
true paraphrase, so no cosine threshold alone separates them. Before a hit, the new last user
turn and the stored one are compared word by word (lowercased, contractions expanded, light
stemming, common synonyms and phrasal verbs folded: "turn on" = "enable", "dict" =
"dictionary", "okay" = "safe"), and any difference that may change the answer rejects it:

  numbers       the numbers differ, or come in another order (digits or number words, "three"
                = "3": "2 cups" / "3 cups", "15% of 80" / "80% of 15")
  negation      a different count of negators ("can" / "cannot", "with" / "without")
  order         the same words on either side of "to", "from", "than", "of", ... swapped places
                ("Celsius to Fahrenheit" / "Fahrenheit to Celsius")
  entity        a name (capitalised inside a sentence, an acronym, a word with digits) in one
                text is not in the other ("Heroku" / "AWS Lambda", "in Python" / "in Rust")
  substitution  each text has a content word the other lacks: one thing was swapped for
                another ("breakfast" / "dinner", "enable" / "disable", "before" / "after")
  polarity      a word of contrast (antonyms, direction, comparison, quantifiers, units) is
                added ("reverse order", "all files", "more sour")
  rare          a word rare in the shipped vocabulary (or unknown to it) is added

A word unknown to the vocabulary within one edit of a word of the other text (two for long
words) is a typo of it and counts as that word. What is left, common content words added on
one side, lowers the similarity by `wording_penalty` each (`Verdict.penalty`); the caller
compares the result with its threshold. Pure string work on two short texts: 0.09-0.12 ms a pair on
average over the evaluation set (docs/benchmarks.md).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from semrouter.embed.spelling import shipped_vocabulary

WORDING_PENALTY = 0.06
"""Similarity taken off per common content word in one text only (the tuned value:
`semrouter bench cache` picks it on the train split of data/cache/pairs.jsonl)."""
RARE_COUNT = 5
"""A word seen fewer times than this in the shipped vocabulary is rare (a name, a product)."""
TYPO_MAX_COUNT = 2
"""A word seen fewer times than this may be a typo of a known word."""

_WORD = re.compile(r"[a-z0-9]+(?:[.,:/][0-9]+)*(?:\+\+|#)?|[%$€£]")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9+#]*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n]\s*|[\"'(\[]\s*)$")
_REWRITES = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"\bcan[’']t\b|\bcannot\b", "can not"),
        (r"\bwon[’']t\b", "will not"),
        (r"n[’']t\b", " not"),
        (r"[’']s\b|[’'](?:re|ve|ll|d|m)\b", ""),
        (r"\b(?:turn|switch)(?:ing|ed|s)? on\b|\bswitch(?:ing|ed|es)? to\b", "enable"),
        (r"\b(?:turn|switch|shut)(?:ing|ed|s|es)? off\b", "disable"),
        (r"\blog(?:ging|ged|s)? in(?:to)?\b|\bsign(?:ing|ed|s)? in(?:to)?\b", "login"),
        (r"\blog(?:ging|ged|s)? out\b|\bsign(?:ing|ed|s)? out\b", "logout"),
        (r"\bzip(?:ping|ped|s)? up\b|\bzip(?:ping|ped|s)?\b", "compress"),
        (r"\b(?:every|each|per|a) day\b", "daily"),
        (r"\b(?:every|each|per|a) night\b", "nightly"),
        (r"\bhow long\b|\bhow many (?:seconds|minutes|hours|days|weeks)\b", "duration"),
        (r"\b(?:the )?best way\b", "way"),
        (r"\bis it (?:better|best) to\b", "should i"),
        (r"\b(?:the )?best time\b", "when"),
        (r"\bhow fast\b", "speed"),
    )
)
_SYNONYMS = (
    "merge combine",
    "dictionary dict",
    "suggest recommend propose",
    "make create build generate produce set",
    "fix repair resolve",
    "big large",
    "bigger larger",
    "small little",
    "quick fast rapid",
    "house home",
    "film movie",
    "safe okay ok fine",
    "top highest",
    "bottom lowest",
    "percent %",
    "read load",
    "inbound incoming",
    "outbound outgoing",
    "remove delete erase",
    "add insert",
    "start begin",
    "stop kill terminate halt",
    "prevent avoid",
    "number integer int",
    "increase raise boost",
    "decrease reduce",
    "summary summarise summarize",
    "difference differ",
    "buy purchase",
    "picture image photo",
    "phone smartphone",
    "speed velocity",
    "duration time",
    "enable activate switch",
    "disable deactivate",
    "allow permit",
    "deny block",
    "flavour flavor taste",
    "colour color",
    "function code",
    "check test",
)
_NUMBER_CARDINALS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
)
_NUMBER_OTHERS = (
    "thirty forty fifty sixty seventy eighty ninety hundred thousand million billion trillion "
    "half halve quarter third dozen double twice triple thrice single once first second fourth "
    "fifth sixth seventh eighth ninth tenth"
)
_NEGATORS = "not no never without none nothing nobody neither nor"
# Adding one of these changes the answer (and swapping two is a substitution anyway).
_CONTRAST = (
    # quantifiers and frequency
    "only all every both either except always sometimes often rarely seldom usually "
    # switches and opposite actions
    "enable disable allow deny disallow forbid prohibit unblock accept reject include exclude "
    "append prepend destroy stop start end finish pause resume open close up down increase "
    "decrease lower grow shrink expand collapse encrypt decrypt sign verify compress "
    "decompress extract encode decode import export upload download push pull send receive "
    "buy sell rent lease win lose gain loss install uninstall connect disconnect lock unlock "
    "mount unmount hide visible invisible public private read input output save keep "
    "drop join split pass fail succeed approve refuse attach detach subscribe unsubscribe "
    "follow unfollow like dislike love hate agree disagree login logout reverse undo redo "
    "cure treat harvest plant boil freeze melt fry bake "
    # comparison and direction
    "more less fewer most least higher lower larger smaller bigger greater better worse best "
    "worst faster slower fastest slowest cheaper costlier longer shorter older newer before "
    "after during earlier later last next previous above below over under inside outside "
    "min max minimum maximum ascending descending forward backward left right north south "
    "east west top bottom front back upper inner outer internal external early late past "
    "future since until horizontal horizontally vertical vertically "
    # properties
    "true false yes correct incorrect right wrong valid invalid safe unsafe dangerous legal "
    "illegal possible impossible positive negative plus minus hot cold warm cool old new young "
    "short long tall high low light dark heavy cheap expensive big small large tiny fast slow "
    "easy hard soft strong weak good bad rich poor happy sad full empty wet dry same different "
    "similar opposite odd even synchronous asynchronous sync async static dynamic mutable "
    "immutable male female man woman boy girl formal casual informal benefit risk "
    # arithmetic
    "sum subtract multiply divide product quotient ratio average median mean total "
    # units
    "kg g mg lb lbs pound ounce oz gram kilogram ton tonne km m cm mm mile meter metre inch "
    "foot feet yard liter litre ml gallon cup tablespoon tbsp teaspoon tsp celsius "
    "fahrenheit kelvin degree second minute hour day week month year decade century ms byte "
    "kb mb gb tb bit dollar euro usd eur gbp yen cent $ € £"
)
_PIVOTS = frozenset({"to", "from", "into", "than", "instead", "onto", "of"})
# Framing and function words, whose difference alone changes nothing.
_STOPWORDS = (
    "a an the is are was were be been being am do does did doing done to of at by for from "
    "into onto about as it its this that these those there here i me my mine myself we us our "
    "you your yours yourself he she him his her they them their what which who whom whose how "
    "why where when please pls kindly can could would should will shall may might must tell "
    "explain give help need want know way ways get got let lets just really also so and or if "
    "then some any thing things something anything someone anyone im ive id youre dont hey hi "
    "hello thanks thank possible able quick quickly briefly simply exactly actually correctly "
    "properly say describe write find make use using used show in on with out off much many "
    "step steps walk through via go going like have has had take taking current vs versus "
    "between"
)


def stem(word: str) -> str:
    """A light suffix strip so that "enables", "enabled" and "enable" compare equal."""
    if len(word) > 6 and word.endswith("ically"):
        return word[:-4]
    if len(word) > 5 and word.endswith("ly") and not word.endswith("ily"):
        return word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing") and any(c in "aeiouy" for c in word[:-3]):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed") and not word.endswith("eed"):
        return word[:-2]
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _stems(words: str) -> frozenset[str]:
    return frozenset(stem(w) for w in words.split())


_CANONICAL = {stem(word): stem(group.split()[0]) for group in _SYNONYMS for word in group.split()}
_CARDINALS = {word: str(value) for value, word in enumerate(_NUMBER_CARDINALS.split())}
_NUMBERS = _stems(_NUMBER_CARDINALS + " " + _NUMBER_OTHERS)
_NEGATION = _stems(_NEGATORS)
_POLAR = frozenset(_CANONICAL.get(s, s) for s in _stems(_CONTRAST))
_STOPS = frozenset(_CANONICAL.get(s, s) for s in _stems(_STOPWORDS)) - _POLAR - _NEGATION


@lru_cache(maxsize=1)
def _vocabulary() -> Mapping[str, int]:
    counts: dict[str, int] = {}
    with gzip.open(shipped_vocabulary(), "rt", encoding="utf-8") as handle:
        for line in handle:
            word, _, count = line.rstrip("\n").partition("\t")
            counts[word] = int(count)
    return counts


@dataclass(frozen=True, slots=True)
class Text:
    """A text's words as verification compares them: folded stems in order (with the word each
    came from), its numbers in order, its names."""

    stems: tuple[str, ...]
    words: Mapping[str, str]
    numbers: tuple[str, ...]
    entities: frozenset[str]

    @property
    def content(self) -> frozenset[str]:
        return frozenset(
            s
            for s in self.stems
            if s not in _STOPS and s not in _NUMBERS and s not in _NEGATION and not s[0].isdigit()
        )

    def count(self, stem_: str) -> int:
        """How often the stem's word, as written, is seen in the vocabulary."""
        return _vocabulary().get(self.words.get(stem_, stem_), 0)

    def is_rare(self, stem_: str) -> bool:
        """Neither the word as written nor its stem is common in the vocabulary."""
        return max(self.count(stem_), _vocabulary().get(stem_, 0)) < RARE_COUNT


def analyse(text: str) -> Text:
    lowered = text.lower()
    for pattern, replacement in _REWRITES:
        lowered = pattern.sub(replacement, lowered)
    stems: list[str] = []
    words: dict[str, str] = {}
    for word in _WORD.findall(lowered):
        folded = _CANONICAL.get(stem(word), stem(word))
        stems.append(folded)
        words.setdefault(folded, word)
    numbers = tuple(_CARDINALS.get(s, s) for s in stems if s in _NUMBERS or s[0].isdigit())
    entities = (
        frozenset(
            _CANONICAL.get(stem(m.group(0).lower()), stem(m.group(0).lower()))
            for m in _NAME.finditer(text)
            if (_is_name(m.group(0)) and not _SENTENCE_START.search(text[: m.start()]))
            or _is_acronym(m.group(0))
        )
        - _STOPS
    )
    return Text(tuple(stems), words, numbers, entities)


def _is_name(word: str) -> bool:
    return word[0].isupper() or any(c.isdigit() for c in word)


def _is_acronym(word: str) -> bool:
    return (len(word) >= 2 and word.isupper()) or any(c.isdigit() for c in word[1:])


@dataclass(frozen=True, slots=True)
class Verdict:
    """`check`: the first check that failed (None: the texts ask the same); `penalty`: what
    the remaining wording differences take off the similarity."""

    check: str | None
    penalty: float = 0.0


def verify(query: str, cached: str, wording_penalty: float = WORDING_PENALTY) -> Verdict:
    """Compare a request's last user turn with a cached entry's (see the module docstring)."""
    a, b = analyse(query), analyse(cached)
    if a.numbers != b.numbers:
        return Verdict("numbers")
    if sorted(s for s in a.stems if s in _NEGATION) != sorted(s for s in b.stems if s in _NEGATION):
        return Verdict("negation")
    if not _same_order(a, b):
        return Verdict("order")
    only_a, only_b = _without_typos(a, b)
    if not _names_match(a, b) or not _names_match(b, a):
        return Verdict("entity")
    if only_a and only_b:
        return Verdict("substitution")
    added = only_a or only_b
    side = a if only_a else b
    if any(w in _POLAR for w in added):
        return Verdict("polarity")
    if any(side.is_rare(w) for w in added):
        return Verdict("rare")
    return Verdict(None, wording_penalty * len(added))


def _names_match(a: Text, b: Text) -> bool:
    """Every name of `a` is a word of `b` (or misspelt in `b`)."""
    present = set(b.stems)
    return all(
        name in present or any(_is_typo(b, other, name, a) for other in present)
        for name in a.entities
    )


def _same_order(a: Text, b: Text) -> bool:
    """For each pivot word both texts use equally often, the same shared words follow it."""
    shared = set(a.stems) & set(b.stems)
    for pivot in _PIVOTS & shared:
        after_a, after_b = _after(a.stems, pivot, shared), _after(b.stems, pivot, shared)
        if len(after_a) == len(after_b) and after_a != after_b:
            return False
    return True


def _after(stems: Sequence[str], pivot: str, shared: set[str]) -> list[str]:
    """The first content word after each occurrence of pivot (within three words), where it
    is a word both texts have (a word only one has is another check's business)."""
    found = (
        next((w for w in stems[i + 1 : i + 4] if w not in _STOPS), "")
        for i, word in enumerate(stems)
        if word == pivot
    )
    return sorted(w for w in found if w in shared)


def _without_typos(a: Text, b: Text) -> tuple[list[str], list[str]]:
    """The content words of each text that the other lacks, once every misspelling of a word
    of the other text is paired off with that word."""
    only_a, only_b = set(a.content - b.content), set(b.content - a.content)
    for text, only, other, other_only in ((a, only_a, b, only_b), (b, only_b, a, only_a)):
        for word in sorted(only):
            match = next(
                (o for o in sorted(set(other.stems)) if _is_typo(text, word, o, other)), None
            )
            if match is not None:
                only.discard(word)
                other_only.discard(match)
    return sorted(only_a), sorted(only_b)


def _is_typo(text: Text, word: str, other: str, other_text: Text) -> bool:
    """`word` (of `text`) is unknown to the vocabulary and, as written, one edit from `other`
    as written in `other_text` (two for long words): a misspelling of it. Never between
    numbers, whose small edits change the value."""
    if word == other or word[0].isdigit() or other[0].isdigit():
        return False
    written, meant = text.words.get(word, word), other_text.words.get(other, other)
    shortest = min(len(written), len(meant))
    if shortest < 4 or text.count(word) >= TYPO_MAX_COUNT:
        return False
    return _distance(written, meant, 2 if shortest >= 8 else 1) is not None


def _distance(a: str, b: str, limit: int) -> int | None:
    """Damerau-Levenshtein distance (adjacent swaps count one) if at most limit, else None."""
    if abs(len(a) - len(b)) > limit:
        return None
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return None
        previous2, previous = previous, current
    return previous[-1] if previous[-1] <= limit else None
