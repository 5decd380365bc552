"""`ToolStage`: the pipeline stage that forwards only the tools a request is likely to call.

For a request with `tools`, under the keeping rules of its decision (`tools:` and
`tools.decisions.<name>`), it replaces `tools` in the backend's body by the kept tools in their
original order, sets `x-semrouter-tools: kept/total` and traces the kept tools with their scores.
The scores come from the signals (computed before the decision, against the routing text's
embedding); a request routed without signals (a direct model, a fallback) is scored here, on
its words alone. A decision with selection off forwards every tool (header `total/total`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from semrouter.config.schema import ToolsConfig
from semrouter.stages.base import Stage, StageContext
from semrouter.tools.keep import Keeping, kept_indices
from semrouter.tools.metrics import ToolMetrics
from semrouter.tools.scoring import ToolScorer
from semrouter.tools.text import tool_name

TOOLS_HEADER = "x-semrouter-tools"


class ToolStage(Stage):
    name = "tools"

    def __init__(
        self, config: ToolsConfig, scorer: ToolScorer, registry: CollectorRegistry | None = None
    ) -> None:
        """registry: where the tool metrics go (the scorer's included)."""
        self.scorer = scorer
        self.metrics = scorer.metrics = ToolMetrics(registry)
        self._default = Keeping.of(config)
        self._by_decision = {
            name: Keeping.of(config, override) for name, override in config.decisions.items()
        }

    def keeping(self, decision: str) -> Keeping | None:
        """The rules in force for a decision; None where selection is off."""
        return self._by_decision.get(decision, self._default)

    async def apply(self, context: StageContext) -> None:
        tools = context.request.tools
        if not tools:
            return
        keeping = self.keeping(context.decision)
        if keeping is None:
            self._count(context, len(tools), len(tools))
            return
        signals = context.signals
        scores = signals.tool_scores if signals is not None else None
        if scores is None:
            scores = await self.scorer.score(context.request, None)
        names = [tool_name(t) for t in tools]
        body = context.body
        kept = kept_indices(names, scores, keeping, body.get("tool_choice"), context.messages)
        if kept:
            body["tools"] = [tools[i] for i in kept]
        else:
            for key in ("tools", "tool_choice", "parallel_tool_calls"):
                body.pop(key, None)
        self._count(context, len(tools), len(kept))
        context.trace[self.name] = {
            "total": len(tools),
            "kept": [{"name": names[i], "score": round(float(scores[i]), 4)} for i in kept],
        }

    def _count(self, context: StageContext, total: int, kept: int) -> None:
        context.headers[TOOLS_HEADER] = f"{kept}/{total}"
        if not context.probe:
            self.metrics.offered.observe(total)
            self.metrics.kept.observe(kept)
