"""`Affinity`: the routing step between the per-turn route and the rewrite.

    open (the session's state) → the router routes the turn (with the `reask` comparison
    against the session's earlier user turns) → settle (the route affinity gives) → rewrite
    → record (the session's new state)

A request's session is its `x-semrouter-session` header, else a hash of its first turns (the
system prompt and the first user turn, `affinity.identity_chars` of each), per tenant; either
way the key is a fixed-size digest, whatever the client sends. `settle` says, for every
auto-routed request, which of these applied (header `x-semrouter-affinity`, and the route's
summary in /api/v1/classify):

  new          no state for the session yet (its first turn, or expired): the turn's route
  lock         a tool loop (the last messages are tool results for the assistant's calls) or a
               provider continuation id: back to the session's model, whatever the signals say
  escalated    an escalation signal fired (`affinity.escalate_on`, reasoning-need at or above
               `escalate_reasoning`): the turn's own route, which the session then keeps
  sticky       otherwise: the session's model and reasoning mode
  unavailable  the shared store failed: the turn's route (never an error)

Both transports call this one object through `Pipeline`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from semrouter.affinity.store import AffinityStore, AffinityUnavailable, MemoryStore, SessionState
from semrouter.config.schema import RouterConfig
from semrouter.decide.engine import Outcome
from semrouter.signals.conversation import in_tool_loop, user_turns
from semrouter.signals.engine import SignalReport

SESSION_HEADER = "x-semrouter-session"
AFFINITY_HEADER = "x-semrouter-affinity"
MAX_PENDING_WRITES = 256
"""Writes to a shared store in flight; past it a session's update is dropped (it stays on its
previous state) rather than queued without bound."""
_SYSTEM_ROLES = frozenset({"system", "developer"})


@dataclass(slots=True)
class Session:
    """One request's session: its key (None with affinity off), its stored state, whether the
    store failed, and the request's user turns."""

    key: str | None
    state: SessionState | None = None
    unavailable: bool = False
    turns: int = 0

    def earlier_embeddings(self) -> Sequence[np.ndarray]:
        """The session's earlier user turns, when this request brings a new one (a tool-loop
        request repeats the last user turn: it is no re-ask)."""
        if self.state is None or self.turns <= self.state.turns:
            return ()
        return self.state.embeddings


@dataclass(frozen=True, slots=True)
class Verdict:
    """What affinity did: its kind (module docstring) and the outcome to use instead of the
    turn's own (None: keep it)."""

    kind: str
    outcome: Outcome | None = None


