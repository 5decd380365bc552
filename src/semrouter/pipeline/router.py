"""The routing pipeline, independent of any transport.

    parse (request.py) → signals (signals/) → decision (decide/) → rewrite (here) → forward

`Router.route()` classifies and decides; `Router.rewrite()` produces the body the backend gets.
The HTTP proxy and the Envoy ext_proc server both call exactly these two methods.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from threadpoolctl import threadpool_limits

from semrouter.config.schema import ModelConfig, RouterConfig, SystemPrompt
from semrouter.decide.engine import DecisionEngine, Outcome
from semrouter.embed import create_embedder
from semrouter.embed.base import Embedder
from semrouter.pipeline.errors import model_not_found
from semrouter.pipeline.request import ChatRequest
from semrouter.reasoning.families import apply_reasoning, family_fields, strip_reasoning_controls
from semrouter.signals.engine import SignalEngine, SignalReport

DIRECT_DECISION = "direct"


@dataclass(slots=True)
class Route:
    """Where one request goes and why. `outcome`/`signals` are None for a direct model request."""

    model: ModelConfig
    outcome: Outcome | None
    signals: SignalReport | None
    route_ms: float

    @property
    def reasoning(self) -> str:
        if self.outcome is None:
            return "unchanged"
        return "on" if self.outcome.use_reasoning else "off"

    def headers(self) -> dict[str, str]:
        outcome, signals = self.outcome, self.signals
        headers = {
            "x-semrouter-model": self.model.name,
            "x-semrouter-decision": outcome.decision if outcome else DIRECT_DECISION,
            "x-semrouter-domain": (signals.domain if signals and signals.domain else "none"),
            "x-semrouter-reasoning": self.reasoning,
            "x-semrouter-route-ms": f"{self.route_ms:.2f}",
        }
        if outcome and outcome.use_reasoning and outcome.reasoning_effort:
            headers["x-semrouter-reasoning-effort"] = outcome.reasoning_effort
        return headers

    def summary(self) -> dict[str, Any]:
        """The route as data: what `semrouter route` writes and /api/v1/classify answers."""
        outcome, signals = self.outcome, self.signals
        result: dict[str, Any] = {
            "model": self.model.name,
            "decision": outcome.decision if outcome else DIRECT_DECISION,
            "domain": signals.domain if signals else None,
            "reasoning": bool(outcome and outcome.use_reasoning),
            "reasoning_effort": outcome.reasoning_effort
            if outcome and outcome.use_reasoning
            else None,
            "confidence": signals.domain_confidence if signals else None,
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
        result["route_ms"] = round(self.route_ms, 3)
        return result


class Router:
    def __init__(self, config: RouterConfig, embedder: Embedder | None = None) -> None:
        self.config = config
        self.auto_names = frozenset(config.router.auto_model_names)
        self.signals = SignalEngine(config.signals, embedder)
        self.embedder = embedder
        self.decisions = DecisionEngine(config)
        self._models = {m.name: m for m in config.models}
        self._by_upstream_id = {m.upstream_id: m for m in config.models}
        self._extra_reasoning_fields = family_fields(
            config.family(m) for m in config.models if config.family(m) is not None
        )

    @classmethod
    def from_config(cls, config: RouterConfig) -> Router:
        needed = config.signals.needs_embedding
        return cls(config, create_embedder(config.embedding) if needed else None)

    async def start(self) -> None:
        _single_threaded_blas()
        if self.embedder is not None:
            await self.embedder.start()
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

    async def route(self, request: ChatRequest) -> Route:
        started = time.perf_counter()
        if not self.is_auto(request):
            return self._direct(request, started)
        signals = await self.signals.evaluate(request)
        return self._decide(request, signals, started)

    def route_many_sync(self, requests: Sequence[ChatRequest]) -> list[Route]:
        """Offline routing of a batch: one encoder call for all (for `semrouter route`)."""
        started = time.perf_counter()
        reports = self.signals.evaluate_many_sync(requests)
        return [self._decide(r, s, started) for r, s in zip(requests, reports, strict=True)]

    def _direct(self, request: ChatRequest, started: float) -> Route:
        model = self.resolve_model(request.model)
        if model is None:
            raise model_not_found(request.model)
        return Route(model, None, None, (time.perf_counter() - started) * 1000)

    def _decide(self, request: ChatRequest, signals: SignalReport, started: float) -> Route:
        prompt_chars = len(request.routing_text())
        outcome = self.decisions.decide(signals, prompt_chars)
        model = self._models[outcome.model]
        return Route(model, outcome, signals, (time.perf_counter() - started) * 1000)

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
