"""Router-enforced thinking budgets in `semrouter serve` (the router owns the upstream call).

semrouter.reasoning.thinking_budget counts and builds the continuation; this module makes the
calls and gives the client one response, shaped like an `UpstreamResponse`:

- SSE: the first call's events are relayed as they come, each counted. At the budget the
  upstream request is closed (so the backend never produces more than the budget plus the chunk
  that reached it), a bridge delta is sent (the forcing phrase and `</think>`), then the
  continuation's events in the same stream (its role delta dropped, its ids the first call's;
  its usage, when the client asked for usage, adds the cut call's: the tokens counted, and the
  continuation's prompt less the prefix, an estimate since a cut stream carries no usage).
  The header can only say what was planned (`thinking=64,router`); the final state comes as a
  comment event before `[DONE]`: `: x-semrouter-budget: thinking=64/64,cut`.
- A request for several choices (`n` > 1), or one not sent as chat (the legacy completions
  API), is only capped, at max_tokens = budget + 1024 (`thinking=B,max_tokens`): one
  continuation cannot carry several choices on.
- JSON: the first call is capped at max_tokens = budget (unless the client's own cap is lower).
  If it stopped at that cap inside the thought, the continuation forces the answer; if after
  it, the continuation finishes the answer (no forcing). One chat.completion comes back with
  both calls' usage, and the final `x-semrouter-budget` header.

Each enforced request's outcome is counted: `semrouter_thinking_budget_total{model, outcome}`
(`cut` or `within`).

A continuation that fails is a backend failure like any other (502 before anything was sent,
an error event after).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

import orjson

from semrouter.config.schema import ModelConfig
from semrouter.pipeline.errors import RouterError, backend_invalid, backend_unavailable
from semrouter.proxy.metrics import Metrics
from semrouter.proxy.upstream import UpstreamResponse, Upstreams
from semrouter.reasoning.thinking_budget import (
    BUDGET_HEADER,
    CAP_ANSWER_TOKENS,
    REASONING_FIELDS,
    BudgetPlan,
    ThinkingCounter,
    add_usage,
    budget_header,
    cap_max_tokens,
    continuation_body,
    count_tokens,
    opens_thought,
    prefill,
)

PATH = "/chat/completions"
OFF_LOOP_JSON_BYTES = 256 * 1024
"""Bodies larger than this are parsed and serialised in a worker thread."""
_EVENT_END = re.compile(rb"\r?\n\r?\n")


async def _loads(raw: bytes) -> Any:
    if len(raw) > OFF_LOOP_JSON_BYTES:
        return await asyncio.to_thread(orjson.loads, raw)
    return orjson.loads(raw)


async def _dumps(data: Any, large: bool) -> bytes:
    """large: data came from a body over OFF_LOOP_JSON_BYTES."""
    return await asyncio.to_thread(orjson.dumps, data) if large else orjson.dumps(data)


def _events(chunk: bytes) -> list[tuple[bytes, bytes | None]]:
    """Whole SSE events (as relayed by UpstreamResponse.chunks): (raw event, its data or None)."""
    out: list[tuple[bytes, bytes | None]] = []
    for raw in _EVENT_END.split(chunk):
        if not raw:
            continue
        data = [line[5:].lstrip(b" ") for line in raw.splitlines() if line.startswith(b"data:")]
        out.append((raw + b"\n\n", b"\n".join(data) if data else None))
    return out


def _delta(event: dict[str, Any]) -> dict[str, Any]:
    choices = event.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        delta = choices[0].get("delta")
        return delta if isinstance(delta, dict) else {}
    return {}


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    values = [body.get(k) for k in ("max_tokens", "max_completion_tokens")]
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return min(ints) if ints else None


class BudgetedResponse:
    """A backend response whose thinking the router holds to a budget; errors and
    non-chat answers of the first call pass through untouched."""

    def __init__(
        self,
        upstreams: Upstreams,
        model: ModelConfig,
        body: dict[str, Any],
        client_headers: Mapping[str, str],
        plan: BudgetPlan,
        first: UpstreamResponse,
        capped: bool,
        large: bool,
        metrics: Metrics,
    ) -> None:
        self._upstreams = upstreams
        self._metrics = metrics
        self._model = model
        self._body = body
        self._client_headers = client_headers
        self._first = first
        self._capped = capped
        self._large = large
        self.budget = plan.budget
        self._how = plan.how
        self.counter = ThinkingCounter(
            plan.budget, opens_thought(prefill(body.get("messages") or []))
        )
        self.status = first.status
        self.content_type = first.content_type
        self.headers = first.headers
        self.is_event_stream = first.is_event_stream
        self.budget_header = plan.header()
        """Planned until the body was read or streamed to its end, then the final state."""

    def _settle(self, used: int, cut: bool) -> None:
        """The final state: the header value, and the metric."""
        self.budget_header = budget_header(used, self.budget, cut)
        outcome = "cut" if cut else "within"
        self._metrics.thinking_budgets.labels(self._model.name, outcome).inc()

    @property
    def _enforcing(self) -> bool:
        return self._how == "router" and 200 <= self.status < 300

    async def _continue(self, prefix: str, used: int, stream: bool) -> UpstreamResponse:
        body = continuation_body(self._body, prefix, used, stream)
        response = await self._upstreams.post(
            self._model, PATH, await _dumps(body, self._large), self._client_headers
        )
        if 200 <= response.status < 300 and response.is_event_stream == stream:
            return response
        with contextlib.suppress(RouterError):
            await response.read()  # releases the connection
        raise backend_unavailable(
            self._model.name, f"the thinking-budget continuation failed (HTTP {response.status})"
        )

    # --- JSON ---------------------------------------------------------------------------

    async def read(self) -> bytes:
        payload = await self._first.read()
        if not self._enforcing:
            return payload
        first = await _loads(payload)
        choice = _choice(first)
        if choice is None:
            return payload
        message = choice.get("message")
        self.counter.feed(message if isinstance(message, dict) else {})
        counter = self.counter
        if not (self._capped and choice.get("finish_reason") == "length"):
            self._settle(counter.tokens, False)
            return payload
        forcing = counter.open_thought
        generated = (first.get("usage") or {}).get("completion_tokens")
        used = generated if isinstance(generated, int) else counter.tokens
        usage = first.get("usage")
        if forcing and isinstance(usage, dict):  # the cut call's output was all thought
            usage.setdefault("completion_tokens_details", {"reasoning_tokens": used})
        second_response = await self._continue(counter.prefix(forcing), used, stream=False)
        second = await _loads(await second_response.read())
        if _choice(second) is None:
            raise backend_invalid(self._model.name, "the continuation has no choices")
        bridge = counter.bridge() if forcing else {}
        self._settle(used if forcing else counter.tokens, forcing)
        return await _dumps(merge_completions(first, second, bridge), self._large)

    # --- SSE ----------------------------------------------------------------------------

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        if not self._enforcing:
            async with aclosing(self._first.chunks()) as passthrough:
                async for chunk in passthrough:
                    yield chunk
            return
        counter = self.counter
        first_event: dict[str, Any] | None = None
        async with aclosing(self._first.chunks()) as events:
            async for chunk in events:
                if counter.closed:
                    yield self._before_done(chunk)
                    continue
                ended = False
                for _, data in _events(chunk):
                    event = orjson.loads(data) if data and data != b"[DONE]" else None
                    if not isinstance(event, dict):  # SseEvents checked the data is JSON
                        ended = ended or data == b"[DONE]"
                        continue
                    first_event = first_event or event
                    counter.feed(_delta(event))
                    ended = ended or _finish(event)
                if counter.exhausted and not ended:
                    yield chunk
                    break  # leaving `async with` closes the upstream request
                yield self._before_done(chunk)
            else:
                return
        prefix = counter.prefix(forcing=True)
        second = await self._continue(prefix, counter.tokens, stream=True)
        template = first_event or {}
        ids: dict[str, Any] = {k: template[k] for k in ("id", "created", "model") if k in template}
        yield _sse({**template, **ids, "choices": [_bridge_choice(counter.bridge())]})
        async with aclosing(second.chunks()) as events:
            async for chunk in events:
                yield self._continuation_chunk(chunk, ids, prefix)

    def _continuation_chunk(self, chunk: bytes, ids: dict[str, Any], prefix: str) -> bytes:
        out = bytearray()
        for raw, data in _events(chunk):
            if data is None:
                out += raw
                continue
            if data == b"[DONE]":
                out += self._final_comment(True) + raw
                continue
            event = orjson.loads(data)
            if not isinstance(event, dict):
                out += raw
                continue
            delta = _delta(event)
            if (
                set(delta) <= {"role", "content"}
                and not delta.get("content")
                and not (event.get("usage") or _finish(event))
            ):
                continue  # the continuation's opening role delta: the client had one
            usage = event.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
                prompt = max(0, usage["prompt_tokens"] - count_tokens(prefix))
                completion = self.counter.tokens
                cut = {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                    "completion_tokens_details": {"reasoning_tokens": completion},
                }
                event["usage"] = add_usage(cut, usage)
            out += _sse({**event, **ids})
        return bytes(out)

    def _before_done(self, chunk: bytes) -> bytes:
        """The chunk (of a stream that was not cut), with the final-state comment before
        `[DONE]` if it carries it."""
        at = max(chunk.rfind(b"data: [DONE]"), chunk.rfind(b"data:[DONE]"))
        if at < 0:
            return chunk
        return chunk[:at] + self._final_comment(False) + chunk[at:]

    def _final_comment(self, cut: bool) -> bytes:
        self._settle(self.counter.tokens, cut)
        return f": {BUDGET_HEADER}: {self.budget_header}\n\n".encode()


def _choice(completion: Any) -> dict[str, Any] | None:
    if not isinstance(completion, dict):
        return None
    choices = completion.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def _finish(event: dict[str, Any]) -> bool:
    choices = event.get("choices")
    return bool(choices and isinstance(choices[0], dict) and choices[0].get("finish_reason"))


def _bridge_choice(delta: dict[str, str]) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}


def merge_completions(
    first: dict[str, Any], second: dict[str, Any], bridge: Mapping[str, str]
) -> dict[str, Any]:
    """One chat.completion from a cut first call, the bridge and the continuation: the texts
    joined, the continuation's finish_reason, the first call's id, both calls' usage."""
    first_choice, second_choice = _choice(first), _choice(second)
    assert first_choice is not None and second_choice is not None
    before = first_choice.get("message") or {}
    after = second_choice.get("message") or {}
    message = dict(after)
    for key in ("content", *REASONING_FIELDS):
        parts = [m.get(key) for m in (before, bridge, after)]
        texts = [p for p in parts if isinstance(p, str)]
        if texts:
            message[key] = "".join(texts)
    merged = {**second, "id": first.get("id", second.get("id"))}
    merged["choices"] = [{**second_choice, "message": message}]
    usage = add_usage(first.get("usage"), second.get("usage"))
    if usage is not None:
        merged["usage"] = usage
    return merged


