"""Cost budgets: the learned selector's cost weight chosen per request to hold a mean cost.

A fixed `cost_weight` is one point on the selector's accuracy-cost curve, and which point depends
on the traffic. A budget states the cost instead. `CostBudget` keeps the selector's predictions
(probability of a correct answer and expected cost, per model) for the last `window_requests`
requests and, every `replan_every` requests, plans on them: for a grid of weights, the mean
cost and the expected accuracy (mean probability of the chosen models) their choices would
have had; the upper concave hull of those points; the two hull vertices around the target; and
the share of requests to route at the dearer one so that the mean is the target. Routing a
share of requests at each of two settings is random mixing, so the policy lands on the
selector's upper envelope at the budget, not on one fixed weight's point. The share is spent
deterministically (a running sum), not by a random draw.

What the window's requests really cost can differ from what the selector expected (its output
lengths are averages); `record` takes the realised cost when it is known and the plan targets
`target * expected / realised` over the window, so the realised mean converges on the target.

Two kinds of target (`budget` in the config):
- `mean_cost_per_request`: the project's cost model (tokens x active parameters in billions,
  see `selector.request_cost`), per request a selector routes;
- `tokens_per_minute`: prompt + expected output tokens per minute; the per-request target is
  the rate divided by the requests per minute seen over the window.

`BudgetBook` keeps one budget per decision with a selector, globally or per tenant (an LRU of
`max_tenants`). Nothing here blocks: a replan is 64 argmaxes over at most `window_requests`
rows (about 2 ms for 500 requests and 8 models, once every `replan_every` requests).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from semrouter.config.schema import BudgetConfig

CURRENT_TENANT: ContextVar[str | None] = ContextVar("semrouter_budget_tenant", default=None)
"""The tenant of the request being routed (set by the pipeline), whose budget applies."""

BUDGET_PROBE: ContextVar[bool] = ContextVar("semrouter_budget_probe", default=False)
"""True while /api/v1/classify routes: the budget chooses but records nothing."""

MIN_WEIGHT = 1e-4
"""Below this a weight chooses as 0 does (the most likely right model); the search's floor."""
MAX_WEIGHT = 100.0
"""Above this every request goes to the cheapest model anyway; the search's ceiling."""
_GRID: tuple[float, ...] = tuple(np.geomspace(MIN_WEIGHT, MAX_WEIGHT, 64).tolist())
"""The weights a plan chooses among (from the dearest setting to the cheapest)."""
_CORRECTION = (0.5, 2.0)
"""The realised/expected cost correction is kept within these factors."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Route a `share_low` of requests at `low` (dearer) and the rest at `high`."""

    low: float
    high: float
    share_low: float


