"""`Stage` and `StageContext`: what every pipeline stage implements and what it is given.

`Pipeline.prepare` routes a request, rewrites its body for the chosen model, then hands one
`StageContext` to each configured stage in order (`await stage.apply(context)`) before the body
is serialised. A stage changes `body` in place (never `messages`, the client's), adds response
headers to `headers` and what /api/v1/classify should show to `trace` under its own name; it
refuses a request by raising the pipeline's RouterError.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from semrouter.config.schema import ModelConfig
from semrouter.signals.engine import SignalInput, SignalReport


@dataclass(slots=True)
class StageContext:
    """One request as the stages see it, after routing.

    messages: the client's messages (read only).
    body: the body the backend will get, already rewritten for `model`; stages change it.
    decision: the routing decision's name ('direct' for a request that named its model).
    model: the chosen model.
    request: the bounded view of the request the signals read (routing text, tools, context).
    signals: the SignalReport, None when no classification ran (direct model, fallback).
    headers: response headers to add (`x-semrouter-*`).
    trace: per stage, what it did, for /api/v1/classify.
    """

    messages: list[dict[str, Any]]
    body: dict[str, Any]
    decision: str
    model: ModelConfig
    request: SignalInput
    signals: SignalReport | None
    headers: dict[str, str] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)


class Stage(ABC):
    """A step of the request path after routing. Implementations are shared by every request
    (and both transports): per-request state belongs in the context, and every cache a stage
    keeps has a bound from config."""

    name: str
    """The key of this stage's entry in `StageContext.trace`."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources once, after the router has started (its embedder is running)."""

    @abstractmethod
    async def apply(self, context: StageContext) -> None:
        """Do this stage's work on one request; raise RouterError to refuse it."""
