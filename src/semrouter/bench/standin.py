"""A fast OpenAI-compatible stand-in backend for benchmarks and transport tests.

It answers /v1/chat/completions immediately (JSON or SSE) and echoes the request body it
received under `"echo"`, so a test can see exactly what the router sent. It is not an LLM and
is never used where a real model's behaviour matters (end-to-end tests use llama.cpp).

With `think_tokens` it "thinks" first: that many reasoning tokens (`reasoning_content` deltas,
or `<think>…</think>` content with `think_style="tags"`), one every `think_delay_s`, then the
answer; `max_tokens` counts both (finish_reason `length`). A request whose final assistant
message already closed the thought (a prefill continuation) gets the answer only.

With a `Load` (the SLO bench and tests) it behaves like a server under load: `slots` requests
generate at once and the rest wait for a slot (so latency grows with concurrency), every token
is slower the fuller the batch, it thinks only when the body turns thinking on
(`chat_template_kwargs.enable_thinking`) and for at most `thinking_budget` tokens (its native
budget field), and `first_byte_delay_s` holds back a stream's first event (a stalled backend).
Run it: `python -m semrouter.bench.standin --port 9000`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web

STREAM_WORDS = ("Hello", " from", " the", " stand-in", " backend", ".")


def _completion(body: dict[str, Any], model: str, echo: bool = True) -> dict[str, Any]:
    completion: dict[str, Any] = {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(STREAM_WORDS)},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": len(STREAM_WORDS), "total_tokens": 7},
    }
    if echo:
        completion["echo"] = body
    return completion


@dataclass(frozen=True, slots=True)
class Load:
    """A backend under load: `slots` generations at once (the rest queue), `prefill_s` before
    the first token, `answer_delay_s` per answer token (reasoning tokens: the stand-in's
    `think_delay_s`), each scaled by `1 + batch_slowdown x busy / slots`."""

    slots: int = 16
    prefill_s: float = 0.05
    answer_delay_s: float = 0.02
    batch_slowdown: float = 0.25
    first_byte_delay_s: float = 0.0


def thinking_requested(body: dict[str, Any]) -> bool:
    """Whether the body turns thinking on (Qwen3/DeepSeek template switch, or an effort)."""
    kwargs = body.get("chat_template_kwargs")
    if isinstance(kwargs, dict) and (kwargs.get("enable_thinking") or kwargs.get("thinking")):
        return True
    return bool(body.get("reasoning_effort"))


def _chunk(model: str, delta: dict[str, str], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class StandIn:
    """chunk_delay_s: pause between SSE chunks; reply_delay_s: pause before a non-streamed
    answer (a slow generation); with record, `requests` holds the bodies received and `headers`
    their headers (lowercase names), for tests."""

    def __init__(
        self,
        chunk_delay_s: float = 0.0,
        record: bool = False,
        reply_delay_s: float = 0.0,
        echo: bool = True,
        think_tokens: int = 0,
        think_delay_s: float = 0.0,
        think_style: Literal["reasoning_content", "tags"] = "reasoning_content",
        load: Load | None = None,
    ) -> None:
        self.load = load
        self._slots = asyncio.Semaphore(load.slots) if load is not None else None
        self.busy = 0
        self.chunk_delay_s = chunk_delay_s
        self.think_tokens = think_tokens
        self.think_delay_s = think_delay_s
        self.think_style = think_style
        self.reasoning_sent: list[int] = []
        """Per thinking request, the reasoning tokens written so far (a cut one stops)."""
        self.echo = echo
        self.reply_delay_s = reply_delay_s
        self.record = record
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.cancelled_streams = 0
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_post("/v1/chat/completions", self.chat)
        self.app.router.add_get("/v1/models", self.models)

    async def models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "standin", "object": "model"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        if self.record:
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
        model = body.get("model", "standin")
        if self.load is not None:
            return await self._loaded(request, body, model, self.load)
        if self.think_tokens:
            return await self._think(request, body, model)
        if not body.get("stream"):
            if self.reply_delay_s:
                await asyncio.sleep(self.reply_delay_s)
            return web.Response(
                body=orjson.dumps(_completion(body, model, self.echo)),
                content_type="application/json",
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(_chunk(model, {"role": "assistant", "content": ""}))
            for word in STREAM_WORDS:
                if self.chunk_delay_s:
                    await asyncio.sleep(self.chunk_delay_s)
                await response.write(_chunk(model, {"content": word}))
            await response.write(_chunk(model, {}, "stop"))
            await response.write(b"data: [DONE]\n\n")
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled_streams += 1
            raise
        return response

    def _deltas(self, body: dict[str, Any]) -> list[tuple[bool, dict[str, str]]]:
        """(is reasoning, delta) in order: the thought unless a prefill closed it, then the
        answer, cut at max_tokens."""
        messages = body.get("messages") or [{}]
        last = messages[-1]
        continued = last.get("role") == "assistant" and "</think>" in str(last.get("content"))
        deltas: list[tuple[bool, dict[str, str]]] = []
        if not continued:
            tags = self.think_style == "tags"
            words = [f" step{i}" for i in range(1, self.think_tokens + 1)]
            if tags:
                words[0] = "<think>" + words[0]
                words[-1] += "</think>\n\n"
            field = "content" if tags else "reasoning_content"
            deltas = [(True, {field: word}) for word in words]
        deltas += [(False, {"content": word}) for word in STREAM_WORDS]
        limit = body.get("max_tokens")
        return deltas[:limit] if isinstance(limit, int) else deltas

    async def _think(
        self, request: web.Request, body: dict[str, Any], model: str
    ) -> web.StreamResponse:
        deltas = self._deltas(body)
        finish = "stop" if deltas[-1][1].get("content") == STREAM_WORDS[-1] else "length"
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        usage = {"prompt_tokens": prompt, "completion_tokens": len(deltas)}
        usage["total_tokens"] = prompt + len(deltas)
        self.reasoning_sent.append(0)
        slot = len(self.reasoning_sent) - 1
        if not body.get("stream"):
            thought = sum(1 for reasoning, _ in deltas if reasoning)
            await asyncio.sleep(self.think_delay_s * thought)
            self.reasoning_sent[slot] = thought
            message: dict[str, str] = {"role": "assistant"}
            for _, delta in deltas:
                for key, text in delta.items():
                    message[key] = message.get(key, "") + text
            completion = _completion(body, model, self.echo)
            completion["choices"][0].update(message=message, finish_reason=finish)
            completion["usage"] = usage
            return web.json_response(completion)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(_chunk(model, {"role": "assistant", "content": ""}))
            for reasoning, delta in deltas:
                if reasoning and self.think_delay_s:
                    await asyncio.sleep(self.think_delay_s)
                await response.write(_chunk(model, delta))
                self.reasoning_sent[slot] += reasoning
            await response.write(_chunk(model, {}, finish))
            if (body.get("stream_options") or {}).get("include_usage"):
                event = {"id": "chatcmpl-standin", "model": model, "choices": [], "usage": usage}
                await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
        except ConnectionResetError:  # the client cut the thought: expected, not an error
            self.cancelled_streams += 1
        return response

    def _loaded_deltas(self, body: dict[str, Any]) -> list[tuple[bool, dict[str, str]]]:
        """`_deltas`, with the thought only when asked for and cut at `thinking_budget`."""
        deltas = self._deltas(body)
        if not thinking_requested(body):
            return [d for d in deltas if not d[0]]
        budget = body.get("thinking_budget")
        if not isinstance(budget, int):
            return deltas
        thought = [d for d in deltas if d[0]][:budget]
        return thought + [d for d in deltas if not d[0]]

    async def _loaded(
        self, request: web.Request, body: dict[str, Any], model: str, load: Load
    ) -> web.StreamResponse:
        """One request under the `Load` model (JSON or SSE, with usage in both)."""
        assert self._slots is not None
        deltas = self._loaded_deltas(body)
        thought = sum(1 for reasoning, _ in deltas if reasoning)
        usage = {
            "prompt_tokens": 1,
            "completion_tokens": len(deltas),
            "total_tokens": 1 + len(deltas),
            "completion_tokens_details": {"reasoning_tokens": thought},
        }
        response: web.StreamResponse | None = None
        if body.get("stream"):
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
        async with self._slots:
            self.busy += 1
            try:
                await asyncio.sleep(load.first_byte_delay_s + load.prefill_s)
                if response is not None:
                    await response.write(_chunk(model, {"role": "assistant", "content": ""}))
                for reasoning, delta in deltas:
                    slowdown = 1 + load.batch_slowdown * self.busy / load.slots
                    delay = self.think_delay_s if reasoning else load.answer_delay_s
                    await asyncio.sleep(delay * slowdown)
                    if response is not None:
                        await response.write(_chunk(model, delta))
            except (asyncio.CancelledError, ConnectionResetError):
                self.cancelled_streams += 1
                raise
            finally:
                self.busy -= 1
        if response is None:
            message: dict[str, str] = {"role": "assistant"}
            for _, delta in deltas:
                for key, text in delta.items():
                    message[key] = message.get(key, "") + text
            completion = _completion(body, model, self.echo)
            completion["choices"][0]["message"] = message
            completion["usage"] = usage
            return web.json_response(completion)
        await response.write(_chunk(model, {}, "stop"))
        event = {"id": "chatcmpl-standin", "model": model, "choices": [], "usage": usage}
        await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response


async def start_standin(
    standin: StandIn, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(standin.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--reply-delay-ms", type=float, default=0.0, help="before a JSON answer")
    parser.add_argument(
        "--no-echo", action="store_true", help="leave the request out of JSON answers"
    )
    parser.add_argument("--think-tokens", type=int, default=0, help="reasoning tokens first")
    parser.add_argument("--think-rate", type=float, default=0.0, help="reasoning tokens/s")
    parser.add_argument("--think-style", choices=["reasoning_content", "tags"])
    parser.add_argument("--slots", type=int, default=0, help="with it: the Load model's slots")
    parser.add_argument("--prefill-ms", type=float, default=50.0, help="Load: before a token")
    parser.add_argument("--answer-delay-ms", type=float, default=20.0, help="Load: per token")
    parser.add_argument("--batch-slowdown", type=float, default=0.25, help="Load: at a full batch")
    args = parser.parse_args()
    load = (
        Load(args.slots, args.prefill_ms / 1000, args.answer_delay_ms / 1000, args.batch_slowdown)
        if args.slots
        else None
    )
    web.run_app(
        StandIn(
            args.chunk_delay_ms / 1000,
            reply_delay_s=args.reply_delay_ms / 1000,
            echo=not args.no_echo,
            think_tokens=args.think_tokens,
            think_delay_s=1 / args.think_rate if args.think_rate else 0.0,
            think_style=args.think_style or "reasoning_content",
            load=load,
        ).app,
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
