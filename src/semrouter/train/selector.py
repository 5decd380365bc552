"""Training the learned model selector (``semrouter.decide.selector``) from recorded outcomes.

Owns the fit and the validation report of a pool's selector artifact. Input text is the
MMLU-Pro question alone (no options): at routing time the selector sees a user's chat message,
and options lists would teach it cues such messages lack. Features are the embedding engine's
``Encoded.features`` (cached by ``semrouter.train.features.encode_texts``).

The fit, on the train split only, is stacked so that the final heads see the same kind of
inputs in training as at routing time:

1. a domain head (multinomial logistic regression, 14 MMLU-Pro categories) and an easiness
   head (ridge regression of the share of models, pool or not, that answer a question
   correctly: every model of models.json with a parameter count, 27 of 29) on standardised
   features, with 5-fold out-of-fold predictions on train;
2. per pool model, a logistic head from ``[domain probabilities, standardised easiness]``
   (out-of-fold) to its recorded correctness, so its probabilities are calibrated;
3. expected output characters per model and category, and the cost scale (mean cost of the
   pool's most accurate model on train).

The report checks calibration on the validation split (log loss against the per-category
base rate, Brier score, expected calibration error and a reliability table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold

from semrouter.bench.replay import (
    OutcomeTable,
    best_model_cost_scale,
    load_models,
    load_outcome_table,
    resolve_pool,
)
from semrouter.decide.selector import LearnedSelector
from semrouter.embed.base import Embedder
from semrouter.train.splits import is_validation

FOLDS = 5
DOMAIN_C = 1.0
EASINESS_ALPHA = 3000.0
HEAD_C = 1.0
RELIABILITY_BINS = 10


def _stage_one(
    x: np.ndarray, categories: np.ndarray, easiness: np.ndarray, domains: Sequence[str], seed: int
) -> tuple[LogisticRegression, Ridge, np.ndarray, np.ndarray]:
    """Domain and easiness heads fitted on all rows, and their out-of-fold outputs."""
    labels = np.searchsorted(np.asarray(domains), categories)

    def fit(rows: np.ndarray) -> tuple[LogisticRegression, Ridge]:
        domain = LogisticRegression(C=DOMAIN_C, max_iter=3000).fit(x[rows], labels[rows])
        return domain, Ridge(alpha=EASINESS_ALPHA).fit(x[rows], easiness[rows])

    oof_domains = np.zeros((len(x), len(domains)))
    oof_easiness = np.zeros(len(x))
    for fit_rows, held_out in KFold(FOLDS, shuffle=True, random_state=seed).split(x):
        domain, ridge = fit(fit_rows)
        oof_domains[np.ix_(held_out, domain.classes_)] = domain.predict_proba(x[held_out])
        oof_easiness[held_out] = ridge.predict(x[held_out])
    domain, ridge = fit(np.arange(len(x)))
    if len(domain.classes_) != len(domains):
        raise ValueError("every category needs training questions")
    return domain, ridge, oof_domains, oof_easiness


def _softmax_parameters(model: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    """(classes, d) weights and (classes,) biases whose softmax equals ``predict_proba``
    (a two-class model stores one logit: split it as -z/2, +z/2)."""
    if model.coef_.shape[0] == 1:
        return np.vstack([-model.coef_, model.coef_]) / 2, np.r_[
            -model.intercept_, model.intercept_
        ] / 2
    return model.coef_, model.intercept_


def fit_selector(
    features: np.ndarray,
    pool: OutcomeTable,
    easiness: np.ndarray,
    seed: int = 0,
    info: dict[str, object] | None = None,
) -> LearnedSelector:
    """Fits a selector on training rows: ``features`` (n, d) of the questions of ``pool`` (the
    pool's outcome table, NaN where not recorded) and each question's ``easiness`` target
    (share of correct answers among all recorded models)."""
    domains = tuple(sorted(set(pool.categories.tolist())))
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-3  # some dims are constant
    x = (features - mean) / scale
    domain, ridge, oof_domains, oof_easiness = _stage_one(
        x, pool.categories, easiness, domains, seed
    )
    e_mean, e_sd = float(oof_easiness.mean()), float(oof_easiness.std())
    head_input = np.hstack([oof_domains, ((oof_easiness - e_mean) / e_sd)[:, None]])

    head_weight = np.zeros((len(domains) + 1, len(pool.models)))
    head_bias = np.zeros(len(pool.models))
    output_chars = np.zeros((len(domains), len(pool.models)))
    for j in range(len(pool.models)):
        seen = ~np.isnan(pool.correct[:, j])
        head = LogisticRegression(C=HEAD_C, max_iter=3000).fit(
            head_input[seen], pool.correct[seen, j]
        )
        head_weight[:, j], head_bias[j] = head.coef_[0], head.intercept_[0]
        overall = float(np.nanmean(pool.output_chars[:, j]))
        for k, category in enumerate(domains):
            lengths = pool.output_chars[(pool.categories == category) & seen, j]
            output_chars[k, j] = lengths.mean() if len(lengths) else overall

    # Fold the standardisation (and the easiness standardisation) into the heads' weights.
    coef, intercept = _softmax_parameters(domain)
    return LearnedSelector(
        models=pool.models,
        domains=domains,
        domain_weight=coef.T / scale[:, None],
        domain_bias=intercept - mean / scale @ coef.T,
        easiness_weight=ridge.coef_ / scale / e_sd,
        easiness_bias=float((ridge.intercept_ - mean / scale @ ridge.coef_ - e_mean) / e_sd),
        head_weight=head_weight,
        head_bias=head_bias,
        output_chars=output_chars,
        active_params_b=pool.active_params_b,
        cost_scale=best_model_cost_scale(pool),
        info=dict(info or {}),
    )


@dataclass(frozen=True)
class Calibration:
    """Calibration of one model's probabilities (or of all pooled) on validation records.

    base_log_loss: log loss of the per-category train accuracy, the no-features baseline.
    reliability: per probability bin, (records, mean predicted, observed accuracy).
    """

    records: int
    log_loss: float
    base_log_loss: float
    brier: float
    ece: float
    mean_predicted: float
    accuracy: float
    reliability: list[tuple[int, float, float]]


def calibration(p: np.ndarray, y: np.ndarray, base: np.ndarray) -> Calibration:
    """Calibration figures of probabilities ``p`` for outcomes ``y`` (NaN: not recorded)."""
    seen = ~np.isnan(y)
    p, y, base = np.clip(p[seen], 1e-6, 1 - 1e-6), y[seen], np.clip(base[seen], 1e-6, 1 - 1e-6)
    bins = np.minimum((p * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    table = [
        (int(m.sum()), float(p[m].mean()), float(y[m].mean()))
        for b in range(RELIABILITY_BINS)
        for m in [bins == b]
        if m.any()
    ]
    return Calibration(
        records=len(y),
        log_loss=float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        base_log_loss=float(-np.mean(y * np.log(base) + (1 - y) * np.log(1 - base))),
        brier=float(np.mean((p - y) ** 2)),
        ece=float(sum(n * abs(mp - acc) for n, mp, acc in table) / len(y)),
        mean_predicted=float(p.mean()),
        accuracy=float(y.mean()),
        reliability=table,
    )


@dataclass(frozen=True)
class SelectorReport:
    """What ``train_selector`` wrote and how the selector does on the validation split."""

    pool: str
    models: tuple[str, ...]
    train_questions: int
    validation_questions: int
    domain_accuracy: float
    easiness_correlation: float
    per_model: dict[str, Calibration]
    pooled: Calibration
    artifact: tuple[tuple[str, int], ...]

    def lines(self) -> list[str]:
        out = [
            f"pool {self.pool}: {len(self.models)} models; {self.train_questions} train, "
            f"{self.validation_questions} validation questions",
            f"validation: domain accuracy {self.domain_accuracy:.4f}, "
            f"easiness correlation {self.easiness_correlation:.3f}",
            f"{'model':30s} {'records':>7s} {'logloss':>7s} {'base':>7s} {'brier':>6s} "
            f"{'ece':>6s} {'mean p':>6s} {'acc':>6s}",
        ]
        for name, c in [*self.per_model.items(), ("(all models)", self.pooled)]:
            out.append(
                f"{name:30s} {c.records:7d} {c.log_loss:7.4f} {c.base_log_loss:7.4f} "
                f"{c.brier:6.4f} {c.ece:6.4f} {c.mean_predicted:6.3f} {c.accuracy:6.3f}"
            )
        out.append("reliability, all models (records, mean predicted, observed):")
        out.extend(f"  {n:6d} {mp:6.3f} {acc:6.3f}" for n, mp, acc in self.pooled.reliability)
        out.extend(f"wrote {path} ({size:,} bytes)" for path, size in self.artifact)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def train_selector(
    pool_name: str,
    questions_path: str | Path,
    outcomes_path: str | Path,
    models_path: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    *,
    embedder: Embedder | None = None,
) -> SelectorReport:
    """Trains the selector of the pool ``pool_name`` (a pool in models.json) on the train
    split, writes ``out_dir/selector_<pool_name>.npz`` and ``.json``, and reports on the
    validation split. ``embedder`` defaults to the local ONNX engine (2 threads)."""
    if embedder is None:
        from semrouter.embed.local import LocalEmbedder

        embedder = LocalEmbedder(threads=2)
    from semrouter.train.features import encode_texts

    pool = resolve_pool(models_path, pool_name)
    known = [m for m, v in load_models(models_path)["models"].items() if v.get("active_params_b")]
    every = load_outcome_table(questions_path, outcomes_path, models_path, known)
    table = every.columns(pool)
    features = encode_texts(embedder, list(table.questions)).features
    validation = np.array([is_validation(q) for q in table.question_ids], dtype=bool)
    train, held = table.rows(~validation), table.rows(validation)
    easiness = every.share_correct
    selector = fit_selector(
        features[~validation],
        train,
        easiness[~validation],
        seed,
        info={
            "pool": pool_name,
            "seed": seed,
            "embedder": type(embedder).__name__,
            "input_text": "question only",
            "train_questions": len(train),
        },
    )
    x_val = features[validation]
    p = selector.predict(x_val, held.prompt_chars).p_correct
    priors = {c: np.nanmean(train.correct[train.categories == c], axis=0) for c in selector.domains}
    base = np.array([priors[c] for c in held.categories])
    domain_p, easiness_hat = selector.head_outputs(x_val)
    domain_accuracy = float(
        np.mean(np.asarray(selector.domains)[domain_p.argmax(axis=1)] == held.categories)
    )
    pooled = calibration(p.ravel(), held.correct.ravel(), base.ravel())
    selector = replace(
        selector,
        info={
            **selector.info,
            "validation_questions": len(held),
            "validation_log_loss": round(pooled.log_loss, 4),
            "validation_base_log_loss": round(pooled.base_log_loss, 4),
            "validation_ece": round(pooled.ece, 4),
        },
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = selector.save(out / f"selector_{pool_name}.npz")
    return SelectorReport(
        pool=pool_name,
        models=pool,
        train_questions=len(train),
        validation_questions=len(held),
        domain_accuracy=domain_accuracy,
        easiness_correlation=float(np.corrcoef(easiness_hat, easiness[validation])[0, 1]),
        per_model={
            m: calibration(p[:, j], held.correct[:, j], base[:, j]) for j, m in enumerate(pool)
        },
        pooled=pooled,
        artifact=tuple((str(path), path.stat().st_size) for path in paths),
    )
