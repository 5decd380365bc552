"""Shared by the shipping tests (test_image.py, test_wheel.py): a stand-in backend on the host,
processes that are always stopped, and the check that a running `semrouter serve` routes."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.client import call, chat
from tests.e2e.conftest import wait_http
from tests.servers import free_port

MATH = "Prove that the square root of 2 is irrational."


def finish(
    args: Sequence[str],
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` to the end and capture its output; past ``timeout`` seconds its whole
    process group (a build's children too) is killed and the test fails."""
    with subprocess.Popen(
        list(args),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise AssertionError(f"{shlex.join(args)}: still running after {timeout} s") from None
    return subprocess.CompletedProcess(list(args), process.returncode, stdout, stderr)


@contextmanager
def running(
    args: Sequence[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args`` in its own session (``env``: its whole environment, default this one's);
    on exit stop it and everything it started."""
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            list(args),
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@contextmanager
def standin(log_dir: Path) -> Iterator[str]:
    """The OpenAI-compatible stand-in (semrouter.bench.standin) on the host: its /v1 URL."""
    port = free_port()
    command = [sys.executable, "-m", "semrouter.bench.standin", "--port", str(port)]
    with running(command, log_dir / "standin.log") as process:
        wait_http(f"http://127.0.0.1:{port}/v1/models", process, timeout=30)
        yield f"http://127.0.0.1:{port}/v1"


def backends_env(standin_url: str) -> dict[str, str]:
    """Both models of the default config pointed at the stand-in."""
    return {"SEMROUTER_FAST_URL": standin_url, "SEMROUTER_REASONER_URL": standin_url}


def assert_serve_routes(url: str) -> None:
    """A multi-step maths question reaches the reasoner, with Qwen3 thinking switched on."""
    status, headers, body = call(url, chat(MATH))
    assert status == 200, body
    assert headers["x-semrouter-model"] == "reasoner"
    assert headers["x-semrouter-domain"] == "math"
    sent = json.loads(body)["echo"]  # what the backend received
    assert sent["model"] == "smollm2-reasoner"
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}
