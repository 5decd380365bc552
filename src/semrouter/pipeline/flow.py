"""The request path both transports run, once: admission, parse, route, rewrite.

    Admission.enter → authenticate (headers only) → parse (request.py, bounded)
        → Router.route (deadline, fallback), with session affinity around it (semrouter.affinity:
          sticky, lock, escalated; before the rewrite) → authorize → Router.rewrite
        → the stages, in order (semrouter.stages: tool selection, the response cache, ...)
        → quota → Prepared

`semrouter serve` (proxy/app.py) and `semrouter extproc` (extproc/server.py) hand raw bytes and
headers to `Pipeline.prepare` and only move the result: the HTTP proxy forwards `Prepared.body`
itself, the ext_proc server returns it to Envoy as a body mutation. Nothing here knows which.
With `router.auth` on, each transport calls `Pipeline.authenticate` as soon as it has the
headers, so a request without a valid key (401) costs neither a body read nor a classification.
A stage may answer a request itself (`Prepared.answer`: the transport sends it, no backend
call) or ask to see the completed response (`Prepared.observers`: the transport keeps the body
in a `ResponseCapture` as it passes and finishes it when the response ended normally).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import Gauge

from semrouter.affinity import Affinity, Session
from semrouter.auth import TENANT_HEADER, AdminGate, KeyStore, Principal, Quotas, Rejection
from semrouter.cache import CacheStage
from semrouter.config.schema import ModelConfig, RouterConfig
from semrouter.decide.budget import BUDGET_PROBE, CURRENT_TENANT
from semrouter.guards import GuardRefusal, GuardStage
from semrouter.observe import Observer, current_observation, timed
from semrouter.pipeline.api import ClientApi
from semrouter.pipeline.errors import (
    PII_DETECTED,
    PROMPT_INJECTION,
    RouterError,
    bad_request,
    forbidden,
    guard_blocked,
    guard_unavailable,
    not_found,
    overloaded,
    quota_exceeded,
    unauthorized,
)
from semrouter.pipeline.metrics import PipelineMetrics
from semrouter.pipeline.recent import RecentDecisions
from semrouter.pipeline.request import (
    ChatRequest,
    chat_request_from_body,
    classify_input,
    message_text,
    parse_body,
    parse_chat_request,
)
from semrouter.pipeline.router import Route, Router
from semrouter.slo import SLO_HEADER, SloControl, Ticket
from semrouter.stages import (
    ResponseObserver,
    ResponseRewriter,
    Stage,
    StageAnswer,
    StageContext,
)
from semrouter.tools import ToolStage

OFF_LOOP_PARSE_BYTES = 256 * 1024
"""Bodies larger than this are parsed and checked in a worker thread: a 4 MiB body takes
milliseconds, which the event loop must not spend while other requests wait."""


@dataclass(slots=True)
class Prepared:
    """A request ready to forward: where it goes, the body the backend gets, and the
    `x-semrouter-*` headers the client gets. With router auth on, `key_name` is the client key's
    configured name and `tenant` what caches and budgets partition by (also in the headers as
    x-semrouter-tenant); both None with auth off. `answer`: a stage's own response (the
    backend is not called); `observers`: the stages that want the completed response;
    `rewriters`: what changes the response on its way to the client (the answer's too);
    `slo`: what the transport times the backend's answer with (a model with an SLO, the SLO
    controller on), see semrouter.slo."""

    chat: ChatRequest
    route: Route
    body: bytes
    headers: dict[str, str]
    tenant: str | None = None
    key_name: str | None = None
    answer: StageAnswer | None = None
    observers: list[ResponseObserver] = field(default_factory=list)
    rewriters: list[ResponseRewriter] = field(default_factory=list)
    slo: Ticket | None = None


class Admission:
    """Counts the requests in flight. Past `limit` a request is refused at once (503 with
    Retry-After) instead of waiting in a queue without bound. (On SIGTERM the servers stop
    taking requests themselves: uvicorn closes its listener and idle connections, gRPC refuses
    new streams.)"""

    def __init__(self, limit: int, gauge: Gauge | None = None) -> None:
        self.limit = limit
        self.in_flight = 0
        self._gauge = gauge

    def enter(self) -> None:
        if self.in_flight >= self.limit:
            raise overloaded(
                f"The router is serving {self.in_flight} requests, its limit", retry_after_s=1
            )
        self.in_flight += 1
        if self._gauge is not None:
            self._gauge.inc()

    def leave(self) -> None:
        self.in_flight -= 1
        if self._gauge is not None:
            self._gauge.dec()


class Pipeline:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.config: RouterConfig = router.config
        self.limits = self.config.router.limits
        self.max_body_bytes = self.config.router.max_body_bytes
        self.metrics = PipelineMetrics()
        self.observer = Observer(self.config.observe, self.metrics.registry)
        self.recent = RecentDecisions(self.config.dashboard)
        self.admission = Admission(self.limits.max_in_flight, self.metrics.in_flight)
        auth = self.config.router.auth
        self.keys = KeyStore.load(auth) if auth.enabled else None
        self.admin = AdminGate.load(auth) if auth.enabled else None
        self.quotas = Quotas(auth.keys)
        self.affinity = Affinity(self.config, router.decisions.fallback, self.metrics.registry)
        self.slo = SloControl(self.config, self.metrics.registry)
        scorer = router.tool_scorer
        self.stages: list[Stage] = (
            [ToolStage(self.config.tools, scorer, self.metrics.registry)] if scorer else []
        )
        # Last: its key covers what the other stages changed (the tools forwarded).
        self.stages.append(CacheStage(self.config.cache, router.embedder, self.metrics.registry))
        guards = router.signals.guards
        if guards is not None:
            # First: a guard's route action makes the body anew for its model; its redaction
            # marks the request private before the cache sees it.
            registry = self.metrics.registry
            self.stages.insert(0, GuardStage(self.config, guards, router.embedder, registry))

    async def start(self) -> None:
        self.observer.start()
        await self.router.start()
        await self.affinity.start()
        for stage in self.stages:
            await stage.start()

    async def close(self) -> None:
        for stage in self.stages:
            await stage.close()
        await self.affinity.close()
        await self.router.close()
        await asyncio.to_thread(self.observer.close)  # flushes the request log and spans

    async def parse(self, raw: bytes) -> ChatRequest:
        with timed("parse"):
            if len(raw) > OFF_LOOP_PARSE_BYTES:
                return await asyncio.to_thread(
                    parse_chat_request, raw, self.max_body_bytes, self.limits
                )
            return parse_chat_request(raw, self.max_body_bytes, self.limits)

    async def parse_api(self, raw: bytes, api: ClientApi) -> tuple[dict[str, Any], ChatRequest]:
        """A request of another client API: the client's body, and its translation."""
        if len(raw) > OFF_LOOP_PARSE_BYTES:
            return await asyncio.to_thread(self._translate, raw, api)
        return self._translate(raw, api)

    def _translate(self, raw: bytes, api: ClientApi) -> tuple[dict[str, Any], ChatRequest]:
        request = parse_body(raw, self.max_body_bytes, self.limits)
        translated = api.translate(request, self.limits)
        if not api.routed:
            model = translated.get("model")
            name = model if isinstance(model, str) else ""
            return request, ChatRequest(translated, name, [], False)
        return request, chat_request_from_body(translated, self.limits)

    def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        """The client the headers authenticate (None with router auth off); 401 without a valid
        key. Headers are looked up by lowercase name."""
        if self.keys is None:
            return None
        outcome = self.keys.authenticate(headers)
        if outcome is Rejection.INVALID_TENANT:
            raise bad_request(outcome.value, "invalid_tenant")
        if isinstance(outcome, Rejection):
            raise unauthorized(outcome.value)
        return outcome

    def authorize_admin(self, headers: Mapping[str, str], client_host: str | None) -> None:
        """The check of every admin endpoint (/metrics, the dashboard): with router auth on,
        the admin key (Bearer) when one is configured, else a loopback client; open with auth
        off. Raises 401 or 403."""
        if self.admin is None or self.admin.allows(headers, client_host):
            return
        if self.admin.has_key:
            raise unauthorized("This endpoint needs the admin key")
        raise forbidden(
            "This endpoint answers loopback clients only while no admin key is configured "
            f"(router.auth.admin_key_env: {self.config.router.auth.admin_key_env})"
        )

    async def prepare(
        self,
        raw: bytes,
        headers: Mapping[str, str],
        principal: Principal | None = None,
        api: ClientApi | None = None,
    ) -> Prepared:
        """Everything between the client's bytes and the backend's: raises RouterError.
        `principal`: what `authenticate` returned for these headers, if the transport called it
        already (with auth on and none given, the headers are authenticated here). `api`: the
        client API the request speaks (semrouter.apis), None for chat completions; its request
        is translated and routed as a chat request, and its rewriter comes last."""
        if principal is None:
            principal = self.authenticate(headers)
        if principal is None:
            return await self._prepare(raw, headers, None, api)
        try:
            prepared = await self._prepare(raw, headers, principal, api)
        except RouterError as error:
            self.metrics.client_requests.labels(principal.name, error.code).inc()
            raise
        self.metrics.client_requests.labels(principal.name, "routed").inc()
        return prepared

    async def _prepare(
        self,
        raw: bytes,
        headers: Mapping[str, str],
        principal: Principal | None,
        api: ClientApi | None,
    ) -> Prepared:
        if api is None:
            chat, request = await self.parse(raw), None
        else:
            request, chat = await self.parse_api(raw, api)
            if not api.routed:
                return self._pass_through(chat, principal, len(raw) // 4)
        if principal is not None and not self.router.is_auto(chat):
            self._authorize_model(principal, self.router.resolve_model(chat.model))
        tenant = principal.tenant if principal is not None else None
        CURRENT_TENANT.set(tenant)  # whose cost budget the selector spends (decide.budget)
        route, session = await self.route(chat, headers, tenant)
        if principal is not None and route.outcome is not None:
            self._authorize_model(principal, route.model)
            if not principal.may_take_decision(route.decision):
                raise forbidden(
                    f"API key '{principal.name}' may not use decision '{route.decision}'"
                )
        if session is not None and route.outcome is not None:
            self.affinity.record(session, route.outcome, route.signals)
        slo_header, _ = self.apply_slo(route)  # after affinity: sessions keep the full route
        self.metrics.routed(route)
        with timed("rewrite"):
            body = self.router.rewrite(chat, route)
        route_headers = route.headers()
        if slo_header is not None:
            route_headers[SLO_HEADER] = slo_header
        context = await self.run_stages(chat, route, body, route_headers, headers, tenant)
        _observe_route(chat, route, route_headers)
        if api is not None and request is not None:
            api.backend_body(body)
            if (rewriter := api.rewriter(request, self.limits)) is not None:
                context.rewriters.append(rewriter)  # last: the others see chat completions
        prepared = Prepared(
            chat,
            route,
            orjson.dumps(body),
            route_headers,
            answer=context.answer,
            observers=context.observers,
            rewriters=context.rewriters,
            slo=self.slo.ticket(route.model),
        )
        if principal is not None:
            self._charge(principal, estimated_tokens(chat, route, body))
            route_headers[TENANT_HEADER] = principal.tenant
            prepared.tenant, prepared.key_name = principal.tenant, principal.name
        self.recent.record(chat, route, route_headers)
        return prepared

    def apply_slo(
        self, route: Route, probe: bool = False
    ) -> tuple[str | None, dict[str, Any] | None]:
        """The SLO controller's degradation of a routed request (in place: its outcome, and
        its model when degraded to the alternative); the x-semrouter-slo header value and, for
        /api/v1/classify (probe), the trace. A request that named its model is never degraded."""
        if not self.slo.enabled or route.outcome is None:
            return None, None
        routed = route.model
        adjusted = self.slo.adjust(route.outcome, routed, probe)
        if adjusted is None:
            return None, None
        outcome, steps, header = adjusted
        if outcome.model != routed.name:
            model = self.router.resolve_model(outcome.model)
            assert model is not None  # the alternative is a model of the config
            route.model = model
        route.outcome = outcome
        return header, self.slo.trace(routed, steps) if probe else None

    def failover(self, prepared: Prepared) -> bool:
        """The TTFT watchdog found no first byte at any endpoint of the request's model: move
        it (body, route, headers, timing) to the model's SLO alternative. False: there is none."""
        source = prepared.route.model
        target = self.slo.failover_target(source)
        if target is None:
            return False
        body = orjson.loads(prepared.body)
        self.slo.retarget(body, prepared.route.outcome, target)
        prepared.body = orjson.dumps(body)
        prepared.route.model = target
        prepared.headers["x-semrouter-model"] = target.name
        earlier = prepared.headers.get(SLO_HEADER)
        note = f"failover={source.name}"
        prepared.headers[SLO_HEADER] = f"{earlier};{note}" if earlier else note
        prepared.slo = self.slo.ticket(target)
        self.slo.failed_over(source, target)
        return True

    async def route(
        self,
        chat: ChatRequest,
        headers: Mapping[str, str],
        tenant: str | None,
        probe: bool = False,
    ) -> tuple[Route, Session | None]:
        """The turn's route with session affinity applied (before the rewrite, so the model
        and reasoning mode it gives are what the backend gets); the session, to record."""
        if not self.affinity.enabled or not self.router.is_auto(chat):
            return await self.router.route(chat), None
        session = await self.affinity.open(chat.messages, headers, tenant)
        route = await self.router.route(chat, session.earlier_embeddings())
        if route.outcome is None:
            return route, session
        verdict = self.affinity.settle(
            session, route.outcome, route.signals, chat.messages, chat.body, probe
        )
        route.affinity = verdict.kind
        if verdict.outcome is not None:
            model = self.router.resolve_model(verdict.outcome.model)
            assert model is not None  # settle only keeps models of the config
            route.outcome, route.model = verdict.outcome, model
        return route, session

    async def run_stages(
        self,
        chat: ChatRequest,
        route: Route,
        body: dict[str, Any],
        headers: dict[str, str],
        client_headers: Mapping[str, str],
        tenant: str | None,
        probe: bool = False,
    ) -> StageContext:
        """The configured stages, in order, on the rewritten body (changed in place) and the
        response headers (added to), until one answers the request itself; returns their
        context (what each traced, by stage name; the answer; the response observers)."""
        context = StageContext(
            messages=chat.messages,
            body=body,
            decision=route.decision,
            model=route.model,
            request=route.input or self.router.signal_input(chat),
            signals=route.signals,
            headers=headers,
            client_headers=client_headers,
            tenant=tenant,
            probe=probe,
        )
        context.retarget = lambda model: self._retarget(chat, route, context, model)
        for stage in self.stages:
            with timed(stage.name):
                try:
                    await stage.apply(context)
                except GuardRefusal as refusal:
                    raise guard_error(refusal) from None
            if context.answer is not None:
                break
        return context

    def _retarget(
        self, chat: ChatRequest, route: Route, context: StageContext, model: ModelConfig
    ) -> None:
        """A stage sends the request to `model`: the route, the body (the same object, made
        anew) and the route's headers are the model's."""
        route.model = context.model = model
        fresh = self.router.rewrite(chat, route)
        context.body.clear()
        context.body.update(fresh)
        context.headers.update(route.headers())

    async def classify(
        self,
        raw: bytes,
        client_headers: Mapping[str, str] | None = None,
        principal: Principal | None = None,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """/api/v1/classify: the route of a text or messages (with `tools`, what the stages
        keep of them; what the cache would do for these headers and this client), and the
        headers a chat request would get, and the body the backend would get
        (`request_body`). Nothing is stored or counted."""
        chat = classify_input(raw, self.max_body_bytes, self.limits)
        chat.model = next(iter(self.config.router.auto_model_names))
        tenant = principal.tenant if principal is not None else None
        CURRENT_TENANT.set(tenant)
        BUDGET_PROBE.set(True)  # what the budget would choose, not counted against it
        route, _ = await self.route(chat, client_headers or {}, tenant, probe=True)
        slo_header, slo_trace = self.apply_slo(route, probe=True)
        body = self.router.rewrite(chat, route)  # before the headers: it plans the budget
        headers = route.headers()
        if slo_header is not None:
            headers[SLO_HEADER] = slo_header
        context = await self.run_stages(
            chat,
            route,
            body,
            headers,
            client_headers or {},
            tenant,
            probe=True,
        )
        summary = {**route.summary(), **context.trace, "request_body": context.body}
        if slo_trace is not None:
            summary["slo"] = slo_trace
        return summary, headers

    def _pass_through(
        self, chat: ChatRequest, principal: Principal | None, tokens: int
    ) -> Prepared:
        """A request not routed by meaning (/v1/embeddings): as it is, to the model
        `router.embeddings_model` names (404 without one), its `model` that backend's id."""
        name = self.config.router.embeddings_model
        model = self.router.resolve_model(name) if name is not None else None
        if model is None:
            raise not_found("No embedding backend is configured (router.embeddings_model)")
        route = Route(model, None, None, 0.0)
        body = orjson.dumps({**chat.body, "model": model.upstream_id})
        prepared = Prepared(chat, route, body, route.headers())
        if principal is not None:
            self._authorize_model(principal, model)
            self._charge(principal, tokens)
            prepared.headers[TENANT_HEADER] = principal.tenant
            prepared.tenant, prepared.key_name = principal.tenant, principal.name
        return prepared

    def _authorize_model(self, principal: Principal, model: ModelConfig | None) -> None:
        """403 for a model the key may not use (None, an unknown model, is routing's 404)."""
        if model is not None and not principal.may_use_model(model.name):
            raise forbidden(f"API key '{principal.name}' may not use model '{model.name}'")

    def _charge(self, principal: Principal, tokens: int) -> None:
        refusal = self.quotas.charge(principal.name, tokens)
        if refusal is None:
            return
        if refusal.retry_after_s is None:  # only a token cost can exceed a minute's allowance
            raise quota_exceeded(
                f"This request needs {refusal.cost} tokens, more than API key "
                f"'{principal.name}' may use in a minute ({refusal.limit}: {refusal.per_minute})",
                None,
            )
        raise quota_exceeded(
            f"API key '{principal.name}' is over its {refusal.limit} ({refusal.per_minute}); "
            f"this request fits in {refusal.retry_after_s:.1f}s",
            refusal.retry_after_s,
        )


def _observe_route(chat: ChatRequest, route: Route, headers: Mapping[str, str]) -> None:
    """Tell the request's observation (semrouter.observe) where it goes."""
    observation = current_observation()
    if observation is None:
        return
    signals = route.signals
    observation.routed(
        route.decision,
        route.model.name,
        route.model.upstream_id,
        signals.fired if signals is not None else (),
        headers,
        chat.routing_text() if observation.wants_content else None,
    )


def guard_error(refusal: GuardRefusal) -> RouterError:
    """A guard's refusal as the catalogue's error: 403 for a block policy, 503 for a guard that
    failed (guards.on_error: block)."""
    if not refusal.blocked:
        return guard_unavailable(refusal.message)
    code = PROMPT_INJECTION if refusal.guard == "jailbreak" else PII_DETECTED
    return guard_blocked(refusal.message, code)


def estimated_tokens(chat: ChatRequest, route: Route, body: Mapping[str, object]) -> int:
    """What a request costs against tokens_per_minute: its prompt tokens (the signals' count
    when it was classified, else its messages' characters / 4) plus the most the backend may
    generate (max_tokens or max_completion_tokens of the body it gets: the client's, capped by
    the decision's max_tokens; 0 when neither is set)."""
    if route.signals is not None and route.signals.tokens:
        prompt = route.signals.tokens
    else:
        prompt = sum(len(message_text(m)) for m in chat.messages) // 4
    limits = [body.get(k) for k in ("max_tokens", "max_completion_tokens")]
    return prompt + max((n for n in limits if isinstance(n, int)), default=0)


__all__ = ["Admission", "Pipeline", "Prepared", "RouterError"]
