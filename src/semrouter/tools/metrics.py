"""Prometheus metrics of tool pre-selection, on the pipeline's registry (`/metrics`).

Per request (the stage; /api/v1/classify probes are not counted): tools offered and kept.
Per scoring (the scorer, whatever asked for it): catalog and tool-definition cache results,
tools sent to the encoder on first sight and how that ended, and whether the scores had the
query embedding and the catalog's embeddings (`embedding`) or the lexical term alone.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

COUNT_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)


class ToolMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        """registry None: the series are kept but exported nowhere (offline scoring, tests)."""
        self.offered = Histogram(
            "semrouter_tools_offered",
            "Tools a chat request carried (requests with tools).",
            buckets=COUNT_BUCKETS,
            registry=registry,
        )
        self.kept = Histogram(
            "semrouter_tools_kept",
            "Tools forwarded after pre-selection (requests with tools).",
            buckets=COUNT_BUCKETS,
            registry=registry,
        )
        self.catalogs = Counter(
            "semrouter_tool_catalogs",
            "Tools lists scored, by result: hit (known list: its embeddings and BM25 index "
            "cached), miss (analysed now).",
            ["result"],
            registry=registry,
        )
        self.definitions = Counter(
            "semrouter_tool_definitions",
            "Tools of new tools lists, by result: hit (a known definition, its embedding "
            "reused), miss (new).",
            ["result"],
            registry=registry,
        )
        self.encodes = Counter(
            "semrouter_tool_encodes",
            "Tool definitions sent to the encoder on first sight, by outcome: encoded, failed, "
            "over_limit (more than tools.cache.max_entries waiting: not sent).",
            ["outcome"],
            registry=registry,
        )
        self.scoring = Counter(
            "semrouter_tool_scoring",
            "Tool scorings by mode: embedding (cosine, BM25, re-ranker) or lexical (no query "
            "embedding, or the catalog not encoded within tools.encode_wait_ms).",
            ["mode"],
            registry=registry,
        )
