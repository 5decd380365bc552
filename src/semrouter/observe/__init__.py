"""Observability: Prometheus metrics in the GenAI conventions, per-stage timings, OpenTelemetry
traces and one JSON log line per request (docs/observability.md).

Below the signals in the layers, so any part of the request path can time itself
(`timed("encode")`); the pipeline and the transports drive an `Observation` per request.
"""

from semrouter.observe.observation import (
    NO_OBSERVATION,
    PROPAGATED_HEADERS,
    REQUEST_ID_HEADER,
    Observation,
    Observer,
    current_observation,
    request_id,
    tracing_wanted,
)
from semrouter.observe.timing import Timings, timed

__all__ = [
    "NO_OBSERVATION",
    "PROPAGATED_HEADERS",
    "REQUEST_ID_HEADER",
    "Observation",
    "Observer",
    "Timings",
    "current_observation",
    "request_id",
    "timed",
    "tracing_wanted",
]
