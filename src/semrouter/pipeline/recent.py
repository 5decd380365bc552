"""The recent routing decisions the dashboard lists: a bounded ring buffer the pipeline fills.

One entry per routed request, newest last: when, what the client was told in its
`x-semrouter-*` headers (decision, model, reasoning, domain, cache, tools, ...), the signals that
fired and the route time. No message content unless `dashboard.record_content` is on, and then
only the first `dashboard.content_chars` characters of the last user turn. `dashboard.
recent_decisions` entries at most (0: nothing is kept); the oldest goes first.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from semrouter.config.schema import DashboardConfig
from semrouter.pipeline.request import ChatRequest
from semrouter.pipeline.router import Route

HEADER_PREFIX = "x-semrouter-"


class RecentDecisions:
    def __init__(self, config: DashboardConfig) -> None:
        size = config.recent_decisions if config.enabled else 0
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._content_chars = config.content_chars if config.record_content else 0
        self.recorded = 0
        """Entries recorded since start (more than are kept once the buffer is full)."""

    @property
    def size(self) -> int:
        return self._entries.maxlen or 0

    def record(self, chat: ChatRequest, route: Route, headers: dict[str, str]) -> None:
        """One routed request; `headers`: those the client gets (after the stages)."""
        if not self.size:
            return
        self.recorded += 1
        entry: dict[str, Any] = {
            "time": time.time(),
            **{k.removeprefix(HEADER_PREFIX): v for k, v in headers.items()},
            "stream": chat.stream,
            "fired": sorted(route.signals.fired) if route.signals is not None else [],
        }
        if self._content_chars:
            entry["content"] = chat.routing_text()[: self._content_chars]
        self._entries.append(entry)

    def entries(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest `limit` entries (all without one), newest first."""
        newest = list(reversed(self._entries))
        return newest if limit is None else newest[: max(limit, 0)]
