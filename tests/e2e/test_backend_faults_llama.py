"""Backend faults with real llama.cpp servers behind a real `semrouter serve` process.

A dead endpoint beside a live llama.cpp (retried, then taken out by the breaker), and a
llama.cpp server that is frozen (SIGSTOP: headers, then silence) and then killed mid-stream.
After every fault the router answers the next request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import minimal_config
from tests.e2e.client import call, chat
from tests.e2e.conftest import start_llama, start_semrouter
from tests.servers import free_port

pytestmark = pytest.mark.e2e


def serve(
    log_dir: Path, name: str, fast: dict[str, Any], reasoner_url: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`semrouter serve` on a keyword-only config: `fast` is model fast's settings."""
    data = minimal_config()
    fast_model, reasoner = data["models"]
    fast_model.update(provider_model_id="smollm2-fast", **fast)
    reasoner.update(provider_model_id="smollm2-reasoner", endpoints=[{"url": reasoner_url}])
    config = log_dir / f"{name}.yaml"
    config.write_text(json.dumps(data))  # JSON is YAML
    port = free_port()
    process = start_semrouter(
        ["serve", "--config", str(config), "--port", str(port)],
        {},
        log_dir / f"{name}.log",
        f"http://127.0.0.1:{port}/ready",
    )
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes to terminate after the test."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            process.wait(10)


def fast(text: str, **extra: Any) -> dict[str, Any]:
    return {**chat(text, **extra), "model": "fast"}


def assert_serves(url: str, process: subprocess.Popen[bytes]) -> None:
    status, headers, raw = call(url, chat("prove it"))
    assert status == 200, raw
    assert headers["x-semrouter-model"] == "reasoner"
    assert process.poll() is None


def metric(url: str, line_start: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return next(
        (float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(line_start)), 0.0
    )


def test_refused_endpoint_is_retried_then_left_out(
    llama_backends: dict[str, str], log_dir: Path, stopped: list[subprocess.Popen[bytes]]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    endpoints = [{"url": dead, "weight": 1000}, {"url": llama_backends["fast"], "weight": 0.001}]
    settings = {"endpoints": endpoints, "retries": 1, "breaker": {"failures": 2, "open_s": 600}}
    process, url = serve(log_dir, "semrouter-refused", settings, llama_backends["reasoner"])
    stopped.append(process)
    for _ in range(4):
        status, _, raw = call(url, fast("hello there"))
        assert status == 200, raw
        assert json.loads(raw)["choices"][0]["message"]["content"]
    # two refused attempts opened the breaker; later requests went straight to llama.cpp
    assert metric(url, 'semrouter_backend_failures_total{kind="connect",model="fast"}') == 2
    opened = f'semrouter_breaker_transitions_total{{endpoint="{dead}",model="fast",state="open"}}'
    assert metric(url, opened) == 1
    assert_serves(url, process)


def stream_events(url: str, payload: dict[str, Any], after: int, act: Any) -> list[bytes]:
    """The `data:` payloads of a streamed request; `act()` runs once `after` have arrived."""
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json"},
    )
    events: list[bytes] = []
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        for line in response:
            if line.startswith(b"data: "):
                events.append(line[6:].strip())
                if len(events) == after:
                    act()
    return events


def assert_broke_after(events: list[bytes], good: int, code: str) -> None:
    assert events[-1] == b"[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == code, error
    chunks = [json.loads(e) for e in events[:-2]]
    assert len(chunks) >= good
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_frozen_then_killed_llama_mid_stream(
    llama_backends: dict[str, str], log_dir: Path, stopped: list[subprocess.Popen[bytes]]
) -> None:
    victim, victim_url = start_llama("smollm2-fast", log_dir)
    stopped.append(victim)
    settings = {"endpoints": [{"url": victim_url}], "retries": 0, "stream_idle_timeout_s": 2}
    process, url = serve(log_dir, "semrouter-victim", settings, llama_backends["reasoner"])
    stopped.append(process)
    long = fast("Write a long story about a dragon.", max_tokens=400, stream=True)

    # frozen: the connection stays open but nothing comes (an idle-read timeout)
    events = stream_events(url, long, 3, lambda: os.kill(victim.pid, signal.SIGSTOP))
    assert_broke_after(events, 3, "backend_timeout")
    os.kill(victim.pid, signal.SIGCONT)
    assert_serves(url, process)
    status, _, raw = call(url, fast("hello"))
    assert status == 200, raw  # the thawed backend is back in use

    # killed: the connection closes mid-stream
    events = stream_events(url, long, 3, lambda: victim.kill())
    assert_broke_after(events, 3, "backend_unavailable")
    victim.wait(10)
    assert_serves(url, process)
    status, _, raw = call(url, fast("hello"))  # now a closed port: connection refused
    assert status == 502
    assert json.loads(raw)["error"]["code"] == "backend_unavailable"
    assert_serves(url, process)
