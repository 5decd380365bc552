"""bench slo's accuracy accounting: the paired share of always-on's gain an arm keeps."""

from __future__ import annotations

import numpy as np

from semrouter.bench.slo import Questions, Sample, kept_share, slo_level


def _sample(question: int, accuracy: float, ok: bool = True) -> Sample:
    return Sample(0.0, 1, question, ok, 1.0, 1.0, 0, 0, None, None, False, accuracy)


def test_kept_share_is_paired_on_the_arm_s_own_questions() -> None:
    questions = Questions(
        ("a", "b", "c", "d"), fast=np.array([0.0, 1.0, 0.0, 0.0]), strong=np.array([1, 1, 1, 0])
    )
    full = [_sample(i, float(questions.strong[i])) for i in range(4)]
    none = [_sample(i, float(questions.fast[i])) for i in range(4)]
    assert kept_share(full, questions) == 1.0
    assert kept_share(none, questions) == 0.0
    half = [_sample(0, 0.5), _sample(2, 0.5), _sample(1, 1.0)]  # half a thought each
    assert kept_share(half, questions) == 0.5
    assert kept_share([_sample(0, 1.0), _sample(2, 0.0, ok=False)], questions) == 1.0
    assert kept_share([_sample(1, 1.0), _sample(3, 0.0)], questions) is None  # no gain there


def test_slo_header_parsing() -> None:
    assert slo_level(None) == (None, None)
    assert slo_level("ok") == (0, None)
    assert slo_level("degraded=thinking_budget,reasoning_off;level=2") == (
        2,
        "thinking_budget,reasoning_off",
    )
