"""Spelling normalisation before encoding: what is corrected, what is left alone, the file."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from semrouter.embed.local import LocalEmbedder
from semrouter.embed.spelling import (
    SpellingNormaliser,
    count_words,
    edits1,
    shipped_vocabulary,
    write_vocabulary,
)
from semrouter.train.data import DEFAULT_MMLU_DIR, training_texts

COUNTS = {
    "government": 40,
    "should": 90,
    "calculate": 12,
    "between": 30,
    "web": 5,
    "devalues": 3,
    "photosynthesis": 7,
    "photosynthesys": 1,  # a misspelling seen once is known but never a correction target
    "hello": 4,
    "help": 50,
}


@pytest.fixture()
def normalise() -> SpellingNormaliser:
    return SpellingNormaliser(COUNTS, extra_known=["Kubernetes", "rugby"])


def test_edits1_covers_each_kind_of_typo() -> None:
    edits = edits1("cat")
    assert {"at", "act", "cut", "cart"} <= edits  # drop, swap, replace, insert
    assert "cat" in edits1("cta") and "cat" in edits1("caat")


@pytest.mark.parametrize(
    ("typo", "fixed"),
    [
        ("What does the goverment do?", "What does the government do?"),  # dropped letter
        ("how shoud I calcualte it", "how should I calculate it"),  # swap and drop
        ("the gap betweeen them", "the gap between them"),  # doubled letter
        ("WHY DOES THE GOVERNMNET EXIST", "WHY DOES THE government EXIST"),  # shouting
    ],
)
def test_misspelt_words_are_corrected(normalise: SpellingNormaliser, typo: str, fixed: str) -> None:
    assert normalise(typo) == fixed


@pytest.mark.parametrize(
    "text",
    [
        "Deploy it on Kubernetes tonight",  # extra known word (tokenizer vocabulary)
        "spiders spin webs",  # known word plus a suffix
        "why would a currency devalue",  # known word minus a suffix
        "is HPLC tailing bad",  # capitals in mixed case: an acronym; 'tailing' has no target
        "Schrödinger's cat",  # non-ASCII words are never touched
        "the hive of bees",  # short or unknown words with no frequent neighbour stay
        "a b cd efg",
    ],
)
def test_known_words_acronyms_and_unknowns_are_left_alone(
    normalise: SpellingNormaliser, text: str
) -> None:
    assert normalise(text) == text


def test_rare_spellings_are_not_correction_targets(normalise: SpellingNormaliser) -> None:
    assert normalise("photosynthesys") == "photosynthesys"  # known (seen once)
    assert normalise("photosinthesis") == "photosynthesis"  # frequent target one edit away
    assert normalise("helo") == "help"  # ties go to the most frequent word


def test_long_texts_are_normalised_only_at_both_ends(normalise: SpellingNormaliser) -> None:
    filler = "word " * 2_000
    text = f"the goverment {filler}middle goverment {filler}last goverment"
    out = normalise(text)
    assert out.startswith("the government ") and out.endswith("last government")
    assert "middle goverment" in out  # the encoder never reads the middle


def test_vocabulary_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "vocabulary.tsv.gz"
    write_vocabulary(count_words(["The government, the GOVERNMENT and the web."]), path)
    loaded = SpellingNormaliser.load(path)
    assert loaded("goverment") == "government"
    assert (
        loaded.digest == SpellingNormaliser({"the": 3, "government": 2, "and": 1, "web": 1}).digest
    )
    first = path.read_bytes()
    write_vocabulary(count_words(["The government, the GOVERNMENT and the web."]), path)
    assert path.read_bytes() == first  # reproducible bytes

    bad = tmp_path / "bad.tsv.gz"
    bad.write_bytes(gzip.compress(b"word\t3\nbroken line\n"))
    with pytest.raises(ValueError, match=r"bad.tsv.gz:2: expected 'word<TAB>count'"):
        SpellingNormaliser.load(bad)


def test_shipped_vocabulary_is_reproducible_from_the_training_texts() -> None:
    shipped = SpellingNormaliser.load(shipped_vocabulary())
    rebuilt = SpellingNormaliser(count_words(training_texts(DEFAULT_MMLU_DIR / "questions.jsonl")))
    assert shipped.digest == rebuilt.digest


def test_local_embedder_reads_the_corrected_text(tmp_path: Path) -> None:
    fixed, raw = (
        LocalEmbedder(cache_dir=tmp_path, threads=1, spelling=spelling)
        for spelling in (True, False)
    )
    typo, right = (
        "How does the goverment set interest rates?",
        ("How does the government set interest rates?"),
    )
    got = fixed.encode_sync([typo, right])
    np.testing.assert_allclose(got.features[0], got.features[1], atol=1e-5)
    assert got.token_counts[0] == got.token_counts[1]
    plain = raw.encode_sync([typo, right])
    assert np.abs(plain.features[0] - plain.features[1]).max() > 1e-2
    assert fixed.fingerprint != raw.fingerprint
