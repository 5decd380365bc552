"""What the cache stores of a response, and how a hit is answered, as JSON or as SSE.

An entry holds one chat completion (`Answer`): the assistant message of choice 0, its
finish_reason, usage, id and model. A JSON response is read as is; a streamed one is
reassembled from its events (content, reasoning_content and tool-call deltas concatenated in
order). Only a complete, successful single-choice answer is stored: finish_reason `stop` or
`length`, no `error`, one choice. A hit is rendered in the mode the client asked for now,
whatever the original was: a `chat.completion` object, or `chat.completion.chunk` events (role,
then the text, then the finish reason; usage when `stream_options.include_usage`) ending in
`data: [DONE]`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from semrouter.stages import CompletedResponse

STORABLE_FINISH = frozenset({"stop", "length"})
_TEXT_FIELDS = ("content", "reasoning_content")


@dataclass(frozen=True, slots=True)
class Answer:
    message: dict[str, Any]
    finish_reason: str
    model: str
    id: str
    usage: dict[str, Any] | None = None

    def dumps(self) -> bytes:
        return orjson.dumps(
            {
                "message": self.message,
                "finish_reason": self.finish_reason,
                "model": self.model,
                "id": self.id,
                "usage": self.usage,
            }
        )

    @classmethod
    def loads(cls, raw: bytes) -> Answer:
        data = orjson.loads(raw)
        return cls(data["message"], data["finish_reason"], data["model"], data["id"], data["usage"])

    def completion(self) -> bytes:
        """The answer as a chat.completion JSON body."""
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": self.message, "finish_reason": self.finish_reason}],
        }
        if self.usage is not None:
            body["usage"] = self.usage
        return orjson.dumps(body)

    def events(self, include_usage: bool) -> bytes:
        """The answer as an OpenAI SSE stream, `data: [DONE]` last."""
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            payload = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "choices": choices,
                **extra,
            }
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        def delta(fields: dict[str, Any], finish: str | None = None) -> bytes:
            return chunk([{"index": 0, "delta": fields, "finish_reason": finish}])

        message = self.message
        parts = [delta({"role": message.get("role", "assistant"), "content": ""})]
        parts += [delta({key: message[key]}) for key in _TEXT_FIELDS if message.get(key)]
        if message.get("tool_calls"):
            calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
            parts.append(delta({"tool_calls": calls}))
        parts.append(delta({}, self.finish_reason))
        if include_usage and self.usage is not None:
            parts.append(chunk([], usage=self.usage))
        parts.append(b"data: [DONE]\n\n")
        return b"".join(parts)


def stored_answer(response: CompletedResponse) -> Answer | None:
    """The answer to keep of a complete backend response, None when it must not be stored."""
    if not 200 <= response.status < 300:
        return None
    try:
        if response.content_type.startswith("text/event-stream"):
            return _from_events(response.body)
        return _from_completion(orjson.loads(response.body))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def _from_completion(body: Any) -> Answer | None:
    if not isinstance(body, dict) or "error" in body:
        return None
    choices = body["choices"]
    if len(choices) != 1 or choices[0].get("finish_reason") not in STORABLE_FINISH:
        return None
    message = choices[0]["message"]
    if not isinstance(message, dict):
        return None
    return Answer(
        message,
        choices[0]["finish_reason"],
        str(body.get("model", "")),
        str(body.get("id", "")),
        body.get("usage"),
    )


def _from_events(raw: bytes) -> Answer | None:
    """Reassemble a stream's chunks into one message; None unless it ended normally."""
    message: dict[str, Any] = {"role": "assistant"}
    texts: dict[str, list[str]] = {}
    calls: dict[int, dict[str, Any]] = {}
    finish: str | None = None
    ident = model = ""
    usage = None
    done = False
    for event in raw.split(b"\n\n"):
        data = b"\n".join(
            line[5:].lstrip(b" ") for line in event.splitlines() if line.startswith(b"data:")
        )
        if not data:
            continue
        if data == b"[DONE]":
            done = True
            break
        chunk = orjson.loads(data)
        if "error" in chunk:
            return None
        ident, model = ident or str(chunk.get("id", "")), model or str(chunk.get("model", ""))
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                return None
            finish = choice.get("finish_reason") or finish
            delta = choice.get("delta") or {}
            if delta.get("role"):
                message["role"] = delta["role"]
            for key in _TEXT_FIELDS:
                if isinstance(delta.get(key), str):
                    texts.setdefault(key, []).append(delta[key])
            for call in delta.get("tool_calls") or ():
                _merge_call(calls.setdefault(int(call.get("index", 0)), {}), call)
    if not done or finish not in STORABLE_FINISH:
        return None
    for key, pieces in texts.items():
        message[key] = "".join(pieces)
    message.setdefault("content", None)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return Answer(message, finish, model, ident, usage)


def _merge_call(into: dict[str, Any], delta: dict[str, Any]) -> None:
    for key in ("id", "type"):
        if delta.get(key):
            into[key] = delta[key]
    function = delta.get("function") or {}
    target = into.setdefault("function", {"name": "", "arguments": ""})
    for key in ("name", "arguments"):
        if isinstance(function.get(key), str):
            target[key] += function[key]
