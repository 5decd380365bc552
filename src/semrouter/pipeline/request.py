"""Parsing a chat-completions request: raw bytes in, a validated ChatRequest out (or a 400/413).

Every check here costs work bounded by `router.limits`, never by the input: the body is at most
`max_body_bytes`, counts (messages, content parts, tools) are compared before anything is
iterated, nesting depth is bounded, and the texts classification reads are windows of
`classify_chars` characters (see `window`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from semrouter.config.schema import ConversationConfig, GuardsConfig, LimitsConfig, ToolsConfig
from semrouter.pipeline.errors import RouterError, bad_request, body_too_large, too_large
from semrouter.signals.engine import SignalInput
from semrouter.signals.guards import ScanText

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_SYSTEM_ROLES = frozenset({"system", "developer"})
_SCANNED_ROLES = frozenset({"user", "assistant", "tool", "function"})
_DEFAULT_LIMITS = LimitsConfig()
_NUMPY_COUNT_BYTES = 64 * 1024
_OPEN_BRACE, _OPEN_BRACKET = ord("{"), ord("[")
_DEFAULT_TOOLS = ToolsConfig()
_SNAP = 64
"""A window edge moves back to whitespace if there is some within this many characters."""


@dataclass(slots=True)
class ChatRequest:
    """A parsed request. `body` is the client's JSON object; rewriting works on a copy."""

    body: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]
    stream: bool

    def routing_text(self) -> str:
        """What the classifiers read: the last user turn (the request's current intent)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message_text(message)
        return message_text(self.messages[-1]) if self.messages else ""

    def conversation_text(self) -> str:
        return "\n".join(message_text(m) for m in self.messages)

    @property
    def tools(self) -> tuple[dict[str, Any], ...]:
        """The request's `tools` entries (checked at parse time: objects with a name)."""
        tools = self.body.get("tools")
        return tuple(tools) if isinstance(tools, list) else ()

    def tool_context(self, messages: int, limit: int) -> str:
        """The text of the `messages` latest turns besides the last user turn (which the
        routing text holds) and the system prompts (the same in every request of an app):
        earlier turns and the tool calls and results after it, newest first, cut to `limit`
        characters."""
        routing = next(
            (i for i in reversed(range(len(self.messages))) if self.messages[i]["role"] == "user"),
            None,
        )
        start = max(0, len(self.messages) - messages - 1)
        recent = [
            m
            for i, m in enumerate(self.messages[start:], start)
            if i != routing and m["role"] not in _SYSTEM_ROLES
        ]
        return "\n".join(message_text(m) for m in reversed(recent[-messages:]))[:limit]

    def earlier_user_context(self, turns: int, limit: int) -> str:
        """The `turns` user turns before the last one, newest first, cut to `limit` chars."""
        users = [i for i, m in enumerate(self.messages) if m.get("role") == "user"]
        earlier = users[-turns - 1 : -1] if turns else []
        return "\n".join(message_text(self.messages[i]) for i in reversed(earlier))[:limit]

    def scanned(self, max_messages: int, classify_chars: int) -> tuple[ScanText, ...]:
        """What the guards read (semrouter.signals.guards): the newest `max_messages` user,
        assistant and tool/function messages with text."""
        found: list[ScanText] = []
        for i in reversed(range(len(self.messages))):
            message = self.messages[i]
            if message["role"] not in _SCANNED_ROLES:
                continue
            text = message_text(message)
            if text:
                found.append(ScanText(i, message["role"], text, window(text, classify_chars)))
                if len(found) == max_messages:
                    break
        return tuple(found)

    def signal_input(
        self,
        limits: LimitsConfig = _DEFAULT_LIMITS,
        tools: ToolsConfig = _DEFAULT_TOOLS,
        conversation: ConversationConfig | None = None,
        guards: GuardsConfig | None = None,
    ) -> SignalInput:
        """The bounded view of this request that signals read: the last user turn, with
        `conversation.context_turns` earlier user turns after it as context, and the messages
        the guards scan (with guards enabled)."""
        scan = (
            self.scanned(guards.max_messages, limits.classify_chars)
            if guards is not None and guards.enabled
            else ()
        )
        text = self.routing_text()
        catalog = self.tools
        context = (
            self.tool_context(tools.context_messages, limits.classify_chars)
            if catalog and tools.context_messages
            else ""
        )
        earlier = (
            self.earlier_user_context(conversation.context_turns, conversation.context_chars)
            if conversation is not None and conversation.context_turns and len(self.messages) > 1
            else ""
        )
        history, weight = "", 0.0
        if earlier and conversation is not None and conversation.context_mode == "embedding":
            windowed, history = window(text, limits.classify_chars), earlier
            weight = conversation.context_weight
        elif earlier:
            budget = max(limits.classify_chars - len(earlier) - 1, limits.classify_chars // 2)
            windowed = f"{window(text, budget)}\n{earlier}"
        else:
            windowed = window(text, limits.classify_chars)
        if len(self.messages) == 1:
            # The encoder's count of the window, scaled to the whole text, is the token count:
            # no second tokenisation of a long prompt.
            return SignalInput(
                text=windowed,
                prompt_chars=len(text),
                conversation_chars=len(text),
                tools=catalog,
                context=context,
                scan=scan,
            )
        whole = self.conversation_text()
        return SignalInput(
            text=windowed,
            prompt_chars=len(text),
            conversation_sample=whole[: limits.count_chars],
            conversation_chars=len(whole),
            tools=catalog,
            context=context,
            history=history,
            history_weight=weight,
            scan=scan,
        )


def window(text: str, limit: int) -> str:
    """The first and last `limit // 2` characters of text, or text itself if it is shorter.

    Each edge snaps back to whitespace when there is some nearby, so no word is cut; without
    whitespace (one long word, a minified blob) it is cut where it falls.
    """
    if len(text) <= limit:
        return text
    half = limit // 2
    head_end = text.rfind(" ", half - _SNAP, half)
    tail_start = text.find(" ", len(text) - half, len(text) - half + _SNAP)
    head = text[: head_end if head_end > 0 else half]
    tail = text[tail_start + 1 if tail_start >= 0 else len(text) - half :]
    return f"{head} {tail}"


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _check_message(i: int, message: object, limits: LimitsConfig) -> None:
    if not isinstance(message, dict):
        raise bad_request(f"messages[{i}] must be an object", "invalid_messages")
    role = message.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise bad_request(
            f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}", "invalid_messages"
        )
    content = message.get("content")
    if content is None:
        if role in ("assistant", "tool", "function"):
            return
        raise bad_request(f"messages[{i}].content is required", "invalid_messages")
    if isinstance(content, list):
        if len(content) > limits.max_content_parts:
            raise too_large(
                f"messages[{i}].content has {len(content)} parts; the limit is "
                f"{limits.max_content_parts}",
                "too_many_content_parts",
            )
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise bad_request(
                    f"messages[{i}].content[{j}] must be an object with a 'type'",
                    "invalid_messages",
                )
    elif not isinstance(content, str):
        raise bad_request(
            f"messages[{i}].content must be a string or a list of parts", "invalid_messages"
        )


