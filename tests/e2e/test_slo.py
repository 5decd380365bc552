"""The SLO controller and the TTFT watchdog with real processes: `semrouter serve` in front of
loaded stand-in backends (semrouter.bench.standin's `Load`), on its own event loop each.

- a stream whose first byte is late moves to the next endpoint, then to the alternative model,
  before anything reached the client;
- a model breaking its latency SLO gets its routed requests degraded (reasoning off), and the
  response header, /metrics and /api/v1/classify all say so.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from semrouter.bench.standin import Load, StandIn, start_standin
from tests.e2e.client import call
from tests.e2e.conftest import start_semrouter
from tests.servers import free_port

pytestmark = [pytest.mark.e2e]


class Backends:
    """Stand-ins on one event loop in a background thread; `url(i)` is the i-th's base URL."""

    def __init__(self, *standins: StandIn) -> None:
        self.standins = standins
        self._loop = asyncio.new_event_loop()
        self.ports: list[int] = []
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            for standin in standins:
                self.ports.append(self._loop.run_until_complete(start_standin(standin))[1])
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}/v1"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


SIGNALS = {
    "domain": {"enabled": False},
    "reasoning": {"enabled": False},
    "keywords": [{"name": "hard", "patterns": ["prove"]}],
}


def serve(config: dict[str, Any], tmp: Path) -> tuple[Any, str]:
    path = tmp / "config.yaml"
    path.write_text(json.dumps(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_semrouter(
        ["serve", "--config", str(path), "--port", str(port)], {}, tmp / "serve.log", url + "/ready"
    )
    return process, url


def stream(url: str, model: str, text: str) -> tuple[int, dict[str, str], bytes, float]:
    started = time.monotonic()
    payload = {"model": model, "stream": True, "messages": [{"role": "user", "content": text}]}
    status, headers, body = call(url, payload)
    return status, headers, body, time.monotonic() - started


@pytest.fixture(scope="module")
def watchdog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Backends]]:
    slow = StandIn(record=True, load=Load(first_byte_delay_s=5.0, prefill_s=0.0))
    fast = StandIn(record=True, load=Load(prefill_s=0.0, answer_delay_s=0.0))
    backends = Backends(slow, fast)
    slo = {"first_byte_timeout_ms": 500}
    config = {
        "models": [
            {  # the slow endpoint first (by weight), the fast one next
                "name": "pair",
                "endpoints": [
                    {"url": backends.url(0), "weight": 1e6},
                    {"url": backends.url(1), "weight": 1e-6},
                ],
                "slo": slo,
            },
            {  # only the slow endpoint: the watchdog moves it to `spare`
                "name": "lonely",
                "endpoints": [{"url": backends.url(0)}],
                "retries": 0,
                "slo": {**slo, "alternative": "spare"},
            },
            {"name": "spare", "endpoints": [{"url": backends.url(1)}]},
        ],
        "signals": SIGNALS,
        "default": {"model": "lonely"},
        "tools": {"enabled": False},
        "slo": {"enabled": True},
    }
    process, url = serve(config, tmp_path_factory.mktemp("slo-watchdog"))
    yield url, backends
    process.terminate()
    process.wait(15)
    backends.stop()


def test_slow_first_byte_fails_over_to_the_next_endpoint(watchdog: tuple[str, Backends]) -> None:
    url, backends = watchdog
    served = len(backends.standins[1].requests)
    status, headers, body, seconds = stream(url, "pair", "hello")
    assert status == 200 and b"data: [DONE]" in body and body.count(b"data: {") >= 3
    assert seconds < 3.0  # not the slow endpoint's 5 s
    assert len(backends.standins[1].requests) == served + 1
    assert headers["x-semrouter-model"] == "pair"


def test_slow_first_byte_fails_over_to_the_alternative_model(
    watchdog: tuple[str, Backends],
) -> None:
    url, backends = watchdog
    status, headers, body, seconds = stream(url, "auto", "hello")  # default route: lonely
    assert status == 200 and b"data: [DONE]" in body and seconds < 3.0
    assert headers["x-semrouter-model"] == "spare"
    assert "failover=lonely" in headers["x-semrouter-slo"]
    assert backends.standins[1].requests[-1]["model"] == "spare"
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'semrouter_slo_failovers_total{model="lonely",to="spare"} 1.0' in metrics
    assert 'kind="first_byte_timeout",model="lonely"' in metrics


@pytest.fixture(scope="module")
def breach(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, StandIn]]:
    # Thinking takes 20 x 20 ms = 0.4 s, over the 250 ms SLO; the answer alone is fast.
    thinker = StandIn(
        record=True,
        think_tokens=20,
        think_delay_s=0.02,
        load=Load(prefill_s=0.0, answer_delay_s=0.001),
    )
    backends = Backends(thinker)
    config = {
        "models": [
            {
                "name": "reasoner",
                "reasoning_family": "qwen3",
                "endpoints": [{"url": backends.url(0)}],
                "slo": {"latency_p95_ms": 250},
            }
        ],
        "signals": SIGNALS,
        "decisions": [
            {
                "name": "think",
                "rules": {"conditions": [{"name": "hard"}]},
                "model": "reasoner",
                "use_reasoning": True,
            }
        ],
        "default": {"model": "reasoner"},
        "tools": {"enabled": False},
        "slo": {"enabled": True, "window_s": 2, "slots": 4, "min_samples": 5},
    }
    process, url = serve(config, tmp_path_factory.mktemp("slo-breach"))
    yield url, thinker
    process.terminate()
    process.wait(15)
    backends.stop()


def test_slo_breach_degrades_and_says_so(breach: tuple[str, StandIn]) -> None:
    url, thinker = breach
    status, headers, _, _ = stream(url, "auto", "prove it")
    assert status == 200 and headers["x-semrouter-slo"] == "ok"
    assert thinker.requests[-1]["chat_template_kwargs"]["enable_thinking"] is True
    deadline = time.monotonic() + 20
    while headers["x-semrouter-slo"] == "ok" and time.monotonic() < deadline:
        status, headers, _, _ = stream(url, "auto", "prove it")
    assert headers["x-semrouter-slo"] == "degraded=reasoning_off;level=1"
    assert headers["x-semrouter-reasoning"] == "off"
    assert thinker.requests[-1]["chat_template_kwargs"]["enable_thinking"] is False
    status, _, body = call(url, {"text": "prove it"}, path="/api/v1/classify")
    trace = json.loads(body)["slo"]
    assert status == 200 and trace["level"] == 1 and trace["degraded"] == ["reasoning_off"]
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'semrouter_slo_level{model="reasoner"} 1.0' in metrics
    assert 'semrouter_slo_degraded_requests_total{model="reasoner",step="reasoning_off"}' in metrics
