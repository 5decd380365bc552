"""The PII detector (semrouter.signals.pii): each type's rule, its non-PII look-alikes, the
config, and bounded work on hostile input."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from semrouter.config.schema import PII_TYPES, PiiConfig
from semrouter.signals.pii import _PRIORITY, PiiDetector, PiiEntity, _resolve, iban_valid, luhn

PATTERNS = PiiDetector(PiiConfig())


@pytest.fixture(scope="module")
def with_ner() -> PiiDetector:
    detector = PiiDetector(PiiConfig(ner=True))
    detector.load()
    return detector


def found(text: str, detector: PiiDetector = PATTERNS) -> list[tuple[str, str]]:
    return [(e.type, e.text) for e in detector.detect(text)]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("mail jane.doe+x@mail.example.co.uk today", "EMAIL", "jane.doe+x@mail.example.co.uk"),
        ("call (415) 555-0132 after 5", "PHONE", "(415) 555-0132"),
        ("call +44 20 7946 0958 after 5", "PHONE", "+44 20 7946 0958"),
        ("ring me on 030 901820 (Berlin)", "PHONE", "030 901820"),
        ("card 4111 1111 1111 1111 exp 09/27", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("amex 3714-496353-98431 please", "CREDIT_CARD", "3714-496353-98431"),
        ("ssn 536-22-1984 on file", "US_SSN", "536-22-1984"),
        ("my SSN is 536221984", "US_SSN", "536221984"),
        ("pay DE89 3704 0044 0532 0130 00 now", "IBAN", "DE89 3704 0044 0532 0130 00"),
        ("pay GB82WEST12345698765432 now", "IBAN", "GB82WEST12345698765432"),
        ("ssh to 81.2.69.160 now", "IP_ADDRESS", "81.2.69.160"),
        ("ping 2001:db8:85a3::8a2e:370:7334 now", "IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334"),
        ("Hi, my name is Maria Gonzalez.", "PERSON", "Maria Gonzalez"),
        ("Thanks,\nPriya O'Brien", "PERSON", "Priya O'Brien"),
        ("DOB: 03/14/1987", "DATE_OF_BIRTH", "03/14/1987"),
        ("she was born on 14 March 1987.", "DATE_OF_BIRTH", "14 March 1987"),
        (
            "ship to 42 Oak Street, Apt 3B, Springfield, IL 62704 please",
            "LOCATION",
            "42 Oak Street, Apt 3B, Springfield, IL 62704",
        ),
        ("send it to Lindenstraße 12, 10115 Berlin.", "LOCATION", "Lindenstraße 12, 10115 Berlin"),
    ],
)
def test_each_type_is_found_with_its_exact_span(text: str, kind: str, value: str) -> None:
    assert found(text) == [(kind, value)]
    entity = PATTERNS.detect(text)[0]
    assert text[entity.start : entity.end] == value
    assert 0.0 < entity.score <= 1.0


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112 shipped",  # Luhn fails
        "card **** **** **** 4242 was charged",
        "card 4111 XXXX XXXX 1111 was charged",
        "enter it as XXX-XX-XXXX or ###-##-####",
        "SSN 000-12-3456 and 666-12-3456 are never issued",
        "IBAN DE00 3704 0044 0532 0130 00 (bad check digits)",
        "listening on 0.0.0.0:8080 and 127.0.0.1:5432",
        "upgrade to version 1.2.3.4 or firmware 4.0.1.7",
        "999.300.1.1 is not an address",
        "MAC 00:1A:2B:3C:4D:5E and std::vector<int>",
        "What did Barack Obama say? Ask Sherlock Holmes.",
        "I'm flying to Chicago, then Paris.",
        "Thanks Sarah, that fixed it!",
        "The White House is at 1600 Pennsylvania Avenue.",
        "the meeting on March 14, 2024 at 10:30",
        "2024-06-01 10:02:11 WARN retry 2/3 on ticket 48213",
        "invoice INV-2024-0042 and part number 362-91-865",
    ],
)
def test_look_alikes_are_not_pii(text: str) -> None:
    assert found(text) == []


def test_ip_span_leaves_out_port_and_brackets() -> None:
    text = "from 10.0.0.5:8080 and [2001:db8::1]:443"
    assert found(text) == [("IP_ADDRESS", "10.0.0.5"), ("IP_ADDRESS", "2001:db8::1")]


def test_name_inside_email_is_email_only(with_ner: PiiDetector) -> None:
    text = "write to maria.gonzalez@example.com about it"
    assert found(text, with_ner) == [("EMAIL", "maria.gonzalez@example.com")]


def test_ner_finds_names_without_an_introducing_phrase(with_ner: PiiDetector) -> None:
    text = "Write a short bio for Ingrid Yilmaz, a nurse from Denver."
    assert found(text) == []
    assert found(text, with_ner) == [("PERSON", "Ingrid Yilmaz")]
    assert found("Tell me about Taylor Swift and Harry Potter.", with_ner) == []


def test_entities_are_sorted_and_do_not_overlap() -> None:
    text = (
        "From: Maria Gonzalez <maria@example.com>, card 4111-1111-1111-1111, ip 81.2.69.160, "
        "born 1987-03-14, tel +1 415 555 0132, ssn 536-22-1984, iban GB82WEST12345698765432"
    )
    entities = PATTERNS.detect(text)
    assert len(entities) == 8
    assert [e.start for e in entities] == sorted(e.start for e in entities)
    assert all(a.end <= b.start for a, b in itertools.pairwise(entities))
    assert {e.type for e in entities} == set(PII_TYPES) - {"LOCATION"}


def test_config_types_and_threshold() -> None:
    text = "mail a.b@example.com, card 4111 1111 1111 1111, ssn 536-22-1984"
    only = PiiDetector(PiiConfig(types=["CREDIT_CARD"]))
    assert found(text, only) == [("CREDIT_CARD", "4111 1111 1111 1111")]
    # A dashed SSN without "SSN" before it scores below a strict threshold.
    strict = PiiDetector(PiiConfig(threshold=0.8))
    assert found("ref 536-22-1984", PATTERNS) == [("US_SSN", "536-22-1984")]
    assert found("ref 536-22-1984", strict) == []


def test_config_rejects_unknown_and_repeated_types() -> None:
    with pytest.raises(ValidationError, match=r"unknown PII types \['PASSPORT'\]"):
        PiiConfig(types=["EMAIL", "PASSPORT"])
    with pytest.raises(ValidationError, match="listed twice"):
        PiiConfig(types=["EMAIL", "EMAIL"])
    with pytest.raises(ValidationError):
        PiiConfig(max_chars=10)


def test_checksums() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("GB83WEST12345698765432")
    assert not iban_valid("GB82WEST1234569876543")  # one character short for GB


def test_text_beyond_max_chars_is_not_scanned() -> None:
    detector = PiiDetector(PiiConfig(max_chars=1000))
    text = "x " * 600 + "mail a.b@example.com"
    assert detector.detect(text) == []
    assert found(text) == [("EMAIL", "a.b@example.com")]


HOSTILE = {
    "a megabyte of digits": "7" * 1_000_000,
    "digits and spaces": "1 " * 100_000,
    "digits and dashes": "1-" * 100_000,
    "dotted digits": "1." * 100_000,
    "colons": "ab:" * 70_000,
    "at signs": "a@" * 100_000,
    "a long local part": "a" * 200_000 + "@",
    "capitalised words": "Maria Gonzalez " * 14_000,
    "street-like": "12 Oak Oak Oak " * 14_000,
    "date cues": "born 12/12/1990 " * 12_000,
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_input_is_bounded(text: str, with_ner: PiiDetector) -> None:
    """Every pattern is bounded (no backtracking blow-up): 200k characters scanned in full stay
    far from what a quadratic pattern would take (minutes); the default config reads 20k."""
    unbounded = PiiDetector(PiiConfig(max_chars=len(text)))
    started = time.perf_counter()
    entities = unbounded.detect(text)
    assert time.perf_counter() - started < 10.0
    assert all(isinstance(e, PiiEntity) and e.end <= len(text) for e in entities)
    started = time.perf_counter()
    with_ner.detect(text)
    assert time.perf_counter() - started < 10.0


def test_ner_reads_at_most_its_budget(
    with_ner: PiiDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NER sees only windows around candidate names, ner_chars in all."""
    seen: list[int] = []
    nlp = with_ner._ner.load()  # type: ignore[union-attr]
    original = nlp.pipe

    def pipe(texts: object) -> object:
        chunks = list(texts)  # type: ignore[call-overload]
        seen.extend(len(c) for c in chunks)
        return original(chunks)

    monkeypatch.setattr(nlp, "pipe", pipe)
    text = "Some Name went to Other Place and then " * 2_000
    with_ner.detect(text)
    assert 0 < sum(seen) <= with_ner.config.ner_chars + 250


@given(
    st.lists(
        st.tuples(st.sampled_from(PII_TYPES), st.integers(0, 60), st.integers(1, 12)),
        max_size=40,
    )
)
def test_overlaps_resolve_like_the_plain_greedy_rule(spans: list[tuple[str, int, int]]) -> None:
    """The bisect-based resolution keeps what "most specific type, then longest, first" keeps."""
    candidates = [PiiEntity(t, "", s, s + n, 1.0) for t, s, n in spans]
    ranked = sorted(candidates, key=lambda e: (_PRIORITY[e.type], -(e.end - e.start), e.start))
    expected: list[PiiEntity] = []
    for e in ranked:
        if all(e.end <= k.start or e.start >= k.end for k in expected):
            expected.append(e)
    assert _resolve(candidates) == sorted(expected, key=lambda e: e.start)
