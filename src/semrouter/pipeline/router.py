"""The routing pipeline, independent of any transport.

    parse (request.py) → signals (signals/) → decision (decide/) → rewrite (here) → forward

`Router.route()` classifies and decides; `Router.rewrite()` produces the body the backend gets.
The HTTP proxy and the Envoy ext_proc server both call exactly these two methods.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from semrouter.config import ConfigError
from semrouter.config.schema import DIRECT_DECISION, ModelConfig, RouterConfig, SystemPrompt
from semrouter.decide.engine import DecisionEngine, Outcome
from semrouter.embed import create_embedder
from semrouter.embed.base import Embedder, EmbeddingError, EncoderOverloaded
from semrouter.observe import timed
from semrouter.pipeline.artifacts import require_artifacts, width_errors
from semrouter.pipeline.errors import embedding_unavailable, model_not_found, overloaded
from semrouter.pipeline.request import ChatRequest
from semrouter.reasoning.families import apply_reasoning, family_fields, strip_reasoning_controls
from semrouter.reasoning.thinking_budget import BUDGET_HEADER, BudgetPlan, apply_budget, plan_budget
from semrouter.signals.conversation import conversation_signals
from semrouter.signals.engine import SignalEngine, SignalInput, SignalReport
from semrouter.tools import ToolScorer


@dataclass(slots=True)
class Route:
    """Where one request goes and why. `outcome`/`signals` are None for a direct model request."""

    model: ModelConfig
    outcome: Outcome | None
    signals: SignalReport | None
    route_ms: float
    fallback: str | None = None
    """Why the fallback route answered instead of the signals: 'deadline', 'embedding_error'."""
    input: SignalInput | None = None
    """What the signals read (None for a direct model request)."""
    affinity: str | None = None
    """What session affinity did (semrouter.affinity: new, sticky, lock, escalated,
    unavailable); None with affinity off or for a direct model request."""
    budget: BudgetPlan | None = None
    """How the thinking budget is enforced (set by Router.rewrite); None: no budget applies."""

    @property
    def decision(self) -> str:
        return self.outcome.decision if self.outcome is not None else DIRECT_DECISION

    @property
    def reasoning(self) -> str:
        if self.outcome is None:
            return "unchanged"
        return "on" if self.outcome.use_reasoning else "off"

    def headers(self) -> dict[str, str]:
        outcome, signals = self.outcome, self.signals
        headers = {
            "x-semrouter-model": self.model.name,
            "x-semrouter-decision": self.decision,
            "x-semrouter-domain": (signals.domain if signals and signals.domain else "none"),
            "x-semrouter-reasoning": self.reasoning,
            "x-semrouter-route-ms": f"{self.route_ms:.2f}",
            BUDGET_HEADER: self.budget.header() if self.budget is not None else "none",
        }
        if outcome and outcome.use_reasoning and outcome.reasoning_effort:
            headers["x-semrouter-reasoning-effort"] = outcome.reasoning_effort
        if self.fallback is not None:
            headers["x-semrouter-fallback"] = self.fallback
        if self.affinity is not None:
            headers["x-semrouter-affinity"] = self.affinity
        return headers

    def summary(self) -> dict[str, Any]:
        """The route as data: what `semrouter route` writes and /api/v1/classify answers."""
        outcome, signals = self.outcome, self.signals
        result: dict[str, Any] = {
            "model": self.model.name,
            "decision": self.decision,
            "domain": signals.domain if signals else None,
            "reasoning": bool(outcome and outcome.use_reasoning),
            "reasoning_effort": outcome.reasoning_effort
            if outcome and outcome.use_reasoning
            else None,
            "confidence": signals.domain_confidence if signals else None,
            "reasoning_budget_tokens": outcome.reasoning_budget_tokens
            if outcome and outcome.use_reasoning
            else None,
        }
        if signals is not None:
            result["signals"] = {
                "fired": sorted(signals.fired),
                "scores": {k: round(v, 4) for k, v in signals.scores.items()},
                "reasoning_probability": signals.reasoning_probability,
                "tokens": signals.tokens,
            }
        if outcome is not None:
            result["matched_signals"] = list(outcome.matched_signals)
            if outcome.model_probabilities is not None:
                result["model_probabilities"] = outcome.model_probabilities
            if outcome.model_expected_costs is not None:
                result["model_expected_costs"] = {
                    m: round(c, 1) for m, c in outcome.model_expected_costs.items()
                }
        result["fallback"] = self.fallback
        result["affinity"] = self.affinity
        result["route_ms"] = round(self.route_ms, 3)
        return result


class Router:
    def __init__(self, config: RouterConfig, embedder: Embedder | None = None) -> None:
        """Raises ConfigError if an artifact the config names is missing or does not fit it."""
        require_artifacts(config)
        self.config = config
        self.auto_names = frozenset(config.router.auto_model_names)
        self.tool_scorer = (
            ToolScorer(config.tools, embedder, config.embedding.batch_size)
            if scores_tools(config)
            else None
        )
        self.signals = SignalEngine(config.signals, embedder, self.tool_scorer, config.guards)
        self.embedder = embedder
        self.decisions = DecisionEngine(config)
        self._models = {m.name: m for m in config.models}
        self._by_upstream_id = {m.upstream_id: m for m in config.models}
        self._extra_reasoning_fields = family_fields(
            family for m in config.models if (family := config.family(m)) is not None
        )
        self.limits = config.router.limits
        self.midstream_budgets = False
        """Set by a transport that owns the upstream connection (`semrouter serve`): it
        enforces router-side thinking budgets itself; others get a max_tokens cap."""
        self.conversation = config.router.conversation
        self._deadline_s = self.limits.classify_deadline_ms / 1000
        self.fallback_outcome = self.decisions.fallback(config.router.fallback_decision)
        if embedder is not None and embedder.dimensions_known:
            self._check_widths(embedder)

    def _check_widths(self, embedder: Embedder) -> None:
        heads = {"domain": self.signals.domain_head, "reasoning": self.signals.reasoning_head}
        errors = width_errors(
            self.config, heads, self.decisions.selectors, embedder.dim, embedder.feature_dim
        )
        if errors:
            raise ConfigError("<router>", errors)

    @classmethod
    def from_config(cls, config: RouterConfig) -> Router:
        """The router with an embedder when some signal or the response cache needs one."""
        if (
            not config.signals.needs_embedding
            and config.cache.backend == "off"
            and not config.guards.jailbreak.enabled
        ):
            return cls(config, None)
        limits = config.router.limits
        embedder = create_embedder(
            config.embedding, max_word_chars=limits.max_word_chars, max_queue=limits.encoder_queue
        )
        return cls(config, embedder)

    async def start(self) -> None:
        """Start the embedder (a remote one learns its width here, and is checked then)."""
        _single_threaded_blas()
        if self.embedder is not None:
            await self.embedder.start()
            self._check_widths(self.embedder)
        await self.signals.start()

    def start_sync(self) -> None:
        _single_threaded_blas()
        self.signals.start_sync()

    async def close(self) -> None:
        if self.embedder is not None:
            await self.embedder.close()

    def resolve_model(self, name: str) -> ModelConfig | None:
        return self._models.get(name) or self._by_upstream_id.get(name)

    def is_auto(self, request: ChatRequest) -> bool:
        return request.model in self.auto_names

    def signal_input(self, request: ChatRequest) -> SignalInput:
        return request.signal_input(
            self.limits, self.config.tools, self.conversation, self.config.guards
        )

    async def route(self, request: ChatRequest, earlier: Sequence[np.ndarray] = ()) -> Route:
        """Classify and decide within the deadline; past it, or when the embedder fails (and
        config says so), the fallback route answers. `earlier`: the embeddings of the
        session's earlier user turns (for the `reask` signal)."""
        started = time.perf_counter()
        if not self.is_auto(request):
            return self._direct(request, started)
        item = self.signal_input(request)
        try:
            async with asyncio.timeout(self._deadline_s):
                with timed("signals"):
                    signals = await self.signals.evaluate(item)
        except TimeoutError:
            return self._fallback("deadline", started, item)
        except EncoderOverloaded as exc:
            raise overloaded(f"The router is overloaded: {exc}", retry_after_s=1) from None
        except EmbeddingError as exc:
            if self.config.router.on_embedding_error == "reject":
                raise embedding_unavailable(str(exc)) from None
            return self._fallback("embedding_error", started, item)
        self._conversation_signals(signals, request, earlier)
        return self._decide(item, signals, started)

    def _conversation_signals(
        self, signals: SignalReport, request: ChatRequest, earlier: Sequence[np.ndarray]
    ) -> None:
        conversation_signals(
            signals,
            request.messages,
            self.config.signals,
            earlier,
            self.conversation.reask_threshold,
        )

    def route_many_sync(self, requests: Sequence[ChatRequest]) -> list[Route]:
        """Offline routing of a batch: one encoder call for all (for `semrouter route`).
        Each route's `route_ms` is its share of the batch: the encoder pass divided evenly,
        plus its own decision."""
        started = time.perf_counter()
        items = [self.signal_input(r) for r in requests]
        reports = self.signals.evaluate_many_sync(items)
        for request, report in zip(requests, reports, strict=True):
            self._conversation_signals(report, request, ())
        shared_ms = (time.perf_counter() - started) * 1000 / max(len(requests), 1)
        routes = []
        for item, report in zip(items, reports, strict=True):
            own = time.perf_counter()
            route = self._decide(item, report, own)
            route.route_ms += shared_ms
            routes.append(route)
        return routes

    def _direct(self, request: ChatRequest, started: float) -> Route:
        model = self.resolve_model(request.model)
        if model is None:
            raise model_not_found(request.model)
        return Route(model, None, None, (time.perf_counter() - started) * 1000)

    def _fallback(self, reason: str, started: float, item: SignalInput) -> Route:
        outcome = self.fallback_outcome
        model = self._models[outcome.model]
        return Route(model, outcome, None, (time.perf_counter() - started) * 1000, reason, item)

    def _decide(self, item: SignalInput, signals: SignalReport, started: float) -> Route:
        with timed("decide"):
            outcome = self.decisions.decide(signals, item.prompt_chars)
        model = self._models[outcome.model]
        return Route(model, outcome, signals, (time.perf_counter() - started) * 1000, None, item)

    def rewrite(self, request: ChatRequest, route: Route) -> dict[str, Any]:
        """The body to send upstream (a new dict; the client's body is left as it was)."""
        body = dict(request.body)
        body["model"] = route.model.upstream_id
        outcome = route.outcome
        if outcome is None:
            return body
        strip_reasoning_controls(body, self._extra_reasoning_fields)
        family = self.config.family(route.model)
        if family is not None:
            apply_reasoning(body, family, outcome.use_reasoning, outcome.reasoning_effort)
        route.budget = plan_budget(
            family, outcome.use_reasoning, outcome.reasoning_budget_tokens, self.midstream_budgets
        )
        if route.budget is not None:
            assert family is not None  # a plan needs a family
            apply_budget(body, route.budget, family, outcome.reasoning_effort)
        if outcome.system_prompt is not None:
            body["messages"] = with_system_prompt(request.messages, outcome.system_prompt)
        if outcome.max_tokens is not None:
            for key in ("max_tokens", "max_completion_tokens"):
                requested = body.get(key)
                if isinstance(requested, int) and requested > outcome.max_tokens:
                    body[key] = outcome.max_tokens
            if "max_tokens" not in body and "max_completion_tokens" not in body:
                body["max_tokens"] = outcome.max_tokens
        return body


