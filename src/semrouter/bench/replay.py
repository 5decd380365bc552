"""Offline routing replay on recorded MMLU-Pro outcomes (the RouterBench / RouteLLM method).

Owns: reading the shared outcome files into an ``OutcomeTable``; scoring a per-question choice
of model (accuracy and mean cost under the project's cost model, ``request_cost``); the
baselines (every single model of a pool, a per-category best-model table learned on the train
split, random mixing of the cheapest and the best model, the oracle); the accuracy-cost curve
of a scoring router such as the learned selector over a ``cost_weight`` sweep; and the curve
metrics APGR and CPT. No LLM is called: every figure is a replay of recorded outcomes.

Questions on which some pool model has no recorded outcome are left out of that pool's scoring
(``OutcomeTable.has_every_record``): a missing record is not a wrong answer (DeepSeek-Coder-V2 lacks
most of chemistry and engineering), so the scored set is the same for every policy.

Curve metrics follow RouteLLM. A router's points (and the cheapest model's, which any router
can fall back to) are reduced to their upper envelope, the concave hull of accuracy against
mean cost, reachable by randomly mixing two of the router's settings. With
``gain(b) = (acc(b) - acc_cheapest) / (acc_best - acc_cheapest)`` for a budget ``b``, APGR is
the mean gain over budgets spread evenly from the cheapest to the best single model's cost
(random mixing of the two scores 0.5; ``gain`` can exceed 1), and CPT(x) is the least mean
cost at which the envelope recovers the fraction x of the gap (None when it never does).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from semrouter.config.schema import BudgetConfig
from semrouter.decide.budget import CostBudget
from semrouter.decide.selector import LearnedSelector, pick, request_cost
from semrouter.train.data import DEFAULT_MMLU_DIR
from semrouter.train.splits import is_validation

Split = Literal["validation", "train", "all"]

DEFAULT_COST_WEIGHTS: tuple[float, ...] = (0.0, *np.geomspace(1e-3, 10.0, 49).tolist())
"""The ``cost_weight`` sweep for scoring routers and the per-category table."""

APGR_BUDGETS = 1001
"""Budgets (evenly spaced, cheapest to best model cost) APGR averages over."""


@dataclass(frozen=True)
class OutcomeTable:
    """Recorded outcomes of ``models`` on a set of questions; missing records are NaN.

    prompt_chars: characters of the question plus its options (the prompt of the cost model).
    correct, output_chars: (questions, models) float arrays; NaN where not recorded.
    active_params_b: (models,) active parameters in billions.
    """

    question_ids: tuple[str, ...]
    questions: tuple[str, ...]
    categories: np.ndarray
    prompt_chars: np.ndarray
    models: tuple[str, ...]
    correct: np.ndarray
    output_chars: np.ndarray
    active_params_b: np.ndarray

    def __len__(self) -> int:
        return len(self.question_ids)

    @property
    def cost(self) -> np.ndarray:
        """(questions, models) cost of each recorded answer; NaN where not recorded."""
        return request_cost(self.prompt_chars[:, None], self.output_chars, self.active_params_b)

    def rows(self, mask: np.ndarray) -> OutcomeTable:
        """The questions selected by a boolean mask or an index array."""
        index = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask)
        return OutcomeTable(
            question_ids=tuple(self.question_ids[i] for i in index),
            questions=tuple(self.questions[i] for i in index),
            categories=self.categories[index],
            prompt_chars=self.prompt_chars[index],
            models=self.models,
            correct=self.correct[index],
            output_chars=self.output_chars[index],
            active_params_b=self.active_params_b,
        )

    def columns(self, models: Sequence[str]) -> OutcomeTable:
        """The same questions with the outcomes of ``models`` only, in that order."""
        index = [self.models.index(m) for m in models]
        return replace(
            self,
            models=tuple(models),
            correct=self.correct[:, index],
            output_chars=self.output_chars[:, index],
            active_params_b=self.active_params_b[index],
        )

    def split(self, split: Split) -> OutcomeTable:
        """The project's train or validation questions (``semrouter.train.splits``), or all."""
        if split == "all":
            return self
        validation = np.array([is_validation(q) for q in self.question_ids], dtype=bool)
        return self.rows(validation if split == "validation" else ~validation)

    @property
    def has_every_record(self) -> np.ndarray:
        """(questions,) mask: every model has a recorded outcome for the question."""
        mask: np.ndarray = ~np.isnan(self.correct).any(axis=1)
        return mask

    @property
    def share_correct(self) -> np.ndarray:
        """(questions,) share of correct answers among the recorded ones (NaN: none)."""
        recorded = (~np.isnan(self.correct)).sum(axis=1)
        right = np.nansum(self.correct, axis=1)
        return np.where(recorded > 0, right / np.maximum(recorded, 1), np.nan)


