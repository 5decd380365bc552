"""The learned selector: prediction, the cost trade-off, the artifact, and fitting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semrouter.bench.replay import OutcomeTable
from semrouter.decide.selector import (
    LearnedSelector,
    load_selector,
    pick,
    request_cost,
)

MODELS = ("cheap", "strong")


def hand_built() -> LearnedSelector:
    """Two features, two domains: feature 0 says 'math', feature 1 'law'. The strong model is
    right 88% of the time everywhere; the cheap one 73% on math, 12% on law; easiness
    (feature 0 minus feature 1) adds nothing to the strong model's logit."""
    return LearnedSelector(
        models=MODELS,
        domains=("law", "math"),
        domain_weight=np.array([[-4.0, 4.0], [4.0, -4.0]]),
        domain_bias=np.zeros(2),
        easiness_weight=np.array([1.0, -1.0]),
        easiness_bias=0.0,
        head_weight=np.array([[-2.0, 2.0], [1.0, 2.0], [0.0, 0.0]]),
        head_bias=np.zeros(2),
        output_chars=np.array([[100.0, 300.0], [200.0, 400.0]]),
        active_params_b=np.array([1.0, 50.0]),
        cost_scale=5000.0,
        info={"note": "hand-built"},
    )


def test_request_cost_is_the_project_cost_model() -> None:
    assert request_cost(300, 100, 8.0) == pytest.approx(800.0)
    costs = request_cost(np.array([[40.0]]), np.array([[0.0, 40.0]]), np.array([1.0, 2.0]))
    assert costs.tolist() == [[10.0, 40.0]]


def test_pick_trades_probability_for_cost() -> None:
    p = np.array([[0.5, 0.9]])
    cost = np.array([[100.0, 1000.0]])
    assert pick(p, cost, 0.0, 1000.0).tolist() == [1]
    # 0.4 more probability vs 0.9 scaled cost: the break-even weight is 0.4 / 0.9.
    assert pick(p, cost, 0.44, 1000.0).tolist() == [1]
    assert pick(p, cost, 0.45, 1000.0).tolist() == [0]
    with pytest.raises(ValueError):
        pick(p, cost, -1.0, 1000.0)


def test_predict_matches_the_documented_formula() -> None:
    selector = hand_built()
    math = np.array([1.0, 0.0], dtype=np.float32)
    prediction = selector.predict(math, 400)
    domains = np.exp([-4.0, 4.0]) / np.exp([-4.0, 4.0]).sum()
    logits = np.array([*domains, 1.0]) @ selector.head_weight
    assert prediction.p_correct[0] == pytest.approx(1 / (1 + np.exp(-logits)))
    expected_output = domains @ selector.output_chars
    assert prediction.expected_cost[0] == pytest.approx(
        (400 + expected_output) / 4 * np.array([1.0, 50.0])
    )
    batch = selector.predict(np.stack([math, math[::-1]]), np.array([400, 10]))
    assert batch.p_correct.shape == batch.expected_cost.shape == (2, 2)
    with pytest.raises(ValueError):
        selector.predict(np.zeros(3), 10)


def test_choose_prefers_accuracy_at_zero_weight_and_cost_at_high_weight() -> None:
    selector = hand_built()
    law = np.array([0.0, 1.0])
    math = np.array([1.0, 0.0])
    assert selector.choose(law, 200, 0.0).model == "strong"
    assert selector.choose(math, 200, 0.0).model == "strong"
    # Moderate weight: the cheap model on math (close in accuracy), still strong on law.
    assert selector.choose(math, 200, 0.2).model == "cheap"
    assert selector.choose(law, 200, 0.2).model == "strong"
    choice = selector.choose(law, 200, 100.0)
    assert choice.model == "cheap"
    assert set(choice.probabilities) == set(MODELS)
    assert all(0.0 < p < 1.0 for p in choice.probabilities.values())
    assert choice.expected_costs["strong"] > choice.expected_costs["cheap"]


def test_artifact_round_trip_and_restrict(tmp_path: Path) -> None:
    selector = hand_built()
    npz, meta = selector.save(tmp_path / "selector_pair.npz")
    assert npz.is_file() and meta.is_file()
    loaded = load_selector(meta)
    x = np.random.default_rng(0).normal(size=(5, 2))
    assert loaded.models == selector.models
    assert loaded.info == {"note": "hand-built"}
    np.testing.assert_allclose(
        loaded.predict(x, 100).p_correct, selector.predict(x, 100).p_correct, rtol=1e-6
    )
    only = load_selector(npz, ["strong"])
    assert only.models == ("strong",)
    assert only.cost_scale == selector.cost_scale
    np.testing.assert_allclose(
        only.predict(x, 100).p_correct[:, 0], selector.predict(x, 100).p_correct[:, 1], rtol=1e-6
    )
    with pytest.raises(ValueError):
        selector.restrict(["unknown"])
    with pytest.raises(FileNotFoundError):
        load_selector("no_such_pool")
    with pytest.raises(FileNotFoundError):
        load_selector(tmp_path / "missing.npz")


