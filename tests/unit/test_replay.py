"""Replay metrics on tiny outcome tables whose answers are known by construction."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from semrouter.bench.replay import (
    OutcomeTable,
    Point,
    category_table_points,
    cheapest_and_best,
    cost_to_reach,
    curve_metrics,
    evaluate_choice,
    load_outcome_table,
    oracle_point,
    privileged_points,
    random_mix_points,
    replay,
    single_model_points,
    upper_envelope,
)

MODELS = ("small", "medium", "large")
PARAMS = np.array([1.0, 4.0, 10.0])


def make_table(
    correct: list[list[float]],
    categories: Sequence[str] | None = None,
    models: tuple[str, ...] = MODELS,
) -> OutcomeTable:
    n = len(correct)
    return OutcomeTable(
        question_ids=tuple(str(i) for i in range(n)),
        questions=tuple(f"question {i}" for i in range(n)),
        categories=np.array(categories or ["math"] * n),
        prompt_chars=np.full(n, 36.0),
        models=models,
        correct=np.array(correct, dtype=float),
        output_chars=np.full((n, len(models)), 4.0),
        active_params_b=PARAMS if models == MODELS else np.ones(len(models)),
    )


# Every request costs (36 + 4) / 4 * params = 10, 40, 100.
TABLE = make_table(
    [
        [1, 1, 1],
        [0, 1, 1],
        [0, 0, 1],
        [0, 0, 0],
    ]
)


def test_single_models_and_oracle() -> None:
    singles = single_model_points(TABLE)
    assert [(p.label, p.accuracy, p.cost) for p in singles] == [
        ("small", 0.25, 10.0),
        ("medium", 0.5, 40.0),
        ("large", 0.75, 100.0),
    ]
    cheapest, best = cheapest_and_best(singles)
    assert (cheapest.label, best.label) == ("small", "large")
    oracle = oracle_point(TABLE)
    # small, medium, large, and small for the unanswerable question.
    assert oracle.accuracy == 0.75
    assert oracle.cost == pytest.approx((10 + 40 + 100 + 10) / 4)


def test_complete_drops_questions_with_missing_records() -> None:
    table = make_table([[1, np.nan, 1], [0, 1, 1], [1, 1, np.nan]])
    assert table.rows(table.has_every_record).question_ids == ("1",)


def test_upper_envelope_is_the_concave_hull_up_to_the_top() -> None:
    points = [
        Point("a", 0.2, 10.0),
        Point("b", 0.3, 50.0),  # under the chord from a to c
        Point("c", 0.6, 60.0),
        Point("d", 0.5, 80.0),  # dearer and worse than c
        Point("e", 0.2, 10.0),
    ]
    costs, accuracies = upper_envelope(points)
    assert costs.tolist() == [10.0, 60.0]
    assert accuracies.tolist() == [0.2, 0.6]


def test_apgr_of_trivial_mixing_and_perfect_routers() -> None:
    cheapest, best = Point("small", 0.25, 10.0), Point("large", 0.75, 100.0)
    mixing = curve_metrics(random_mix_points(cheapest, best), cheapest, best)
    assert mixing.apgr == pytest.approx(0.5, abs=1e-9)
    assert mixing.cpt50 == pytest.approx(55.0)
    assert mixing.cpt80 == pytest.approx(82.0)
    # The best model alone: the envelope is the same line.
    assert curve_metrics([best], cheapest, best).apgr == pytest.approx(0.5, abs=1e-9)
    # Always the cheapest model: no gain, never reaches the targets.
    stuck = curve_metrics([cheapest], cheapest, best)
    assert stuck.apgr == 0.0
    assert stuck.cpt50 is None
    # The best accuracy at the cheapest cost: the whole gap at every budget.
    perfect = curve_metrics([Point("router", 0.75, 10.0)], cheapest, best)
    assert perfect.apgr == pytest.approx(1.0)
    assert perfect.cpt80 == pytest.approx(10.0)


def test_cost_to_reach_interpolates_along_the_envelope() -> None:
    cheapest, best = Point("small", 0.2, 10.0), Point("large", 0.6, 100.0)
    router = [Point("r", 0.5, 30.0), Point("r", 0.6, 70.0)]
    # 50%: 0.4, two thirds of the way from (10, 0.2) to (30, 0.5).
    assert cost_to_reach(router, cheapest, best, 0.5) == pytest.approx(10 + 20 * 2 / 3)
    # 80%: 0.52, a fifth of the way from (30, 0.5) to (70, 0.6).
    assert cost_to_reach(router, cheapest, best, 0.8) == pytest.approx(38.0)


def test_category_table_learns_each_category_s_best_model() -> None:
    categories = ["law", "law", "math", "math"]
    train = make_table([[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1]], categories)
    test = make_table([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], categories)
    accurate, thrifty = category_table_points(train, test, [0.0, 1000.0])
    # No cost weight: law → small, math → large; right on questions 0 and 2.
    assert accurate.accuracy == 0.5
    assert accurate.cost == pytest.approx((10 + 10 + 100 + 100) / 4)
    # Heavy cost weight: everything to small.
    assert thrifty.cost == 10.0
    assert thrifty.accuracy == 0.5


def test_columns_and_share_correct() -> None:
    table = make_table([[1, 0, np.nan], [np.nan, np.nan, np.nan], [1, 1, 0]])
    assert table.columns(["large", "small"]).models == ("large", "small")
    assert np.isnan(table.columns(["large", "small"]).correct[0, 0])
    assert table.columns(["large", "small"]).active_params_b.tolist() == [10.0, 1.0]
    share = table.share_correct
    assert share[0] == 0.5 and np.isnan(share[1]) and share[2] == pytest.approx(2 / 3)
    assert table.has_every_record.tolist() == [False, False, True]


def foretold(n: int) -> tuple[OutcomeTable, OutcomeTable]:
    """Pool outcomes that two models outside the pool foretell: small is right exactly when
    "a" is, medium when "b" is, large except when both are."""
    a, b = np.arange(n) % 2, (np.arange(n) // 2) % 2
    pool = np.stack([a, b, 1 - a * b * (np.arange(n) % 8 == 7)], axis=1)
    others = np.stack([a, b], axis=1)
    return make_table(pool.tolist()), make_table(others.tolist(), models=("a", "b"))


def test_privileged_outcomes_reach_the_oracle_and_difficulty_does_not() -> None:
    train, train_others = foretold(48)
    test, test_others = foretold(16)
    oracle = oracle_point(test)
    assert oracle.accuracy == 1.0
    knowing = privileged_points(train, test, train_others, test_others, "outcomes")
    assert all(p.label == "privileged_outcomes" for p in knowing)
    assert any(p.accuracy == 1.0 and p.cost == pytest.approx(oracle.cost) for p in knowing), (
        "knowing the other models' answers picks each question's cheapest right model"
    )
    # The share right of "a" and "b" cannot tell a question small gets from one medium gets.
    sensing = privileged_points(train, test, train_others, test_others, "difficulty")
    assert not any(p.accuracy == 1.0 and p.cost <= oracle.cost + 1e-9 for p in sensing)
    with pytest.raises(ValueError, match="same rows"):
        privileged_points(train, test, test_others, test_others, "outcomes")


def test_evaluate_choice() -> None:
    point = evaluate_choice(TABLE, np.array([0, 1, 2, 0]), "perfect")
    assert point.accuracy == 0.75
    assert point.cost == pytest.approx(40.0)


def write_data(folder: Path) -> tuple[Path, Path, Path]:
    questions = folder / "questions.jsonl"
    outcomes = folder / "outcomes.csv.gz"
    models = folder / "models.json"
    rows = []
    for i in range(40):
        q = {
            "question_id": str(i),
            "question": "q" * (8 + i % 3),
            "options": ["ab", "cde"],
            "answer": "A",
            "category": "law" if i % 2 else "math",
            "src": "synthetic",
        }
        rows.append(json.dumps(q))
    questions.write_text("\n".join(rows) + "\n")
    lines = ["question_id,model,correct,output_chars"]
    for i in range(40):
        lines.append(f"{i},small,{int(i % 4 == 0)},20")
        lines.append(f"{i},large,{int(i % 4 != 3)},40")
        if i != 5:  # one missing record
            lines.append(f"{i},other,1,10")
    with gzip.open(outcomes, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    models.write_text(
        json.dumps(
            {
                "models": {
                    "small": {"active_params_b": 1},
                    "large": {"active_params_b": 10},
                    "other": {"active_params_b": 2},
                },
                "pair": ["small", "large"],
            }
        )
    )
    return questions, outcomes, models


def test_load_outcome_table(tmp_path: Path) -> None:
    questions, outcomes, models = write_data(tmp_path)
    table = load_outcome_table(questions, outcomes, models, ["other", "small"])
    assert table.models == ("other", "small")
    assert len(table) == 40
    assert table.prompt_chars[1] == 9 + 2 + 3
    assert np.isnan(table.correct[5, 0]) and table.correct[5, 1] == 0
    assert table.cost[0, 1] == pytest.approx((8 + 5 + 20) / 4 * 1)
    assert table.has_every_record.sum() == 39
    with pytest.raises(KeyError):
        load_outcome_table(questions, outcomes, models, "no_such_pool")


class KnownOutcomesRouter:
    """Scores each model by its recorded outcome: a router that knows the answers."""

    models = ("small", "large")
    cost_scale = 10.0

    def __init__(self, p_correct: np.ndarray) -> None:
        self.p_correct = p_correct

    def score(
        self, questions: Sequence[str], prompt_chars: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        assert len(questions) == len(prompt_chars) == len(self.p_correct)
        return self.p_correct, np.tile([1.0, 10.0], (len(questions), 1))


def test_replay_end_to_end_with_a_scoring_router(tmp_path: Path) -> None:
    questions, outcomes, models = write_data(tmp_path)
    table = load_outcome_table(questions, outcomes, models, "pair")
    router = KnownOutcomesRouter(table.correct)
    report = replay(questions, outcomes, models, "pair", router, split="all")
    assert report.questions == 40 and report.left_out == 0
    assert (report.cheapest.label, report.best.label) == ("small", "large")
    assert report.metrics["random_mix"].apgr == pytest.approx(0.5, abs=1e-9)
    # Knowing the outcomes reaches the oracle: the best model's accuracy at a share r of the
    # cheapest-to-best cost range, so the gain climbs linearly to 1 there: APGR = 1 - r / 2.
    oracle, cheapest, best = report.oracle, report.cheapest, report.best
    assert max(p.accuracy for p in report.curves["selector"]) == oracle.accuracy == best.accuracy
    share = (oracle.cost - cheapest.cost) / (best.cost - cheapest.cost)
    assert report.metrics["selector"].apgr == pytest.approx(1 - share / 2, abs=1e-3)
    assert "selector: APGR" in "\n".join(report.lines())
    # "other", outside the pool, is always right: privileged curves exist but foretell nothing.
    assert {"privileged_difficulty", "privileged_outcomes"} <= set(report.curves)
    with pytest.raises(ValueError):
        replay(questions, outcomes, models, ["large", "small"], router, split="all")
