"""The error catalogue: every way a request can fail, with its HTTP status, type and code.

The pipeline and the transports raise `RouterError`s built by the constructors below and
nowhere else; each transport renders one the same way (OpenAI's error shape, plus any
`Retry-After`), so a client sees the same answer through `semrouter serve` and through Envoy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import orjson


@dataclass(frozen=True, slots=True)
class Kind:
    status: int
    type: str
    code: str


class ErrorKind(Enum):
    """Every kind of RouterError. The value is (HTTP status, OpenAI error type, code)."""

    INVALID_REQUEST = Kind(400, "invalid_request_error", "invalid_request")
    UNAUTHORIZED = Kind(401, "authentication_error", "invalid_api_key")
    FORBIDDEN = Kind(403, "permission_error", "forbidden")
    NOT_FOUND = Kind(404, "invalid_request_error", "not_found")
    MODEL_NOT_FOUND = Kind(404, "invalid_request_error", "model_not_found")
    METHOD_NOT_ALLOWED = Kind(405, "invalid_request_error", "method_not_allowed")
    REQUEST_TOO_LARGE = Kind(413, "invalid_request_error", "request_too_large")
    HEADERS_TOO_LARGE = Kind(431, "invalid_request_error", "headers_too_large")
    REQUEST_TIMEOUT = Kind(408, "invalid_request_error", "request_timeout")
    RATE_LIMITED = Kind(429, "rate_limit_error", "rate_limit_exceeded")
    OVERLOADED = Kind(503, "api_error", "overloaded")
    INTERNAL = Kind(500, "api_error", "internal_error")
    BACKEND_UNAVAILABLE = Kind(502, "api_error", "backend_unavailable")
    BACKEND_INVALID = Kind(502, "api_error", "backend_invalid_response")
    BACKEND_TOO_LARGE = Kind(502, "api_error", "backend_response_too_large")
    BACKEND_TIMEOUT = Kind(504, "api_error", "backend_timeout")
    NO_BACKEND = Kind(503, "api_error", "no_backend_available")
    EMBEDDING_UNAVAILABLE = Kind(503, "api_error", "embedding_unavailable")
    GUARD_BLOCKED = Kind(403, "permission_error", "guard_blocked")
    GUARD_UNAVAILABLE = Kind(503, "api_error", "guard_unavailable")


class RouterError(Exception):
    """A request that cannot be served; carries the HTTP status and the OpenAI error fields.

    `code` may refine the kind's code (e.g. `invalid_messages` for a 400); `retry_after_s`
    becomes a `Retry-After` header (whole seconds, rounded up).
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = kind.value.status
        self.type = kind.value.type
        self.code = code or kind.value.code
        self.retry_after_s = retry_after_s

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "code": self.code}}
        )

    def headers(self) -> dict[str, str]:
        """Headers every transport sends with this error (besides content-type)."""
        if self.retry_after_s is None:
            return {}
        return {"retry-after": str(max(1, math.ceil(self.retry_after_s)))}


def bad_request(message: str, code: str = "invalid_request") -> RouterError:
    return RouterError(ErrorKind.INVALID_REQUEST, message, code=code)


def not_found(message: str = "Not Found") -> RouterError:
    return RouterError(ErrorKind.NOT_FOUND, message)


def model_not_found(name: str) -> RouterError:
    return RouterError(ErrorKind.MODEL_NOT_FOUND, f"The model '{name}' does not exist")


def method_not_allowed() -> RouterError:
    return RouterError(ErrorKind.METHOD_NOT_ALLOWED, "Method Not Allowed")


def body_too_large(size: int | None, limit: int) -> RouterError:
    what = "Request body" if size is None else f"Request body of {size} bytes"
    return RouterError(
        ErrorKind.REQUEST_TOO_LARGE, f"{what} exceeds the limit of {limit} bytes"
    )


def too_large(message: str, code: str = "request_too_large") -> RouterError:
    """A request within the byte limit whose content exceeds another limit (messages, tools)."""
    return RouterError(ErrorKind.REQUEST_TOO_LARGE, message, code=code)


def headers_too_large(size: int, limit: int) -> RouterError:
    return RouterError(
        ErrorKind.HEADERS_TOO_LARGE, f"Request headers of {size} bytes exceed the limit of {limit}"
    )


def unauthorized(message: str) -> RouterError:
    """No valid client key (router.auth): the message never repeats what the client sent."""
    return RouterError(ErrorKind.UNAUTHORIZED, message)


