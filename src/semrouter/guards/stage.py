"""`GuardStage`: what the safety guards do to a request, by its decision's policies.

The guard signals (semrouter.signals.guards) are computed with the router's encoder pass; a
request routed without one (a named model, a fallback route) is scanned here. Then, per guard,
the decision's policy (guards.py `PolicyTable`) applies when the guard fired:

  block   refused: 403, code prompt_injection or pii_detected (raised as `GuardRefusal`, which
          the pipeline turns into the catalogue's error)
  redact  PII only: the entities' spans become typed placeholders (`<EMAIL_1>`) in the body
          the backend gets; a `Restorer` gives the client its values back in the response,
          and the request is marked private (the cache neither looks it up nor stores it)
  route   sent to the policy's model (`context.retarget`: the body is made anew for it)
  flag    only the header and the counters
  off     nothing (the signal still serves decision rules)

A guard that gave no verdict follows guards.on_error: block refuses (503 guard_unavailable),
allow lets the request through. Header `x-semrouter-guard`: `none`, or `;`-separated entries
such as `jailbreak=flag`, `pii=redact:EMAIL,PHONE`, `pii=error`. Raw values reach the
classify answer (its contract) and nothing else: not the trace of a served request, not the
header, not the metrics, not a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from semrouter.config.schema import JAILBREAK_GUARD, PII_GUARD, ModelConfig, RouterConfig
from semrouter.embed.base import Embedder
from semrouter.guards.metrics import GuardMetrics
from semrouter.guards.policy import Policy, PolicyTable
from semrouter.guards.redact import Placeholders, TooManyValues, redact_messages
from semrouter.guards.restore import Restorer
from semrouter.signals.guards import FoundEntity, GuardReport, GuardSignals
from semrouter.stages.base import Stage, StageContext

GUARD_HEADER = "x-semrouter-guard"


class GuardRefusal(Exception):
    """A request a guard refuses. blocked: its block policy (else: it failed, on_error block);
    the message names the guard and the types, never content."""

    def __init__(self, guard: str, blocked: bool, message: str) -> None:
        super().__init__(message)
        self.guard = guard
        self.blocked = blocked
        self.message = message


@dataclass(slots=True)
class _Verdict:
    entries: list[str] = field(default_factory=list)
    counted: list[tuple[str, str]] = field(default_factory=list)
    refusal: GuardRefusal | None = None
    target: ModelConfig | None = None
    redact: list[FoundEntity] = field(default_factory=list)

    def add(self, guard: str, action: str, detail: str = "") -> None:
        self.entries.append(f"{guard}={action}{':' + detail if detail else ''}")
        self.counted.append((guard, action))

    def refuse(self, refusal: GuardRefusal) -> None:
        if self.refusal is None:
            self.refusal = refusal


def _types(entities: list[FoundEntity]) -> str:
    return ",".join(sorted({e.entity.type for e in entities}))


class GuardStage(Stage):
    name = "guards"

    def __init__(
        self,
        config: RouterConfig,
        signals: GuardSignals,
        embedder: Embedder | None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """signals: the signal engine's (its head and detector, loaded once)."""
        self.config = config.guards
        self.signals = signals
        self.embedder = embedder
        self.policies = PolicyTable(config, signals.threshold)
        self.metrics = GuardMetrics(registry)
        limits = config.router.limits
        self.max_event_bytes = limits.max_sse_event_bytes
        self.max_body_bytes = limits.max_response_bytes

    async def report(self, context: StageContext) -> GuardReport:
        """The signals' findings, or (no encoder pass ran for this request) the scan's own."""
        signals = context.signals
        if signals is not None and signals.guards is not None:
            return signals.guards
        return await self.signals.evaluate(context.request.scan, self.embedder)

    async def apply(self, context: StageContext) -> None:
        report = await self.report(context)
        policies = self.policies.of(context.decision)
        verdict = _Verdict()
        if self.signals.head is not None:
            self._jailbreak(report, policies.jailbreak, verdict)
        if self.signals.detector is not None:
            self._pii(report, policies.pii, verdict)
        target = verdict.target
        if target is not None and context.retarget and target.name != context.model.name:
            context.retarget(target)
        if verdict.redact and verdict.refusal is None:
            self._redact(context, verdict)
        context.headers[GUARD_HEADER] = "; ".join(verdict.entries) or "none"
        context.trace[self.name] = self._trace(report, policies.jailbreak, context.probe)
        if context.probe:
            return
        for guard, action in verdict.counted:
            self.metrics.actions.labels(guard, action).inc()
        for found in report.entities:
            self.metrics.entities.labels(found.entity.type).inc()
        if verdict.refusal is not None:
            raise verdict.refusal

    def _failed(self, guard: str, verdict: _Verdict) -> None:
        verdict.add(guard, "error")
        if self.config.on_error == "block":
            verdict.refuse(
                GuardRefusal(guard, False, f"The {guard} guard could not check this request")
            )

    def _jailbreak(self, report: GuardReport, policy: Policy, verdict: _Verdict) -> None:
        if JAILBREAK_GUARD in report.errors or report.jailbreak is None:
            self._failed(JAILBREAK_GUARD, verdict)
            return
        threshold = self._threshold(policy)
        if policy.action == "off" or report.jailbreak < threshold:
            return
        verdict.add(JAILBREAK_GUARD, policy.action)
        if policy.action == "block":
            verdict.refuse(
                GuardRefusal(
                    JAILBREAK_GUARD,
                    True,
                    "The request was blocked: it looks like a prompt injection or jailbreak "
                    f"attempt (probability {report.jailbreak:.2f})",
                )
            )
        elif policy.action == "route":
            verdict.target = policy.model

    def _threshold(self, policy: Policy) -> float:
        return policy.threshold if policy.threshold is not None else self.signals.threshold

    def _pii(self, report: GuardReport, policy: Policy, verdict: _Verdict) -> None:
        if PII_GUARD in report.errors:
            self._failed(PII_GUARD, verdict)
            return
        if policy.action == "off" or not report.entities:
            return
        acted = [
            e for e in report.entities if policy.act_on is None or e.entity.type in policy.act_on
        ]
        if not acted:
            verdict.add(PII_GUARD, "flag", _types(list(report.entities)))
            return
        verdict.add(PII_GUARD, policy.action, _types(acted))
        if policy.action == "block":
            verdict.refuse(
                GuardRefusal(
                    PII_GUARD, True, f"The request was blocked: it contains PII ({_types(acted)})"
                )
            )
        elif policy.action == "route" and verdict.target is None:
            verdict.target = policy.model
        elif policy.action == "redact":
            verdict.redact = acted

    def _redact(self, context: StageContext, verdict: _Verdict) -> None:
        placeholders = Placeholders(self.config.max_placeholders)
        try:
            redact_messages(context.body, context.messages, verdict.redact, placeholders)
        except TooManyValues as exc:
            verdict.refuse(GuardRefusal(PII_GUARD, True, f"The request was blocked: {exc}"))
            return
        context.private = True
        context.rewriters.append(
            Restorer(placeholders.values, self.max_event_bytes, self.max_body_bytes)
        )

    def _trace(self, report: GuardReport, jailbreak: Policy, probe: bool) -> dict[str, Any]:
        """The classify contract's `guards` object; a served request's trace has no texts."""
        threshold = self._threshold(jailbreak)
        probability = report.jailbreak
        entities = [
            {
                "type": e.entity.type,
                **({"text": e.entity.text} if probe else {}),
                "start": e.entity.start,
                "end": e.entity.end,
                "score": round(e.entity.score, 4),
            }
            for e in report.entities
        ]
        return {
            JAILBREAK_GUARD: {
                "probability": round(probability, 4) if probability is not None else None,
                "flagged": probability is not None and probability >= threshold,
            },
            PII_GUARD: {"entities": entities, "flagged": bool(entities)},
        }