class CostBudget:
    """The cost weight that holds one budget. Not thread-safe: the router calls it from the
    event loop only."""

    def __init__(
        self,
        config: BudgetConfig,
        cost_scale: float,
        initial_weight: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.cost_scale = cost_scale
        start = min(max(initial_weight, MIN_WEIGHT), MAX_WEIGHT)
        self.plan = Plan(start, start, 0.0)
        self._clock = clock
        size = config.window_requests
        self._p: deque[np.ndarray] = deque(maxlen=size)
        self._cost: deque[np.ndarray] = deque(maxlen=size)
        self._expected: deque[float] = deque(maxlen=size)
        self._realised: deque[float] = deque(maxlen=size)
        self._arrivals: deque[float] = deque(maxlen=size)
        self._since_plan = 0
        self._debt = 0.0
        self.requests = 0

    def target(self) -> float:
        """The cost per request the budget allows now (in its own unit)."""
        if self.config.mean_cost_per_request is not None:
            return self.config.mean_cost_per_request
        assert self.config.tokens_per_minute is not None  # one of the two (schema)
        if len(self._arrivals) < 2:
            return self.config.tokens_per_minute  # no rate yet: a minute's worth per request
        span_min = max(self._clock() - self._arrivals[0], 1e-3) / 60.0
        return self.config.tokens_per_minute * span_min / len(self._arrivals)

    def weight(self) -> float:
        """The cost weight for the next request."""
        self._debt += self.plan.share_low
        if self._debt >= 1.0:
            self._debt -= 1.0
            return self.plan.low
        return self.plan.high

    def choose(self, p_correct: np.ndarray, cost: np.ndarray) -> int:
        """The model (column) for one request from the selector's row for it: each model's
        probability of a correct answer and expected cost in the budget's unit."""
        if BUDGET_PROBE.get():
            return int(np.argmax(p_correct - self.plan.high * cost / self.cost_scale))
        chosen = int(np.argmax(p_correct - self.weight() * cost / self.cost_scale))
        expected = float(cost[chosen])
        self._p.append(np.asarray(p_correct, dtype=np.float64))
        self._cost.append(np.asarray(cost, dtype=np.float64))
        self._expected.append(expected)
        self._realised.append(expected)
        if self.config.tokens_per_minute is not None:
            self._arrivals.append(self._clock())
        self.requests += 1
        self._since_plan += 1
        if self._since_plan >= self.config.replan_every or self.requests == 1:
            self._since_plan = 0
            self.plan = self._replan()
        return chosen

    def realised(self, cost: float) -> None:
        """What the request `choose` routed last really cost (once known), in the same unit."""
        if self._realised:
            self._realised[-1] = cost

    def _replan(self) -> Plan:
        """On the window: each grid weight's mean cost and expected accuracy (the mean
        probability of its choices), their upper concave hull, and the two hull vertices around
        the goal; between two vertices accuracy is linear in cost, so mixing them is the best
        any mix of fixed weights can do at that cost."""
        p, cost = np.vstack(self._p), np.vstack(self._cost)
        correction = float(np.mean(self._expected)) / max(float(np.mean(self._realised)), 1e-9)
        goal = self.target() * min(max(correction, _CORRECTION[0]), _CORRECTION[1])
        rows = np.arange(len(p))
        spends, accuracies = [], []
        for weight in _GRID:
            chosen = np.argmax(p - weight * cost / self.cost_scale, axis=1)
            spends.append(float(cost[rows, chosen].mean()))
            accuracies.append(float(p[rows, chosen].mean()))
        hull = _upper_hull(spends, accuracies)  # indices into _GRID, by rising cost
        if spends[hull[-1]] <= goal:  # the budget does not bind: the most accurate setting
            return Plan(_GRID[hull[-1]], _GRID[hull[-1]], 0.0)
        if spends[hull[0]] >= goal:  # it cannot be met: the cheapest setting
            return Plan(_GRID[hull[0]], _GRID[hull[0]], 0.0)
        above = next(i for i in hull if spends[i] > goal)
        below = hull[hull.index(above) - 1]
        share = (goal - spends[below]) / (spends[above] - spends[below])
        return Plan(_GRID[above], _GRID[below], share)

    def summary(self) -> dict[str, float]:
        """What /api/v1/classify shows of it."""
        realised = float(np.mean(self._realised)) if self._realised else 0.0
        return {
            "target": round(self.target(), 3),
            "window_mean_cost": round(realised, 3),
            "cost_weight_low": round(self.plan.low, 6),
            "cost_weight_high": round(self.plan.high, 6),
            "share_low": round(self.plan.share_low, 4),
        }


def _upper_hull(costs: list[float], accuracies: list[float]) -> list[int]:
    """Indices of the points on the upper concave hull of accuracy against cost, by rising
    cost, up to the most accurate point (a dearer point that is less accurate is not on it)."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -accuracies[i]))
    hull: list[int] = []
    for i in order:
        if hull and costs[i] == costs[hull[-1]]:
            continue
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (accuracies[b] - accuracies[a]) * (costs[i] - costs[a]) - (
                accuracies[i] - accuracies[a]
            ) * (costs[b] - costs[a])
            if cross <= 0:  # b lies on or under the chord from a to i
                hull.pop()
            else:
                break
        hull.append(i)
    top = max(range(len(hull)), key=lambda k: accuracies[hull[k]])
    return hull[: top + 1]


class BudgetBook:
    """The budgets of one config: per decision with a selector, and per tenant when asked."""

    def __init__(self, config: BudgetConfig) -> None:
        self.config = config
        self._budgets: OrderedDict[tuple[str, str | None], CostBudget] = OrderedDict()

    def get(
        self, decision: str, tenant: str | None, cost_scale: float, initial_weight: float
    ) -> CostBudget:
        key = (decision, tenant if self.config.per_tenant else None)
        budget = self._budgets.get(key)
        if budget is not None:
            self._budgets.move_to_end(key)
            return budget
        budget = self._budgets[key] = CostBudget(self.config, cost_scale, initial_weight)
        if len(self._budgets) > self.config.max_tenants:
            self._budgets.popitem(last=False)
        return budget

    def __len__(self) -> int:
        return len(self._budgets)
