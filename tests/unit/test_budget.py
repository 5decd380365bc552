"""Cost budgets (semrouter.decide.budget): the planned weights hold a mean cost, the store of
budgets is bounded, and /api/v1/classify's probes are not counted."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from semrouter.config.schema import BudgetConfig
from semrouter.decide.budget import BUDGET_PROBE, BudgetBook, CostBudget


def requests(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three models (cheap, middle, dear): the dearer, the likelier right, more so on some
    requests than on others."""
    rng = np.random.default_rng(seed)
    hard = rng.random(n)
    p = np.column_stack([0.9 - 0.6 * hard, 0.9 - 0.3 * hard, 0.9 - 0.1 * hard])
    cost = np.column_stack([np.full(n, 1.0), np.full(n, 4.0), rng.uniform(8, 12, n)])
    return p, cost


def run(budget: CostBudget, p: np.ndarray, cost: np.ndarray) -> tuple[float, float]:
    chosen = [budget.choose(p[i], cost[i]) for i in range(len(p))]
    rows = np.arange(len(p))
    return float(cost[rows, chosen].mean()), float(p[rows, chosen].mean())


@pytest.mark.parametrize("target", [2.0, 5.0, 8.0])
def test_mean_cost_lands_on_the_target(target: float) -> None:
    p, cost = requests(5000)
    spent, _ = run(CostBudget(BudgetConfig(mean_cost_per_request=target), 4.0, 1.0), p, cost)
    assert abs(spent / target - 1) < 0.03


def test_it_does_at_least_as_well_as_the_fixed_weight_that_costs_as_much() -> None:
    p, cost = requests(5000)
    spent, accuracy = run(CostBudget(BudgetConfig(mean_cost_per_request=5.0), 4.0, 1.0), p, cost)
    rows = np.arange(len(p))
    fixed = []
    for weight in np.geomspace(1e-3, 10, 200):
        chosen = np.argmax(p - weight * cost / 4.0, axis=1)
        fixed.append((cost[rows, chosen].mean(), p[rows, chosen].mean()))
    nearest = min(fixed, key=lambda point: abs(point[0] - spent))
    assert accuracy >= nearest[1] - 0.005


def test_a_budget_that_does_not_bind_buys_the_most_accurate_choices() -> None:
    p, cost = requests(500)
    spent, accuracy = run(CostBudget(BudgetConfig(mean_cost_per_request=50.0), 4.0, 1.0), p, cost)
    assert accuracy == pytest.approx(p[:, 2].mean(), abs=0.01)
    assert spent < 12


def test_realised_costs_correct_the_plan() -> None:
    """The selector expects half of what requests really cost: the plan aims lower."""
    p, cost = requests(3000)
    budget = CostBudget(BudgetConfig(mean_cost_per_request=5.0), 4.0, 1.0)
    real = []
    for i in range(len(p)):
        j = budget.choose(p[i], cost[i] / 2)
        budget.realised(float(cost[i, j]))
        real.append(cost[i, j])
    assert abs(np.mean(real[500:]) / 5.0 - 1) < 0.05


def test_tokens_per_minute_divides_the_rate_by_the_arrivals() -> None:
    now = [0.0]
    config = BudgetConfig(tokens_per_minute=6000, window_requests=10)
    budget = CostBudget(config, 4.0, 1.0, clock=lambda: now[0])
    assert budget.target() == 6000  # no rate yet
    p, cost = requests(10)
    for i in range(10):
        now[0] = i * 6.0  # one request every 6 s: 10 a minute
        budget.choose(p[i], cost[i])
    assert budget.target() == pytest.approx(6000 * (54 / 60) / 10)


def test_probes_choose_but_are_not_counted() -> None:
    p, cost = requests(5)
    budget = CostBudget(BudgetConfig(mean_cost_per_request=5.0), 4.0, 1.0)
    token = BUDGET_PROBE.set(True)
    try:
        budget.choose(p[0], cost[0])
    finally:
        BUDGET_PROBE.reset(token)
    assert budget.requests == 0


def test_budgets_per_tenant_are_bounded() -> None:
    book = BudgetBook(BudgetConfig(mean_cost_per_request=5.0, per_tenant=True, max_tenants=3))
    for i in range(1000):
        book.get("decision", f"tenant-{i}", 4.0, 1.0)
    assert len(book) == 3
    shared = BudgetBook(BudgetConfig(mean_cost_per_request=5.0))
    assert shared.get("d", "a", 4.0, 1.0) is shared.get("d", "b", 4.0, 1.0)


def test_a_budget_names_exactly_one_target() -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        BudgetConfig()
    with pytest.raises(ValidationError, match="exactly one of"):
        BudgetConfig(mean_cost_per_request=1.0, tokens_per_minute=10.0)