def forbidden(message: str) -> RouterError:
    return RouterError(ErrorKind.FORBIDDEN, message)


def quota_exceeded(message: str, retry_after_s: float | None) -> RouterError:
    """A client key over its requests or tokens per minute. Without retry_after_s the request
    can never fit (it is larger than the whole limit)."""
    code = "rate_limit_exceeded" if retry_after_s is not None else "request_exceeds_quota"
    return RouterError(ErrorKind.RATE_LIMITED, message, code=code, retry_after_s=retry_after_s)


def request_timeout(part: str, seconds: float) -> RouterError:
    """The client did not send the request's headers or body within the limit (slowloris, or
    a Content-Length longer than what it sends)."""
    return RouterError(
        ErrorKind.REQUEST_TIMEOUT, f"Request {part} not received within {seconds:g}s"
    )


def internal_error() -> RouterError:
    return RouterError(ErrorKind.INTERNAL, "Internal router error")


def overloaded(message: str, retry_after_s: float) -> RouterError:
    return RouterError(ErrorKind.OVERLOADED, message, retry_after_s=retry_after_s)


def embedding_unavailable(detail: str, retry_after_s: float = 1.0) -> RouterError:
    return RouterError(
        ErrorKind.EMBEDDING_UNAVAILABLE,
        f"The embedding engine is unavailable: {detail}",
        retry_after_s=retry_after_s,
    )


PROMPT_INJECTION = "prompt_injection"
PII_DETECTED = "pii_detected"


def guard_blocked(message: str, code: str) -> RouterError:
    """A safety guard's block policy (semrouter.guards): `code` is PROMPT_INJECTION or
    PII_DETECTED. The message names what was found, never the content."""
    return RouterError(ErrorKind.GUARD_BLOCKED, message, code=code)


def guard_unavailable(message: str) -> RouterError:
    """A guard that could not give its verdict, with guards.on_error: block."""
    return RouterError(ErrorKind.GUARD_UNAVAILABLE, message, retry_after_s=1.0)


def backend_unavailable(model: str, detail: str, retry_after_s: float | None = None) -> RouterError:
    return RouterError(
        ErrorKind.BACKEND_UNAVAILABLE,
        f"Backend for model '{model}' is unavailable: {detail}",
        retry_after_s=retry_after_s,
    )


def backend_timeout(model: str, seconds: float) -> RouterError:
    return RouterError(
        ErrorKind.BACKEND_TIMEOUT, f"Backend for model '{model}' did not answer within {seconds:g}s"
    )


def backend_stalled(model: str, seconds: float) -> RouterError:
    """The backend sent headers, then nothing for `seconds` (an idle read timeout)."""
    return RouterError(
        ErrorKind.BACKEND_TIMEOUT,
        f"Backend for model '{model}' went silent for {seconds:g}s mid-response",
    )


FIRST_BYTE_TIMEOUT = "backend_first_byte_timeout"


def backend_first_byte_timeout(model: str, seconds: float) -> RouterError:
    """A streamed answer's first body byte did not come within the model's TTFT watchdog
    (`models[].slo.first_byte_timeout_ms`); nothing was sent to the client yet."""
    return RouterError(
        ErrorKind.BACKEND_TIMEOUT,
        f"Backend for model '{model}' sent no first byte within {seconds:g}s",
        code=FIRST_BYTE_TIMEOUT,
    )


def backend_rate_limited(model: str, detail: str, retry_after_s: float | None) -> RouterError:
    return RouterError(
        ErrorKind.RATE_LIMITED,
        f"Backend for model '{model}' is rate-limiting: {detail}",
        retry_after_s=retry_after_s,
    )


def no_backend_available(model: str, retry_after_s: float) -> RouterError:
    """Every endpoint of the model is out of rotation (circuit open, or its Retry-After)."""
    return RouterError(
        ErrorKind.NO_BACKEND,
        f"Every endpoint of model '{model}' is out of rotation (failing or rate-limited)",
        retry_after_s=retry_after_s,
    )


def backend_invalid(model: str, detail: str) -> RouterError:
    return RouterError(
        ErrorKind.BACKEND_INVALID, f"Backend for model '{model}' sent an invalid response: {detail}"
    )


def backend_too_large(model: str, limit: int, what: str = "a response") -> RouterError:
    return RouterError(
        ErrorKind.BACKEND_TOO_LARGE,
        f"Backend for model '{model}' sent {what} over the limit of {limit} bytes",
    )