def test_bad_shapes_are_rejected() -> None:
    selector = hand_built()
    with pytest.raises(ValueError):
        LearnedSelector(**{**selector.__dict__, "head_bias": np.zeros(3)})


def synthetic_pool(n: int, rng: np.random.Generator) -> tuple[np.ndarray, OutcomeTable, np.ndarray]:
    """Features carry the domain (first 2 dims) and easiness (third); the cheap model is good
    at math only, the strong model everywhere; harder questions fail more often."""
    math = rng.random(n) < 0.5
    easy = rng.normal(size=n)
    features = np.column_stack([math * 2.0 - 1.0, 1.0 - math * 2.0, easy, rng.normal(size=(n, 5))])
    features = features + rng.normal(scale=0.3, size=features.shape)
    logit = np.column_stack([np.where(math, 1.0, -2.0), np.full(n, 1.5)]) + easy[:, None]
    correct = (rng.random((n, 2)) < 1 / (1 + np.exp(-logit))).astype(float)
    correct[:20, 1] = np.nan  # missing records are skipped
    table = OutcomeTable(
        question_ids=tuple(map(str, range(n))),
        questions=tuple(f"q{i}" for i in range(n)),
        categories=np.where(math, "math", "law"),
        prompt_chars=np.full(n, 400.0),
        models=MODELS,
        correct=correct,
        output_chars=np.column_stack([np.full(n, 200.0), np.where(math, 800.0, 400.0)]),
        active_params_b=np.array([2.0, 40.0]),
    )
    return features.astype(np.float32), table, 1 / (1 + np.exp(-easy))


def test_fit_selector_learns_calibrated_per_domain_probabilities() -> None:
    pytest.importorskip("sklearn")
    from semrouter.train.selector import calibration, fit_selector

    rng = np.random.default_rng(0)
    features, table, easiness = synthetic_pool(3000, rng)
    selector = fit_selector(features[:2000], table.rows(np.arange(2000)), easiness[:2000], seed=0)
    held = table.rows(np.arange(2000, 3000))
    prediction = selector.predict(features[2000:], held.prompt_chars)
    math = held.categories == "math"
    # The cheap model's predicted accuracy follows the domain.
    assert prediction.p_correct[math, 0].mean() > prediction.p_correct[~math, 0].mean() + 0.3
    for j in range(2):
        c = calibration(prediction.p_correct[:, j], held.correct[:, j], np.full(len(held), 0.5))
        assert c.ece < 0.05
        assert c.log_loss < c.base_log_loss
    # Expected output length follows the per-domain means.
    strong_cost = prediction.expected_cost[:, 1]
    assert strong_cost[math].mean() == pytest.approx((400 + 800) / 4 * 40, rel=0.05)
    # Strong model's mean cost on train is the unit of cost_weight.
    assert selector.cost_scale == pytest.approx(table.cost[:2000, 1].mean())
    # The trade-off: cheap on math and strong on law at a moderate weight.
    choices = selector.predict(features[2000:], 400.0)
    picks = pick(choices.p_correct, choices.expected_cost, 0.2, selector.cost_scale)
    assert (picks[math] == 0).mean() > 0.8 and (picks[~math] == 1).mean() > 0.8


def test_fit_is_reproducible() -> None:
    pytest.importorskip("sklearn")
    from semrouter.train.selector import fit_selector

    features, table, easiness = synthetic_pool(600, np.random.default_rng(1))
    a = fit_selector(features, table, easiness, seed=3)
    b = fit_selector(features, table, easiness, seed=3)
    np.testing.assert_array_equal(a.head_weight, b.head_weight)


def test_shipped_reference_selector_loads() -> None:
    from semrouter.bench.replay import load_models
    from semrouter.train.data import DEFAULT_MMLU_DIR

    models_path = DEFAULT_MMLU_DIR / "models.json"
    if not models_path.is_file():
        pytest.skip("shared data not present")
    for pool in ("reference_pool", "fast_strong_pair"):
        selector = load_selector(pool)
        assert list(selector.models) == load_models(models_path)[pool]
        assert selector.feature_dim == 1920
        choice = selector.choose(np.zeros(1920, dtype=np.float32), 500, 0.0)
        assert choice.model in selector.models
