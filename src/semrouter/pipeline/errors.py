"""The one error type the pipeline raises, rendered in OpenAI's error shape by every transport."""

from __future__ import annotations

import orjson


class RouterError(Exception):
    """A request that cannot be served; carries the HTTP status and the OpenAI error fields."""

    def __init__(self, status: int, message: str, type_: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "code": self.code}}
        )


def bad_request(message: str, code: str = "invalid_request") -> RouterError:
    return RouterError(400, message, "invalid_request_error", code)


def model_not_found(name: str) -> RouterError:
    return RouterError(
        404, f"The model '{name}' does not exist", "invalid_request_error", "model_not_found"
    )


def body_too_large(size: int, limit: int) -> RouterError:
    return RouterError(
        413,
        f"Request body of {size} bytes exceeds the limit of {limit} bytes",
        "invalid_request_error",
        "request_too_large",
    )