def _text(message: Mapping[str, Any], limit: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content[:limit]
    if isinstance(content, list):
        parts = (p.get("text") for p in content if isinstance(p, dict))
        return "\n".join(p for p in parts if isinstance(p, str))[:limit]
    return ""


def session_key(
    messages: Sequence[Mapping[str, Any]],
    headers: Mapping[str, str],
    tenant: str | None,
    identity_chars: int,
) -> str:
    """The session's fixed-size key: the header's digest, or that of the first turns."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{tenant or ''}\x00".encode())
    explicit = headers.get(SESSION_HEADER)
    if explicit:
        digest.update(b"h\x00" + explicit.encode("utf-8", "replace"))
        return digest.hexdigest()
    digest.update(b"c\x00")
    for message in messages:
        role = message.get("role")
        if role in _SYSTEM_ROLES:
            digest.update(_text(message, identity_chars).encode("utf-8", "replace") + b"\x00")
        elif role == "user":
            digest.update(_text(message, identity_chars).encode("utf-8", "replace"))
            break
    return digest.hexdigest()


class Affinity:
    def __init__(
        self,
        config: RouterConfig,
        outcome_for: Callable[[str], Outcome],
        registry: CollectorRegistry | None = None,
    ) -> None:
        """outcome_for: the outcome of a decision by name (its prompt and cap), which a
        session's route is rebuilt from."""
        self.config = config.affinity
        self.enabled = self.config.backend != "off"
        self.reask_turns = config.router.conversation.reask_turns
        self._models = {m.name for m in config.models}
        self._outcome_for = outcome_for
        self._pending: set[asyncio.Task[None]] = set()
        self.store: AffinityStore = self._store()
        self.decisions = Counter(
            "semrouter_affinity",
            "Auto-routed requests by what session affinity did (new, sticky, lock, escalated, "
            "unavailable).",
            ["kind"],
            registry=registry,
        )
        self.store_errors = Counter(
            "semrouter_affinity_store_errors",
            "Session store calls that failed or timed out, by operation.",
            ["op"],
            registry=registry,
        )

    def _store(self) -> AffinityStore:
        if self.config.backend == "redis":
            from semrouter.affinity.redis import RedisStore

            return RedisStore(self.config.redis, self.config.ttl_s)
        return MemoryStore(self.config.max_sessions, self.config.ttl_s)

    async def start(self) -> None:
        if self.enabled:
            await self.store.start()

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.store.close()

    async def open(
        self,
        messages: Sequence[Mapping[str, Any]],
        headers: Mapping[str, str],
        tenant: str | None,
    ) -> Session:
        if not self.enabled:
            return Session(None)
        key = session_key(messages, headers, tenant, self.config.identity_chars)
        session = Session(key, turns=user_turns(messages))
        try:
            session.state = await self.store.get(key)
        except AffinityUnavailable:
            self.store_errors.labels("get").inc()
            session.unavailable = True
        return session

    def settle(
        self,
        session: Session,
        outcome: Outcome,
        signals: SignalReport | None,
        messages: Sequence[Mapping[str, Any]],
        body: Mapping[str, Any],
        probe: bool = False,
    ) -> Verdict:
        """The route affinity gives this auto-routed turn (see the module docstring)."""
        verdict = self._verdict(session, outcome, signals, messages, body)
        if not probe:
            self.decisions.labels(verdict.kind).inc()
        return verdict

    def _verdict(
        self,
        session: Session,
        outcome: Outcome,
        signals: SignalReport | None,
        messages: Sequence[Mapping[str, Any]],
        body: Mapping[str, Any],
    ) -> Verdict:
        if session.unavailable:
            return Verdict("unavailable")
        state = session.state
        if state is None or state.model not in self._models:
            return Verdict("new")
        kept = self._session_outcome(state, outcome)
        continuing = any(body.get(name) for name in self.config.continuation_fields)
        if continuing or (self.config.lock_tool_loops and in_tool_loop(messages)):
            return Verdict("lock", kept)
        if self._escalates(signals) and _route_of(outcome) != _route_of(kept):
            return Verdict("escalated")
        return Verdict("sticky", None if _route_of(outcome) == _route_of(kept) else kept)

    def _session_outcome(self, state: SessionState, outcome: Outcome) -> Outcome:
        if _route_of(outcome) == (state.model, state.reasoning, state.effort):
            return outcome
        base = self._outcome_for(state.decision)
        return dataclasses.replace(
            base,
            decision=state.decision,
            model=state.model,
            use_reasoning=state.reasoning,
            reasoning_effort=state.effort,  # type: ignore[arg-type]
            matched_signals=outcome.matched_signals,
        )

    def _escalates(self, signals: SignalReport | None) -> bool:
        if signals is None:
            return False
        if any(name in signals.fired for name in self.config.escalate_on):
            return True
        threshold = self.config.escalate_reasoning
        p = signals.reasoning_probability
        return threshold is not None and p is not None and p >= threshold

    def record(self, session: Session, outcome: Outcome, signals: SignalReport | None) -> None:
        """Store the session's route after this request (its new user turn's embedding kept
        for `reask`). A shared store is written in the background, never awaited."""
        previous = session.state
        if session.key is None or session.unavailable:
            return
        if signals is None and previous is None:
            return  # a fallback route (deadline, encoder down) does not start a session
        embeddings = list(previous.embeddings) if previous is not None else []
        new_turn = previous is None or session.turns > previous.turns
        if new_turn and signals is not None and signals.embedding is not None:
            embeddings.append(signals.embedding.astype(np.float16))
        embeddings = embeddings[-self.reask_turns :] if self.reask_turns else []
        state = SessionState(
            outcome.model,
            outcome.use_reasoning,
            outcome.reasoning_effort,
            outcome.decision,
            session.turns,
            embeddings,
        )
        if isinstance(self.store, MemoryStore):
            self.store.put_now(session.key, state)  # in-process: the next turn sees it at once
            return
        if len(self._pending) >= MAX_PENDING_WRITES:
            self.store_errors.labels("too_many_pending").inc()
            return
        task = asyncio.ensure_future(self._put(session.key, state))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _put(self, key: str, state: SessionState) -> None:
        try:
            await self.store.put(key, state)
        except AffinityUnavailable:
            self.store_errors.labels("put").inc()


def _route_of(outcome: Outcome) -> tuple[str, bool, str | None]:
    return outcome.model, outcome.use_reasoning, outcome.reasoning_effort