def scores_tools(config: RouterConfig) -> bool:
    """Whether requests' tools are scored: selection is on for some decision, or a tool signal
    tests the best score."""
    tools = config.tools
    return (
        tools.enabled
        or any(o.enabled for o in tools.decisions.values())
        or any(s.min_score is not None for s in config.signals.tools)
    )


def with_system_prompt(
    messages: list[dict[str, Any]], prompt: SystemPrompt
) -> list[dict[str, Any]]:
    """insert: prepend to the client's first system message (or add one); replace: drop theirs."""
    system_roles = ("system", "developer")
    if prompt.mode == "replace":
        rest = [m for m in messages if m.get("role") not in system_roles]
        return [{"role": "system", "content": prompt.text}, *rest]
    for i, message in enumerate(messages):
        if message.get("role") in system_roles and isinstance(message.get("content"), str):
            merged = {**message, "content": f"{prompt.text}\n\n{message['content']}"}
            return [*messages[:i], merged, *messages[i + 1 :]]
    return [{"role": "system", "content": prompt.text}, *messages]


def _single_threaded_blas() -> None:
    # The heads' matrix products are small: split across BLAS threads they gain nothing, and
    # OpenBLAS's idle workers spin afterwards, taking cores from the encoder (on 2 cores
    # `semrouter serve` went from 12.8 to 10.1 ms p50 once they were gone).
    threadpool_limits(1, user_api="blas")
