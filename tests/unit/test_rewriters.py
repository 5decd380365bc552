"""Response rewriters: the chain's order and hold-back, and both transports passing every body
chunk (a stage's own answer included) through a stage's rewriters, observers seeing the
backend's bytes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from semrouter.bench.standin import StandIn, start_standin
from semrouter.extproc.server import ExtProcServicer
from semrouter.pipeline.flow import Pipeline
from semrouter.pipeline.router import Router
from semrouter.proxy.app import ProxyApp
from semrouter.stages import (
    CompletedResponse,
    ResponseObserver,
    ResponseRewriter,
    RewriteChain,
    Stage,
    StageAnswer,
    StageContext,
)
from tests.servers import serving
from tests.unit.test_cache import WordEmbedder, cached_config
from tests.unit.test_extproc import (
    chat,
    drive,
    mutations,
    request_body,
    request_headers,
    response_headers,
)
from tests.unit.test_extproc import response_body as response_chunk


class Upper(ResponseRewriter):
    """Upper-cases the body and says so in its content type."""

    def begin(self, status: int, content_type: str) -> str:
        return f"{content_type}; rewritten={status}"

    def feed(self, chunk: bytes) -> bytes:
        return chunk.upper()

    def finish(self) -> bytes:
        return b""


class Lines(ResponseRewriter):
    """Holds back a partial line; finishes with a marker."""

    def __init__(self) -> None:
        self.held = b""

    def feed(self, chunk: bytes) -> bytes:
        whole, _, self.held = (self.held + chunk).rpartition(b"\n")
        return whole + b"\n" if whole else b""

    def finish(self) -> bytes:
        return self.held + b"|end"


def test_the_chain_applies_rewriters_in_order_and_flushes_what_they_hold() -> None:
    chain = RewriteChain([Lines(), Upper()])
    assert chain.begin(200, "text/plain") == "text/plain; rewritten=200"
    assert chain.feed(b"ab") == b""  # Lines holds the partial line, Upper sees nothing
    assert chain.feed(b"c\nde") == b"ABC\n"
    assert chain.finish() == b"DE|END"  # Lines' rest goes through Upper before its finish
    assert not RewriteChain([]) and RewriteChain([Upper()])
    assert RewriteChain([]).whole(200, "a/b", b"x") == ("a/b", b"x")
    assert RewriteChain([Upper(), Lines()]).whole(201, "a/b", b"x\ny") == (
        "a/b; rewritten=201",
        b"X\nY|end",
    )


class Seen(ResponseObserver):
    max_bytes = 1 << 20

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def wants(self, status: int, content_type: str) -> bool:
        return True

    def completed(self, response: CompletedResponse) -> None:
        self.bodies.append(response.body)


class Rewriting(Stage):
    """Upper-cases every response; answers requests asking for 'canned' itself."""

    name = "rewriting"

    def __init__(self) -> None:
        self.seen = Seen()

    async def apply(self, context: StageContext) -> None:
        context.rewriters.append(Upper())
        context.observers.append(self.seen)
        if "canned" in context.request.text:
            context.answer = StageAnswer(b'{"answer": "canned"}', "application/json")


def rewriting_pipeline(url: str) -> tuple[Pipeline, Rewriting]:
    pipeline = Pipeline(Router(cached_config(url, backend="off"), WordEmbedder()))
    stage = Rewriting()
    pipeline.stages = [stage]
    return pipeline, stage


@pytest.fixture
async def backend() -> AsyncIterator[str]:
    runner, port = await start_standin(StandIn())
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize("stream", [False, True])
async def test_serve_passes_the_backends_body_through_the_rewriters(
    backend: str, stream: bool
) -> None:
    proxy = ProxyApp(Router(cached_config(backend, backend="off"), WordEmbedder()))
    proxy.pipeline, stage = rewriting_pipeline(backend)
    async with serving(proxy.app) as url, aiohttp.ClientSession() as session:
        payload = json.loads(chat("What is a monad?", stream=stream))
        async with session.post(url + "/v1/chat/completions", json=payload) as response:
            body = await response.read()
            content_type = response.headers["content-type"]
        async with session.post(
            url + "/v1/chat/completions", json=json.loads(chat("canned please"))
        ) as canned:
            assert await canned.read() == b'{"ANSWER": "CANNED"}'
            assert canned.headers["content-type"].startswith("application/json; rewritten=200")
    assert response.status == 200
    assert "rewritten=200" in content_type
    assert body == body.upper() and b"CHATCMPL" in body.upper()
    if stream:
        assert body.endswith(b"DATA: [DONE]\n\n")
    assert len(stage.seen.bodies) == 1 and stage.seen.bodies[0].upper() == body
    assert stage.seen.bodies[0] != body  # the observer saw the backend's own bytes


async def test_extproc_streams_rewritten_chunks_and_fixes_the_headers() -> None:
    servicer = ExtProcServicer(rewriting_pipeline("http://127.0.0.1:9")[0])
    replies = await drive(
        servicer,
        [
            request_headers(),
            request_body(chat("What is a monad?")),
            response_headers("application/json"),
            response_chunk(b'{"a": ', end=False),
            response_chunk(b'"b"}', end=True),
        ],
    )
    headers = replies[2].response_headers.response.header_mutation
    assert mutations(replies[2].response_headers.response)["content-type"] == (
        "application/json; rewritten=200"
    )
    assert "content-length" in headers.remove_headers
    assert replies[2].mode_override.response_body_mode == 1  # STREAMED
    assert [r.response_body.response.body_mutation.body for r in replies[3:]] == [
        b'{"A": ',
        b'"B"}',
    ]
    replies = await drive(servicer, [request_headers(), request_body(chat("canned, please"))])
    answer = replies[-1].immediate_response
    assert answer.body == b'{"ANSWER": "CANNED"}'