def load_models(models_path: str | Path) -> dict[str, Any]:
    """The parsed ``models.json``: ``models`` (parameter counts) and the named pools."""
    data: dict[str, Any] = json.loads(Path(models_path).read_text(encoding="utf-8"))
    return data


def resolve_pool(models_path: str | Path, pool: str | Sequence[str]) -> tuple[str, ...]:
    """A pool given by name (a list in models.json, e.g. 'reference_pool') or as model names."""
    data = load_models(models_path)
    if isinstance(pool, str):
        names = data.get(pool)
        if not isinstance(names, list):
            pools = sorted(k for k, v in data.items() if isinstance(v, list))
            raise KeyError(f"no pool '{pool}' in {models_path} (pools: {', '.join(pools)})")
        pool = names
    unknown = [m for m in pool if data["models"].get(m, {}).get("active_params_b") is None]
    if unknown:
        raise ValueError(f"models without an active parameter count: {', '.join(unknown)}")
    return tuple(pool)


def load_outcome_table(
    questions_path: str | Path,
    outcomes_path: str | Path,
    models_path: str | Path,
    models: str | Sequence[str],
) -> OutcomeTable:
    """All questions of ``questions_path`` with the outcomes of ``models`` (a pool name or names).

    ``outcomes_path`` is a CSV (gzipped if it ends in .gz) with columns question_id, model,
    correct, output_chars; rows of other models or of unknown questions are ignored.
    """
    pool = resolve_pool(models_path, models)
    params = load_models(models_path)["models"]
    ids: list[str] = []
    texts: list[str] = []
    categories: list[str] = []
    prompt_chars: list[int] = []
    with open(questions_path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                q = json.loads(line)
                ids.append(str(q["question_id"]))
                texts.append(q["question"])
                categories.append(q["category"])
                prompt_chars.append(len(q["question"]) + sum(len(o) for o in q["options"]))
    row = {qid: i for i, qid in enumerate(ids)}
    column = {m: j for j, m in enumerate(pool)}
    correct = np.full((len(ids), len(pool)), np.nan)
    output_chars = np.full((len(ids), len(pool)), np.nan)
    opener = gzip.open if str(outcomes_path).endswith(".gz") else open
    with opener(outcomes_path, "rt", encoding="utf-8") as handle:
        header = handle.readline().strip().split(",")
        at = {
            name: header.index(name) for name in ("question_id", "model", "correct", "output_chars")
        }
        for line in handle:
            cells = line.rstrip("\n").split(",")
            i = row.get(cells[at["question_id"]])
            j = column.get(cells[at["model"]])
            if i is not None and j is not None:
                correct[i, j] = float(cells[at["correct"]])
                output_chars[i, j] = float(cells[at["output_chars"]])
    return OutcomeTable(
        question_ids=tuple(ids),
        questions=tuple(texts),
        categories=np.array(categories),
        prompt_chars=np.array(prompt_chars, dtype=np.float64),
        models=pool,
        correct=correct,
        output_chars=output_chars,
        active_params_b=np.array([float(params[m]["active_params_b"]) for m in pool]),
    )


@dataclass(frozen=True)
class Point:
    """One policy setting: its accuracy and mean cost on the scored questions.

    knob: the setting's parameter (cost_weight, or the best model's share for random mixing).
    """

    label: str
    accuracy: float
    cost: float
    knob: float | None = None


def evaluate_choice(
    table: OutcomeTable, choice: np.ndarray, label: str, knob: float | None = None
) -> Point:
    """Accuracy and mean cost when question i goes to model ``choice[i]`` (complete table)."""
    rows = np.arange(len(table))
    return Point(
        label,
        float(table.correct[rows, choice].mean()),
        float(table.cost[rows, choice].mean()),
        knob,
    )


def single_model_points(table: OutcomeTable) -> list[Point]:
    """Every model answering every question, in pool order."""
    return [
        evaluate_choice(table, np.full(len(table), j), model)
        for j, model in enumerate(table.models)
    ]


def cheapest_and_best(singles: Sequence[Point]) -> tuple[Point, Point]:
    """The single model of least mean cost, and the most accurate one (ties: the cheaper)."""
    cheapest = min(singles, key=lambda p: (p.cost, -p.accuracy))
    best = max(singles, key=lambda p: (p.accuracy, -p.cost))
    return cheapest, best


def oracle_point(table: OutcomeTable) -> Point:
    """Each question to its cheapest correct model, or to its cheapest model if none is."""
    cost = table.cost
    right = np.where(table.correct == 1, cost, np.inf)
    choice = np.where(np.isfinite(right).any(axis=1), right.argmin(axis=1), cost.argmin(axis=1))
    return evaluate_choice(table, choice, "oracle")


def random_mix_points(cheapest: Point, best: Point, steps: int = 11) -> list[Point]:
    """Sending a random share t of requests to the best model and the rest to the cheapest.

    Expected figures, exact by linearity: a straight line between the two models' points.
    """
    return [
        Point(
            "random_mix",
            (1 - t) * cheapest.accuracy + t * best.accuracy,
            (1 - t) * cheapest.cost + t * best.cost,
            float(t),
        )
        for t in np.linspace(0.0, 1.0, steps)
    ]


def best_model_cost_scale(table: OutcomeTable) -> float:
    """Mean cost of the most accurate model (accuracy over its recorded answers)."""
    accuracy = np.nanmean(table.correct, axis=0)
    return float(np.nanmean(table.cost[:, int(np.argmax(accuracy))]))


def _category_means(train: OutcomeTable, categories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per question of ``categories``: each model's train accuracy and mean cost in that
    category, (questions, models) each; a category absent from train gets the whole-train
    means."""
    overall = (np.nanmean(train.correct, axis=0), np.nanmean(train.cost, axis=0))
    by_category: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for category in np.unique(train.categories).tolist():
        rows = train.categories == category
        by_category[category] = (
            np.nanmean(train.correct[rows], axis=0),
            np.nanmean(train.cost[rows], axis=0),
        )
    stats = [by_category.get(c, overall) for c in categories]
    return np.array([s[0] for s in stats]), np.array([s[1] for s in stats])


def category_table_points(
    train: OutcomeTable,
    test: OutcomeTable,
    cost_weights: Sequence[float] = DEFAULT_COST_WEIGHTS,
) -> list[Point]:
    """Per-category best-model table: each category to the model that maximises, on ``train``,
    ``accuracy - cost_weight * mean_cost / cost_scale`` (the selector's rule with per-category
    means in place of per-question predictions). Uses the true category of each test question;
    a category absent from train falls back to the whole-train means."""
    if train.models != test.models:
        raise ValueError("train and test tables must cover the same models in the same order")
    scale = best_model_cost_scale(train)
    p, cost = _category_means(train, test.categories)
    return [
        evaluate_choice(test, pick(p, cost, w, scale), "category_table", w) for w in cost_weights
    ]


Privilege = Literal["difficulty", "outcomes"]


def _privileged_inputs(
    others: OutcomeTable, categories: np.ndarray, domains: np.ndarray, fill: np.ndarray
) -> np.ndarray:
    one_hot = (categories[:, None] == domains[None, :]).astype(np.float64)
    answers = np.where(np.isnan(others.correct), fill, others.correct)
    return np.hstack([one_hot, answers])


def privileged_points(
    train: OutcomeTable,
    test: OutcomeTable,
    train_others: OutcomeTable,
    test_others: OutcomeTable,
    privilege: Privilege,
    cost_weights: Sequence[float] = DEFAULT_COST_WEIGHTS,
) -> list[Point]:
    """A reference curve, not a router: what the selector's rule reaches with information that
    no request text carries. Per pool model, a logistic regression (fitted on ``train``)
    predicts correctness from the question's true category and, from the models outside the
    pool (``*_others``, rows aligned with ``train`` and ``test``), either their share of
    correct answers (``difficulty``: a perfect reading of how hard the question is) or each
    one's correctness (``outcomes``). Costs are per-category train means, as in
    ``category_table_points``. A selector reading request text can only approach these."""
    from sklearn.linear_model import LogisticRegression

    if len(train) != len(train_others) or len(test) != len(test_others):
        raise ValueError("the other models' tables must have the same rows as train and test")
    if privilege == "difficulty":
        train_others, test_others = (
            replace(t, models=("difficulty",), correct=t.share_correct[:, None])
            for t in (train_others, test_others)
        )
    fill = np.nanmean(train_others.correct, axis=0)
    domains = np.unique(train.categories)
    x_train = _privileged_inputs(train_others, train.categories, domains, fill)
    x_test = _privileged_inputs(test_others, test.categories, domains, fill)
    p = np.zeros((len(test), len(train.models)))
    for j in range(len(train.models)):
        seen = ~np.isnan(train.correct[:, j])
        head = LogisticRegression(max_iter=2000).fit(x_train[seen], train.correct[seen, j])
        p[:, j] = head.predict_proba(x_test)[:, list(head.classes_).index(1.0)]
    _, cost = _category_means(train, test.categories)
    scale = best_model_cost_scale(train)
    label = f"privileged_{privilege}"
    return [evaluate_choice(test, pick(p, cost, w, scale), label, w) for w in cost_weights]


class ScoringRouter(Protocol):
    """A router that scores every model of ``models`` per question; replay sweeps its trade-off.

    ``score`` returns (p_correct, expected_cost), both (questions, models); the choice is then
    ``pick(p_correct, expected_cost, cost_weight, cost_scale)``.
    """

    @property
    def models(self) -> tuple[str, ...]: ...

    @property
    def cost_scale(self) -> float: ...

    def score(
        self, questions: Sequence[str], prompt_chars: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class SelectorRouter:
    """The learned selector as a ``ScoringRouter``; ``featurize`` maps question texts to the
    selector's input vectors, the embedding engine's ``Encoded.features``, e.g.
    ``lambda texts: semrouter.train.features.encode_texts(embedder, list(texts)).features``."""

    selector: LearnedSelector
    featurize: Callable[[Sequence[str]], np.ndarray]

    @property
    def models(self) -> tuple[str, ...]:
        return self.selector.models

    @property
    def cost_scale(self) -> float:
        return self.selector.cost_scale

    def score(
        self, questions: Sequence[str], prompt_chars: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        prediction = self.selector.predict(self.featurize(questions), prompt_chars)
        return prediction.p_correct, prediction.expected_cost


def router_points(
    table: OutcomeTable,
    router: ScoringRouter,
    cost_weights: Sequence[float] = DEFAULT_COST_WEIGHTS,
    label: str = "selector",
) -> list[Point]:
    """The router's accuracy and mean cost at each ``cost_weight``."""
    if tuple(router.models) != table.models:
        raise ValueError(f"router models {router.models} differ from the pool {table.models}")
    p, expected = router.score(table.questions, table.prompt_chars)
    return [
        evaluate_choice(table, pick(p, expected, w, router.cost_scale), label, w)
        for w in cost_weights
    ]


def upper_envelope(points: Sequence[Point]) -> tuple[np.ndarray, np.ndarray]:
    """(costs, accuracies) of the concave upper hull of the points, up to the most accurate one.

    Between two hull vertices accuracy is linear in cost (random mixing of the two settings);
    past the last vertex more budget buys nothing.
    """
    if not points:
        raise ValueError("no points")
    ordered = sorted({(p.cost, p.accuracy) for p in points}, key=lambda ca: (ca[0], -ca[1]))
    hull: list[tuple[float, float]] = []
    for c, a in ordered:
        if hull and c == hull[-1][0]:
            continue  # same cost, lower accuracy
        while len(hull) >= 2:
            (c1, a1), (c2, a2) = hull[-2], hull[-1]
            # Drop the middle vertex when it lies under the chord, or on it up to rounding.
            if (a2 - a1) * (c - c1) <= (a - a1) * (c2 - c1) + 1e-12 * (c - c1):
                hull.pop()
            else:
                break
        hull.append((c, a))
    top = max(range(len(hull)), key=lambda i: hull[i][1])
    costs, accuracies = zip(*hull[: top + 1], strict=True)
    return np.array(costs), np.array(accuracies)


def envelope_accuracy(points: Sequence[Point], budgets: np.ndarray) -> np.ndarray:
    """Envelope accuracy at each mean-cost budget (NaN below the cheapest point)."""
    costs, accuracies = upper_envelope(points)
    out = np.interp(budgets, costs, accuracies)
    return np.where(budgets < costs[0], np.nan, out)


@dataclass(frozen=True)
class CurveMetrics:
    """APGR and the mean costs to recover 50% / 80% of the cheapest-to-best quality gap."""

    apgr: float
    cpt50: float | None
    cpt80: float | None


def cost_to_reach(
    points: Sequence[Point], cheapest: Point, best: Point, fraction: float
) -> float | None:
    """CPT: least mean cost whose envelope accuracy recovers ``fraction`` of the gap."""
    target = cheapest.accuracy + fraction * (best.accuracy - cheapest.accuracy)
    costs, accuracies = upper_envelope([*points, cheapest])
    if accuracies[-1] < target:
        return None
    i = int(np.argmax(accuracies >= target))
    if i == 0:
        return float(costs[0])
    share = (target - accuracies[i - 1]) / (accuracies[i] - accuracies[i - 1])
    return float(costs[i - 1] + share * (costs[i] - costs[i - 1]))


def curve_metrics(points: Sequence[Point], cheapest: Point, best: Point) -> CurveMetrics:
    """APGR, CPT(50%) and CPT(80%) of a policy's points against a pool's cheapest/best models."""
    if best.accuracy <= cheapest.accuracy or best.cost <= cheapest.cost:
        raise ValueError("the best model must be more accurate and dearer than the cheapest")
    budgets = np.linspace(cheapest.cost, best.cost, APGR_BUDGETS)
    accuracy = envelope_accuracy([*points, cheapest], budgets)
    gain = (accuracy - cheapest.accuracy) / (best.accuracy - cheapest.accuracy)
    return CurveMetrics(
        apgr=float(np.mean(gain)),
        cpt50=cost_to_reach(points, cheapest, best, 0.5),
        cpt80=cost_to_reach(points, cheapest, best, 0.8),
    )


@dataclass(frozen=True)
class ScenarioReport:
    """Every figure of one pool's replay. ``curves`` maps a policy name to its points, and
    ``metrics`` holds the APGR/CPT of each curve."""

    pool: tuple[str, ...]
    split: str
    questions: int
    left_out: int
    singles: list[Point]
    oracle: Point
    cheapest: Point
    best: Point
    curves: dict[str, list[Point]] = field(default_factory=dict)
    metrics: dict[str, CurveMetrics] = field(default_factory=dict)
    budgets: list[BudgetRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (points as dicts)."""
        return asdict(self)

    def lines(self) -> list[str]:
        """A plain-text table of every figure."""
        out = [
            f"pool: {', '.join(self.pool)}",
            f"split: {self.split}, {self.questions} questions scored "
            f"({self.left_out} left out: some pool model has no record)",
            f"{'policy':32s} {'accuracy':>8s} {'mean cost':>10s}",
        ]
        for p in [*self.singles, self.oracle]:
            out.append(f"{p.label:32s} {p.accuracy:8.4f} {p.cost:10.0f}")
        out.append(f"cheapest: {self.cheapest.label}; best: {self.best.label}")
        for name, points in self.curves.items():
            m = self.metrics[name]
            cpt = [f"{c:.0f}" if c is not None else "never" for c in (m.cpt50, m.cpt80)]
            out.append(f"{name}: APGR {m.apgr:.3f}, CPT(50%) {cpt[0]}, CPT(80%) {cpt[1]}")
            costs, accuracies = upper_envelope(points)
            out.append(
                "  envelope: "
                + ", ".join(f"{a:.3f}@{c:.0f}" for c, a in zip(costs, accuracies, strict=True))
            )
        for run in self.budgets:
            out.append(
                f"budget {run.budget:.0f}: mean cost {run.cost:.0f} ({run.cost_error:+.1%}), "
                f"accuracy {run.accuracy:.4f}; fixed weights' hull at that cost "
                f"{run.envelope:.4f} ({run.accuracy - run.envelope:+.4f}), best fixed weight "
                f"within it {run.best_fixed:.4f} ({run.accuracy - run.best_fixed:+.4f}); "
                "seeds' cost error "
                f"{run.cost_error_min:+.1%}..{run.cost_error_max:+.1%}"
                + ("" if run.binds else "; the budget does not bind (above the w=0 cost)")
            )
        return out


@dataclass(frozen=True)
class BudgetRun:
    """The budget mode (semrouter.decide.budget) replayed at one budget: the mean over seeds
    (question orders) of accuracy and realised mean cost; at that cost on the same questions,
    in hindsight, the concave hull of the selector's fixed cost weights (`envelope`: mixing two
    weights chosen afterwards) and the best one fixed weight that costs no more
    (`best_fixed`)."""

    budget: float
    accuracy: float
    cost: float
    cost_error: float
    cost_error_min: float
    cost_error_max: float
    envelope: float
    best_fixed: float
    binds: bool


def budget_runs(
    table: OutcomeTable,
    router: ScoringRouter,
    budgets: Sequence[float],
    fixed: Sequence[Point],
    seeds: int = 5,
    config: BudgetConfig | None = None,
) -> list[BudgetRun]:
    """Each budget as the router runs it: the questions arrive in a random order (per seed),
    each is routed at the weight the budget plans, and its recorded cost is fed back."""
    p, expected = router.score(table.questions, table.prompt_chars)
    cost = table.cost
    most = fixed[0].cost if fixed else float("inf")  # cost_weight 0: the dearest setting
    runs = []
    for budget in budgets:
        settings = (config or BudgetConfig(mean_cost_per_request=budget)).model_copy(
            update={"mean_cost_per_request": budget, "tokens_per_minute": None}
        )
        accuracies, costs = [], []
        for seed in range(seeds):
            planner = CostBudget(settings, router.cost_scale, initial_weight=1.0)
            right = spent = 0.0
            for i in np.random.default_rng(seed).permutation(len(table)):
                j = planner.choose(p[i], expected[i])
                planner.realised(float(cost[i, j]))
                right += table.correct[i, j]
                spent += cost[i, j]
            accuracies.append(right / len(table))
            costs.append(spent / len(table))
        mean_cost = float(np.mean(costs))
        runs.append(
            BudgetRun(
                budget=float(budget),
                accuracy=float(np.mean(accuracies)),
                cost=mean_cost,
                cost_error=mean_cost / budget - 1,
                cost_error_min=min(costs) / budget - 1,
                cost_error_max=max(costs) / budget - 1,
                envelope=float(envelope_accuracy(list(fixed), np.array([mean_cost]))[0]),
                best_fixed=max(
                    (p.accuracy for p in fixed if p.cost <= mean_cost), default=float("nan")
                ),
                binds=budget < most,
            )
        )
    return runs


def default_budgets(singles: Sequence[Point], count: int = 5) -> list[float]:
    """`count` budgets evenly inside (cheapest, dearest) single model's mean cost."""
    low, high = min(p.cost for p in singles), max(p.cost for p in singles)
    return [float(b) for b in np.linspace(low, high, count + 2)[1:-1]]


def replay(
    questions_path: str | Path,
    outcomes_path: str | Path,
    models_path: str | Path,
    pool: str | Sequence[str],
    router: ScoringRouter | None = None,
    *,
    split: Split = "validation",
    cost_weights: Sequence[float] = DEFAULT_COST_WEIGHTS,
    budgets: Sequence[float] | Literal["auto"] = (),
) -> ScenarioReport:
    """Replays one pool on the ``split`` questions that every pool model has a record for.

    pool: a pool name in models.json ('reference_pool', 'fast_strong_pair') or model names.
    router: a ``ScoringRouter`` over exactly the pool's models (e.g. ``SelectorRouter``), or
    None for the baselines only. The per-category table learns from the train split.
    """
    pool = resolve_pool(models_path, pool)
    parameters = load_models(models_path)["models"]
    others = [m for m, p in parameters.items() if p.get("active_params_b") and m not in pool]
    everyone = load_outcome_table(questions_path, outcomes_path, models_path, [*pool, *others])
    table = everyone.columns(pool)
    scored = table.split(split)
    complete = scored.has_every_record
    test = scored.rows(complete)
    train = table.split("train")
    singles = single_model_points(test)
    cheapest, best = cheapest_and_best(singles)
    curves = {
        "random_mix": random_mix_points(cheapest, best),
        "category_table": category_table_points(train, test, cost_weights),
    }
    if others:
        train_others = everyone.split("train").columns(others)
        test_others = everyone.split(split).rows(complete).columns(others)
        for privilege in ("difficulty", "outcomes"):
            curves[f"privileged_{privilege}"] = privileged_points(
                train, test, train_others, test_others, privilege, cost_weights
            )
    runs: list[BudgetRun] = []
    if router is not None:
        curves["selector"] = router_points(test, router, cost_weights)
        if budgets:
            wanted = default_budgets(singles) if budgets == "auto" else list(budgets)
            runs = budget_runs(test, router, wanted, [*curves["selector"], cheapest])
    return ScenarioReport(
        pool=table.models,
        split=split,
        questions=len(test),
        left_out=len(scored) - len(test),
        singles=singles,
        oracle=oracle_point(test),
        cheapest=cheapest,
        best=best,
        curves=curves,
        metrics={name: curve_metrics(points, cheapest, best) for name, points in curves.items()},
        budgets=runs,
    )


def _plot(reports: dict[str, ScenarioReport], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(6.5 * len(reports), 4.8), squeeze=False)
    for ax, (name, report) in zip(axes[0], reports.items(), strict=True):
        for curve, points in report.curves.items():
            costs, accuracies = upper_envelope(points)
            style = "--" if curve.startswith("privileged") else "-"
            ax.plot(costs, accuracies, style, marker=".", label=curve)
        for p in report.singles:
            ax.scatter(p.cost, p.accuracy, s=12, color="grey")
            ax.annotate(p.label, (p.cost, p.accuracy), fontsize=6)
        ax.set_title(f"{name} ({report.split}, {report.questions} questions)")
        ax.set_xlabel("mean cost (README cost model)")
        ax.set_ylabel("accuracy")
        ax.set_xscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run(args: Any) -> int:
    """`semrouter bench replay`: both scenarios, every baseline, the learned selector's curve."""
    from semrouter.decide.selector import load_selector
    from semrouter.embed import create_embedder
    from semrouter.train.features import encode_texts

    questions = args.questions or DEFAULT_MMLU_DIR / "questions.jsonl"
    outcomes = args.outcomes or DEFAULT_MMLU_DIR / "outcomes.csv.gz"
    models = args.models or DEFAULT_MMLU_DIR / "models.json"
    embedder = create_embedder()
    reports: dict[str, ScenarioReport] = {}
    for pool in args.pools.split(","):
        selector = load_selector(
            args.selector_dir / f"selector_{pool}.npz" if args.selector_dir else pool
        )
        router = SelectorRouter(
            selector, lambda texts: encode_texts(embedder, list(texts)).features
        )
        reports[pool] = replay(
            questions, outcomes, models, pool, router, split=args.split, budgets=args.budget
        )
        print(f"## {pool}")
        print("\n".join(reports[pool].lines()))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({name: r.to_dict() for name, r in reports.items()}, indent=1))
    if args.plot:
        _plot(reports, Path(args.plot))
    return 0
