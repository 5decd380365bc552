"""Per-request timings of the routing stages, taken where the work happens.

`timed("encode")` around a piece of the request path records how long it took in the request's
`Timings`, found through a context variable that the transport sets while the pipeline prepares
the request (`Observation.active`); outside a request it does nothing. Stages may nest (the
encoder pass runs inside the signals): each keeps its interval (for trace spans) and its own,
exclusive time (for the `semrouter_stage_seconds` histogram), so the stages of a request add up
to its routing time without counting the encoder twice.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType


@dataclass(slots=True)
class StageTime:
    """One timed stage: its interval (perf_counter_ns) and its time less its nested stages'."""

    name: str
    start_ns: int
    end_ns: int = 0
    own_ns: int = 0
    parent: int = -1
    """Index of the enclosing stage in `Timings.stages`, -1 at the top."""


class Timings:
    """The stages one request went through, in the order they started."""

    __slots__ = ("_open", "stages")

    def __init__(self) -> None:
        self.stages: list[StageTime] = []
        self._open: list[tuple[int, int]] = []  # (index, nested ns so far) of unfinished stages

    def enter(self, name: str) -> None:
        parent = self._open[-1][0] if self._open else -1
        self.stages.append(StageTime(name, time.perf_counter_ns(), parent=parent))
        self._open.append((len(self.stages) - 1, 0))

    def leave(self) -> None:
        index, nested = self._open.pop()
        stage = self.stages[index]
        stage.end_ns = time.perf_counter_ns()
        took = stage.end_ns - stage.start_ns
        stage.own_ns = took - nested
        if self._open:
            parent, parent_nested = self._open[-1]
            self._open[-1] = (parent, parent_nested + took)

    def own_seconds(self) -> dict[str, float]:
        """Each stage name's exclusive time (summed, if it ran more than once)."""
        totals: dict[str, float] = {}
        for stage in self.stages:
            if stage.end_ns:
                totals[stage.name] = totals.get(stage.name, 0.0) + stage.own_ns / 1e9
        return totals


CURRENT_TIMINGS: ContextVar[Timings | None] = ContextVar("semrouter_timings", default=None)


class timed:  # lowercase: used like a function, `with timed("encode"):`
    """Times the block as stage `name` of the current request (a no-op outside one)."""

    __slots__ = ("_name", "_timings")

    def __init__(self, name: str) -> None:
        self._name = name
        self._timings: Timings | None = None

    def __enter__(self) -> None:
        timings = self._timings = CURRENT_TIMINGS.get()
        if timings is not None:
            timings.enter(self._name)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._timings is not None:
            self._timings.leave()
