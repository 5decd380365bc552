"""Tool pre-selection, second stage and metrics: the tree ensemble and its export from
sklearn, the shipped re-ranker's effect on scores, its bounds under hostile input, and the
tool metrics on a registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sklearn.ensemble import HistGradientBoostingClassifier

from semrouter.bench.tools import exported
from semrouter.config.schema import Endpoint, ModelConfig
from semrouter.pipeline.flow import Pipeline
from semrouter.pipeline.router import Router
from semrouter.signals.engine import SignalReport
from semrouter.stages import StageContext
from semrouter.tools import ToolStage
from semrouter.tools.rerank import (
    FEATURES,
    MAX_SENTENCES,
    TreeEnsemble,
    reordered,
    sentences,
)
from tests.unit.test_tools import (
    CATALOG,
    DIM,
    WordEmbedder,
    chat,
    item,
    scorer,
    tool,
    tools_config,
)

# --- the ensemble ---------------------------------------------------------------------------


def test_each_tree_sends_a_row_left_at_or_below_its_threshold() -> None:
    ensemble = TreeEnsemble(
        feature=np.array([[0], [1]]),
        threshold=np.array([[0.5], [2.0]]),
        value=np.array([[-1.0, 1.0], [10.0, 20.0]]),
    )
    rows = np.zeros((3, len(FEATURES)))
    rows[:, 0] = (0.5, 0.6, 0.0)
    rows[:, 1] = (2.0, 0.0, 3.0)
    assert ensemble(rows).tolist() == [9.0, 11.0, 19.0]


def test_malformed_or_foreign_trees_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="malformed"):
        TreeEnsemble(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="malformed"):
        TreeEnsemble(np.array([[len(FEATURES)]]), np.zeros((1, 1)), np.zeros((1, 2)))
    path = tmp_path / "other.npz"
    np.savez(
        path,
        features=np.array(["something", "else"]),
        feature=np.zeros((1, 1), dtype=np.int16),
        threshold=np.zeros((1, 1)),
        value=np.zeros((1, 2)),
    )
    with pytest.raises(ValueError, match="other features"):
        TreeEnsemble.load(path)


def test_the_exported_ensemble_scores_as_sklearn_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(600, len(FEATURES)))
    labels = rows[:, 0] + 0.5 * rows[:, 3] * rows[:, 8] + rng.normal(scale=0.5, size=600) > 0.8
    # min_samples_leaf this large leaves some leaves above the full depth (padded on export).
    model = HistGradientBoostingClassifier(
        max_iter=30, max_depth=3, min_samples_leaf=80, early_stopping=False, random_state=0
    ).fit(rows, labels)
    ensemble = exported(model, 3)
    expected = model.decision_function(rows) - float(np.ravel(model._baseline_prediction)[0])
    np.testing.assert_allclose(ensemble(rows), expected, atol=1e-9)
    ensemble.save(tmp_path / "r.npz")
    np.testing.assert_allclose(TreeEnsemble.load(tmp_path / "r.npz")(rows), expected, atol=1e-6)


def test_reordering_hands_the_same_scores_to_the_candidates() -> None:
    first = np.array([0.9, 0.1, 0.8, 0.7, 0.2, 0.6, 0.5, 0.4])
    candidates = np.array([0, 2, 3, 5, 6, 7])  # best first
    out = reordered(first, candidates, np.arange(6.0))  # the re-ranker reverses them
    # The first three keep their places; 0.6, 0.5, 0.4 are handed out in reverse.
    assert out.tolist() == [0.9, 0.1, 0.8, 0.7, 0.2, 0.4, 0.5, 0.6]


# --- the shipped re-ranker in the scorer ----------------------------------------------------


def test_the_shipped_reranker_permutes_only_the_candidates_scores() -> None:
    embedder = WordEmbedder()
    text = "send an email about the invoice to the customer"
    query = embedder.encode_sync([text]).embeddings[0]
    on = scorer(embedder, rerank_candidates=6)
    off = scorer(embedder, rerank=False)
    assert on.reranker is not None and off.reranker is None
    ranked, first = (
        on.score_sync(item(text, CATALOG), query),
        off.score_sync(item(text, CATALOG), query),
    )
    best = np.argsort(-first, kind="stable")[:6]
    rest = np.setdiff1d(np.arange(len(CATALOG)), best)
    assert np.array_equal(ranked[rest], first[rest])
    assert sorted(ranked[best]) == sorted(first[best])
    assert ranked.max() == first.max()  # what signals.tools min_score reads
    assert np.array_equal(np.argsort(-ranked)[:3], best[:3])  # the first stage's best stay


def test_without_a_query_embedding_there_is_no_second_stage() -> None:
    tools = scorer(WordEmbedder())
    lexical = tools.score_sync(item("send an email", CATALOG), None)
    assert lexical.max() == pytest.approx(0.3)  # lexical_weight x BM25 over its best
    with pytest.raises(ValueError, match="not encoded"):
        scorer(None).candidates(item("email", CATALOG), np.zeros(DIM, dtype=np.float32))


def test_rerank_features_are_bounded_by_the_text_limits() -> None:
    huge = {
        "type": "function",
        "function": {
            "name": "n" * 100_000,
            "description": "d " * 500_000,
            "parameters": {"properties": {f"param_{i}": {} for i in range(10_000)}},
        },
    }
    tools = scorer(WordEmbedder(), max_text_chars=256, rerank_candidates=200)
    query = WordEmbedder().encode_sync(["anything"]).embeddings[0]
    long_text = "Do this. " * 20_000
    tools.score_sync(item(long_text, [huge, *CATALOG]), query)
    facts = tools.catalog([huge, *CATALOG]).entries[0].facts
    assert len(facts.parameter_words) <= 256 // len("param_0")
    assert facts.description_chars == 1_000_000  # a number, not a text
    assert len(sentences(long_text)) == MAX_SENTENCES
    candidates, rows = tools.candidates(item(long_text, [huge, *CATALOG]), query)
    assert rows.shape == (len(candidates), len(FEATURES)) == (31, 16)
    assert np.isfinite(rows).all()


# --- metrics --------------------------------------------------------------------------------


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def stage_request(
    stage: ToolStage, text: str, tools: list[dict[str, Any]], probe: bool
) -> StageContext:
    embedder = stage.scorer.embedder
    assert embedder is not None
    query = embedder.encode_sync([text]).embeddings[0]
    request = item(text, tools)
    report = SignalReport(tool_scores=await stage.scorer.score(request, query))
    model = ModelConfig(name="m", endpoints=[Endpoint(url="http://127.0.0.1:1/v1")])
    messages = [{"role": "user", "content": text}]
    body = {"model": "m", "messages": messages, "tools": tools}
    context = StageContext(messages, body, "default", model, request, report, probe=probe)
    await stage.apply(context)
    return context


async def test_tool_metrics_count_requests_cache_results_and_first_sight_encodes() -> None:
    registry = CollectorRegistry()
    tools = scorer(WordEmbedder(), encode_wait_ms=5_000)
    stage = ToolStage(tools.config, tools, registry)
    await stage_request(stage, "weather in Paris", CATALOG, probe=False)
    assert sample(registry, "semrouter_tool_catalogs_total", result="miss") == 1
    assert sample(registry, "semrouter_tool_definitions_total", result="miss") == len(CATALOG)
    assert sample(registry, "semrouter_tool_encodes_total", outcome="encoded") == len(CATALOG)
    assert sample(registry, "semrouter_tool_scoring_total", mode="embedding") == 1
    assert sample(registry, "semrouter_tools_offered_sum") == len(CATALOG)
    assert sample(registry, "semrouter_tools_kept_sum") == 5
    smaller = CATALOG[:10]
    context = await stage_request(stage, "send an email", smaller, probe=True)
    assert context.headers["x-semrouter-tools"] == "5/10"
    assert sample(registry, "semrouter_tool_catalogs_total", result="miss") == 2
    assert sample(registry, "semrouter_tool_definitions_total", result="hit") == 10  # known
    assert sample(registry, "semrouter_tool_encodes_total", outcome="encoded") == len(CATALOG)
    assert sample(registry, "semrouter_tools_offered_count") == 1  # a probe is not counted
    await stage_request(stage, "send an email", CATALOG, probe=False)
    assert sample(registry, "semrouter_tool_catalogs_total", result="hit") == 1
    assert sample(registry, "semrouter_tools_offered_count") == 2


async def test_failed_and_refused_encodes_are_counted() -> None:
    registry = CollectorRegistry()
    failing = scorer(WordEmbedder(fail=True))
    ToolStage(failing.config, failing, registry)
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    await failing.score(item("email", CATALOG), query)
    assert sample(registry, "semrouter_tool_encodes_total", outcome="failed") == len(CATALOG)
    assert sample(registry, "semrouter_tool_scoring_total", mode="lexical") == 1
    other = CollectorRegistry()
    bounded = scorer(WordEmbedder(delay_s=0.2), encode_wait_ms=1, cache={"max_entries": 40})
    ToolStage(bounded.config, bounded, other)
    await bounded.score(item("email", CATALOG), query)  # 30 wait to be encoded
    fresh = [tool(f"other_{i}", "something else") for i in range(20)]
    await bounded.score(item("email", fresh), query)  # 30 + 20 > 40: not sent
    assert sample(other, "semrouter_tool_encodes_total", outcome="over_limit") == 20


async def test_the_pipeline_exports_the_tool_metrics_on_its_registry() -> None:
    pipeline = Pipeline(Router(tools_config()))
    await pipeline.prepare(chat("translate this text to German", CATALOG), {})
    await pipeline.prepare(chat("translate this", CATALOG[:4]), {})
    registry = pipeline.metrics.registry
    assert sample(registry, "semrouter_tools_offered_sum") == len(CATALOG) + 4
    assert sample(registry, "semrouter_tools_kept_sum") == 4 + 4  # top 3 + always_keep; all 4
    assert sample(registry, "semrouter_tool_catalogs_total", result="miss") == 2
    assert sample(registry, "semrouter_tool_scoring_total", mode="lexical") == 2  # no encoder