def _check_tools(tools: object) -> None:
    """`tools` is a list of objects (their count: `_check_counts`), each naming its tool:
    `name` in the object its `type` names (`function` by default: tools[i].function.name) or at
    the top."""
    if not isinstance(tools, list):
        raise bad_request("'tools' must be a list", "invalid_tools")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise bad_request(f"tools[{i}] must be an object", "invalid_tools")
        kind = tool.get("type", "function")
        if not isinstance(kind, str):
            raise bad_request(f"tools[{i}].type must be a string", "invalid_tools")
        inner = tool.get(kind)
        name = (inner if isinstance(inner, dict) else tool).get("name")
        if not isinstance(name, str) or not name:
            raise bad_request(
                f"tools[{i}] has no name: tools[{i}].{kind}.name must be a non-empty string",
                "invalid_tools",
            )


def _check_counts(body: dict[str, Any], limits: LimitsConfig) -> None:
    """413 for `messages` or `tools` over their count limit: checked first, before anything
    walks the body (the nesting walk alone took 120 ms on 100,000 messages)."""
    messages, tools = body.get("messages"), body.get("tools")
    if isinstance(messages, list) and len(messages) > limits.max_messages:
        raise too_large(
            f"'messages' has {len(messages)} entries; the limit is {limits.max_messages}",
            "too_many_messages",
        )
    if isinstance(tools, list) and len(tools) > limits.max_tools:
        raise too_large(
            f"'tools' has {len(tools)} entries; the limit is {limits.max_tools}",
            "too_many_tools",
        )


