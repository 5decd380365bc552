"""The interface of the request-path stages (tools, cache, later guards, budgets, affinity).

Owns only the contract: `Stage`, the step `semrouter.pipeline.flow.Pipeline.prepare` runs after
routing, and `StageContext`, the plain data a stage reads and changes. It sits below the stage
packages, so they implement it without importing `semrouter.pipeline`; both transports run the
stages through that one Pipeline.
"""

from semrouter.stages.base import (
    CompletedResponse,
    ResponseCapture,
    ResponseObserver,
    ResponseRewriter,
    RewriteChain,
    Stage,
    StageAnswer,
    StageContext,
)

__all__ = [
    "CompletedResponse",
    "ResponseCapture",
    "ResponseObserver",
    "ResponseRewriter",
    "RewriteChain",
    "Stage",
    "StageAnswer",
    "StageContext",
]
