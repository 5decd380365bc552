"""Graceful shutdown: SIGTERM with requests in flight, through both transports.

A slow stand-in backend (1.2 s per answer, streamed or not) keeps 32 requests in flight when
the router gets SIGTERM; in the second case the requests are still being classified (long
prompts queued for the encoder, a generous classification deadline). Every request must end
with a complete answer or a clean error (an OpenAI error body, or an SSE error event and
[DONE]), never a reset connection, and the router must exit within
`router.limits.shutdown_grace_s` (5 s here). Behind Envoy, Envoy stays up and refuses what
comes after with its fail-closed 503.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from semrouter.bench.common import make_prompt
from semrouter.bench.hostile import Answer, chat_body, exchange, normal_wire, post
from tests.e2e.hardening import Target, start_standin, start_target, write_config

pytestmark = pytest.mark.e2e

GRACE_S = 5.0
IN_FLIGHT = 32
EXIT_SLACK_S = 1.5


@pytest.fixture(scope="module")
def slow_backend(log_dir: Path) -> Iterator[str]:
    standin, url = start_standin(
        log_dir / "shutdown-standin.log", "--chunk-delay-ms", "200", "--reply-delay-ms", "1200"
    )
    yield url
    standin.terminate()
    standin.wait(10)


@pytest.fixture(scope="module")
def shutdown_config(slow_backend: str, log_dir: Path) -> Path:
    return write_config(
        log_dir / "shutdown-router.yaml",
        slow_backend,
        shutdown_grace_s=GRACE_S,
        classify_deadline_ms=20_000,
    )


@pytest.fixture(params=["serve", "envoy"])
def target(
    request: pytest.FixtureRequest, shutdown_config: Path, log_dir: Path
) -> Iterator[Target]:
    target = start_target(request.param, shutdown_config, log_dir)
    yield target
    target.stop()


def clean(answer: Answer, stream: bool) -> bool:
    """A complete answer, or one of the designed refusals (502/503/504, an OpenAI error)."""
    if answer.status == 200:
        return answer.body.endswith(b"data: [DONE]\n\n") if stream else b'"choices"' in answer.body
    return answer.status in (502, 503, 504) and answer.error_code() is not None


def long_prompt(i: int) -> bytes:
    """About 8,000 characters (the classification window), different for each request."""
    words = make_prompt(1500, lambda text: len(text.split()), start=i)
    return chat_body(f"Request {i}: {words}"[:8000], stream=i % 2 == 1)


async def terminate_with_requests_in_flight(
    target: Target, bodies: list[bytes], settle_s: float
) -> tuple[list[Answer], float]:
    """Send every body, SIGTERM the router after settle_s; the answers and the exit time."""
    requests = [
        asyncio.create_task(exchange(target.port, post(body), GRACE_S + 10)) for body in bodies
    ]
    await asyncio.sleep(settle_s)
    target.router.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    answers = await asyncio.gather(*requests)
    exit_code = await asyncio.to_thread(target.router.wait, GRACE_S + 10)
    exited_s = time.monotonic() - signalled
    # uvicorn re-raises the SIGTERM it handled once it has shut down (so a supervisor sees it)
    assert exit_code in (0, -signal.SIGTERM), exit_code
    return answers, exited_s


def check(answers: list[Answer], bodies: list[bytes], exited_s: float) -> None:
    kinds = [a.kind for a in answers]
    for answer, body in zip(answers, bodies, strict=True):
        assert clean(answer, b'"stream":true' in body), kinds
    assert exited_s < GRACE_S + EXIT_SLACK_S, exited_s


async def test_sigterm_with_slow_backend_requests_in_flight(target: Target) -> None:
    bodies = [normal_wire(stream=i % 2 == 1).body for i in range(IN_FLIGHT)]
    answers, exited_s = await terminate_with_requests_in_flight(target, bodies, settle_s=0.3)
    check(answers, bodies, exited_s)
    # The backend takes 1.2 s; the requests had it, not a refusal.
    assert sum(a.status == 200 for a in answers) == IN_FLIGHT, [a.kind for a in answers]
    if target.envoy is not None:
        after = await exchange(target.port, normal_wire(), 10)
        assert (after.status, after.error_code()) == (503, "router_unavailable")
        assert target.envoy.poll() is None


async def test_sigterm_while_requests_are_being_classified(target: Target) -> None:
    bodies = [long_prompt(i) for i in range(IN_FLIGHT)]
    answers, exited_s = await terminate_with_requests_in_flight(target, bodies, settle_s=0.05)
    check(answers, bodies, exited_s)