class ThinkingBudgets:
    """Posts chat requests whose thinking the router enforces (plans with how == "router")."""

    def __init__(self, upstreams: Upstreams, metrics: Metrics) -> None:
        self.upstreams = upstreams
        self.metrics = metrics

    async def post(
        self,
        model: ModelConfig,
        path: str,
        body_bytes: bytes,
        client_headers: Mapping[str, str],
        plan: BudgetPlan,
        first_byte_s: float | None = None,
    ) -> BudgetedResponse:
        """The first call (first_byte_s: the TTFT watchdog's, for it); raises RouterError as
        Upstreams.post does."""
        body = await _loads(body_bytes)
        first_body = body
        capped = False
        # Several choices, or a body that is not chat (the legacy completions API): no
        # continuation can carry them on, so the budget is a max_tokens cap.
        if body.get("n", 1) != 1 or path != PATH:
            plan = BudgetPlan(plan.budget, "max_tokens")
            first_body = dict(body)
            cap_max_tokens(first_body, plan.budget + CAP_ANSWER_TOKENS)
        elif body.get("stream") is not True:
            limit = _max_tokens(body)
            if limit is None or limit > plan.budget:
                first_body = dict(body)
                cap_max_tokens(first_body, plan.budget)
                capped = True
        large = len(body_bytes) > OFF_LOOP_JSON_BYTES
        first = await self.upstreams.post(
            model,
            path,
            body_bytes if first_body is body else await _dumps(first_body, large),
            client_headers,
            first_byte_s,
        )
        return BudgetedResponse(
            self.upstreams, model, body, client_headers, plan, first, capped, large, self.metrics
        )