def containers_opened(raw: bytes) -> int:
    """How many '{' and '[' bytes raw holds: a bound on its objects and arrays (messages
    included), from one numpy pass that runs without the GIL (bytes.count holds it, ~1 ms per
    2 MB and pattern, while other requests wait)."""
    if len(raw) < _NUMPY_COUNT_BYTES:
        return raw.count(b"{") + raw.count(b"[")
    octets = np.frombuffer(raw, np.uint8)
    return int(np.count_nonzero(octets == _OPEN_BRACE)) + int(
        np.count_nonzero(octets == _OPEN_BRACKET)
    )


def nesting_exceeds(body: dict[str, object], containers: int, limit: int) -> bool:
    """Whether body nests deeper than limit. A body with fewer containers than the limit cannot
    (the common case); otherwise walk it, stopping at the first too-deep container."""
    if containers <= limit:
        return False
    stack: list[tuple[dict[str, object] | list[object], int]] = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def parse_body(
    raw: bytes,
    max_bytes: int,
    limits: LimitsConfig = _DEFAULT_LIMITS,
    containers: int | None = None,
) -> dict[str, Any]:
    """raw as a JSON object within limits; `containers`: containers_opened(raw), if known."""
    if len(raw) > max_bytes:
        raise body_too_large(len(raw), max_bytes)
    if not raw:
        raise bad_request("Request body is empty; expected a JSON object", "invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Request body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object", "invalid_json")
    _check_counts(body, limits)
    if containers is None:
        containers = containers_opened(raw)
    if nesting_exceeds(body, containers, limits.max_json_depth):
        raise bad_request(
            f"Request body nests deeper than {limits.max_json_depth} levels", "too_deep"
        )
    return body


def parse_chat_request(
    raw: bytes, max_bytes: int, limits: LimitsConfig = _DEFAULT_LIMITS
) -> ChatRequest:
    # Parsing 100k small messages holds the GIL for ~50 ms, even in a worker thread; each
    # message is an object, so only a body with more containers than max_messages may have too
    # many, and for those counting "role" keys is a C-speed scan. Inside a JSON string a quote
    # is escaped, so only keys match (a tool schema's "role" property too: a body with more of
    # them than max_messages is refused all the same).
    containers = containers_opened(raw) if len(raw) <= max_bytes else 0
    if containers > limits.max_messages and raw.count(b'"role"') > limits.max_messages:
        raise too_large(
            f"'messages' has more than {limits.max_messages} entries, the limit",
            "too_many_messages",
        )
    body = parse_body(raw, max_bytes, limits, containers)
    return chat_request_from_body(body, limits)


def chat_request_from_body(
    body: dict[str, Any], limits: LimitsConfig = _DEFAULT_LIMITS
) -> ChatRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required and must be a non-empty string", "invalid_model")
    messages = body.get("messages")
    if messages is None:
        raise bad_request("'messages' is required", "missing_messages")
    if not isinstance(messages, list):
        raise bad_request("'messages' must be a list", "invalid_messages")
    if not messages:
        raise bad_request("'messages' must not be empty", "invalid_messages")
    _check_counts(body, limits)
    for i, message in enumerate(messages):
        _check_message(i, message, limits)
    tools = body.get("tools")
    if tools is not None:
        _check_tools(tools)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean", "invalid_stream")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise bad_request(f"'{key}' must be a positive integer", f"invalid_{key}")
    return ChatRequest(body=body, model=model, messages=messages, stream=stream)


def classify_input(
    raw: bytes, max_bytes: int, limits: LimitsConfig = _DEFAULT_LIMITS
) -> ChatRequest:
    """The /api/v1/classify body: {"text": ...} or {"messages": [...]}, either with `tools`."""
    body = parse_body(raw, max_bytes, limits)
    text = body.get("text")
    if text is not None:
        if not isinstance(text, str):
            raise bad_request("'text' must be a string", "invalid_text")
        tools = {"tools": body["tools"]} if "tools" in body else {}
        body = {"messages": [{"role": "user", "content": text}], **tools}
    elif "messages" not in body:
        raise bad_request("Give 'text' or 'messages'", "missing_input")
    return chat_request_from_body({"model": "auto", **body, "stream": False}, limits)


__all__ = [
    "ChatRequest",
    "RouterError",
    "chat_request_from_body",
    "classify_input",
    "message_text",
    "parse_body",
    "parse_chat_request",
    "window",
]
