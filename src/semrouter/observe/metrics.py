"""The Prometheus series of semrouter.observe, on the pipeline's registry (one /metrics).

Names follow the OpenTelemetry GenAI semantic conventions where one exists (`gen_ai.*`
instruments as the Prometheus exporter writes them: dots become underscores, the unit `s`
becomes `_seconds`, `{token}` is dropped), with the convention's attribute names as labels
(`gen_ai_operation_name`, `gen_ai_request_model`, `gen_ai_response_model`, `gen_ai_token_type`)
plus `semrouter_decision`. Router-specific series are under `semrouter_`. The label values are
all bounded: model and decision names come from the config, stages from the code, token types
are fixed. docs/observability.md lists every series.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

OPERATION = "chat"
# Milliseconds to minutes: a cache hit answers in a millisecond, a reasoning stream in minutes.
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
# The routing stages take microseconds (a keyword scan) to tens of milliseconds (a long encode).
STAGE_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
TOKEN_TIME_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
# The convention's buckets for gen_ai.client.token.usage (powers of 4), up to 4M tokens.
TOKEN_BUCKETS = tuple(float(4**i) for i in range(12))
MODEL_LABELS = ("gen_ai_operation_name", "gen_ai_request_model", "semrouter_decision")


@dataclass(frozen=True, slots=True)
class RouteSeries:
    """The labelled series of one (model, decision): looked up once, not per request."""

    duration: Histogram
    time_to_first_token: Histogram
    time_per_output_token: Histogram
    input_tokens: Histogram
    output_tokens: Histogram
    reasoning_tokens: Histogram
    prompt: Counter
    completion: Counter
    reasoning: Counter


class ObserveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # Children by label values; as bounded as the values (config names, stage names).
        self._routes: dict[tuple[str, str, str], RouteSeries] = {}
        self._stages: dict[str, Histogram] = {}
        self.stage_seconds = Histogram(
            "semrouter_stage_seconds",
            "Time of one routing stage of a request, its nested stages excluded (parse, encode, "
            "signals, decide, rewrite, and each configured stage by name: tools, cache, ...).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.operation_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Whole chat request as the router served it: from its arrival to the response's "
            "last byte (a stage's own answer included).",
            [*MODEL_LABELS, "gen_ai_response_model"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Streamed responses: from the backend call to the first response body chunk.",
            MODEL_LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.time_per_output_token = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Streamed responses: time after the first chunk divided by the output tokens after "
            "the first (usage's completion_tokens, else the count of delta events).",
            MODEL_LABELS,
            buckets=TOKEN_TIME_BUCKETS,
            registry=registry,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per request as the backend's usage reports them, by type: input (prompt), "
            "output (completion, reasoning included) and reasoning.",
            [*MODEL_LABELS, "gen_ai_token_type"],
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "semrouter_tokens",
            "Tokens the backends reported in usage, by type (prompt, completion, reasoning), "
            "model and decision: for rates and cost.",
            ["type", "model", "decision"],
            registry=registry,
        )
        self.log_dropped = Counter(
            "semrouter_request_log_dropped",
            "Request log lines dropped because the writer's queue (observe.log_queue) was full.",
            registry=registry,
        )

    def stage(self, name: str) -> Histogram:
        child = self._stages.get(name)
        if child is None:
            child = self._stages[name] = self.stage_seconds.labels(name)
        return child

    def route(self, model: str, decision: str, response_model: str) -> RouteSeries:
        key = (model, decision, response_model)
        series = self._routes.get(key)
        if series is None:
            labels = (OPERATION, model, decision)
            tokens = self.token_usage
            series = self._routes[key] = RouteSeries(
                self.operation_duration.labels(*labels, response_model),
                self.time_to_first_token.labels(*labels),
                self.time_per_output_token.labels(*labels),
                tokens.labels(*labels, "input"),
                tokens.labels(*labels, "output"),
                tokens.labels(*labels, "reasoning"),
                self.tokens.labels("prompt", model, decision),
                self.tokens.labels("completion", model, decision),
                self.tokens.labels("reasoning", model, decision),
            )
        return series
