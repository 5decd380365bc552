"""Tool pre-selection end to end: real `semrouter serve`, and Envoy + `semrouter extproc`, in
front of a recording stand-in backend (what it received is what the router forwarded).

The config has one similarity signal, so the router runs its real encoder (MiniLM on
onnxruntime) and tools are scored against the query's embedding, as in production.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from semrouter.bench.standin import StandIn, start_standin
from tests.e2e.client import call, chat
from tests.e2e.conftest import start_envoy, start_extproc, start_semrouter
from tests.servers import free_port

pytestmark = pytest.mark.e2e

CATALOG_SIZE = 40
TOP_K = 3


def tool(name: str, description: str, *params: str) -> dict[str, Any]:
    properties = {p: {"type": "string"} for p in params}
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties},
        },
    }


CATALOG = [
    tool("get_weather", "Current weather and temperature for a city", "city"),
    tool("send_email", "Send an email to a recipient", "to", "subject", "body"),
    tool("audit_log", "Record an audit entry", "entry"),
    tool("book_flight", "Book a flight between two airports", "origin", "destination"),
    *(
        tool(f"inventory_report_{i}", f"Warehouse stock levels for product line {i}", "sku")
        for i in range(CATALOG_SIZE - 4)
    ),
]


class RecordingBackend:
    """The stand-in backend (record=True) on its own event loop in a background thread."""

    def __init__(self) -> None:
        self.standin = StandIn(record=True)
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            _, self.port = self._loop.run_until_complete(start_standin(self.standin))
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        assert ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def last(self) -> dict[str, Any]:
        return self.standin.requests[-1]

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture(scope="module")
def backend() -> Iterator[RecordingBackend]:
    recording = RecordingBackend()
    yield recording
    recording.stop()


@pytest.fixture(scope="module")
def config_path(backend: RecordingBackend, log_dir: Path) -> Path:
    config = {
        "router": {
            "max_body_bytes": 4 * 1024 * 1024,
            "limits": {"classify_deadline_ms": 5000},
        },
        "models": [
            {"name": "fast", "endpoints": [{"url": backend.url}], "retries": 0},
            {"name": "agent", "endpoints": [{"url": backend.url}], "retries": 0},
        ],
        "signals": {
            "domain": {"enabled": False},
            "reasoning": {"enabled": False},
            "similarity": [{"name": "code_task", "examples": ["debug this python function"]}],
        },
        "decisions": [
            {"name": "agentic", "rules": {"conditions": [{"name": "has_tools"}]}, "model": "agent"}
        ],
        "default": {"model": "fast"},
        # A busy CI machine must not turn a first sight into a lexical-only one.
        "tools": {"top_k": TOP_K, "always_keep": ["audit_log"], "encode_wait_ms": 4000},
    }
    path = log_dir / "tools-router.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def serve_url(config_path: Path, log_dir: Path) -> Iterator[str]:
    port = free_port()
    process = start_semrouter(
        ["serve", "--config", str(config_path), "--port", str(port)],
        {},
        log_dir / "tools-serve.log",
        f"http://127.0.0.1:{port}/ready",
    )
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def gateway_url(config_path: Path, log_dir: Path) -> Iterator[str]:
    extproc, port = start_extproc(config_path, log_dir / "tools-extproc.log")
    envoy, url = start_envoy(config_path, port, log_dir / "tools-envoy.log")
    yield url
    envoy.terminate()
    extproc.terminate()
    envoy.wait(10)
    extproc.wait(10)


@pytest.fixture(params=["serve", "envoy"])
def router(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("serve_url" if request.param == "serve" else "gateway_url"))


def names(tools: list[dict[str, Any]]) -> list[str]:
    return [t["function"]["name"] for t in tools]


def in_catalog_order(kept: list[str]) -> bool:
    order = names(CATALOG)
    return [order.index(n) for n in kept] == sorted(order.index(n) for n in kept)


def test_the_backend_gets_only_the_kept_tools(router: str, backend: RecordingBackend) -> None:
    status, headers, _ = call(router, chat("What's the weather like in Paris?", tools=CATALOG))
    assert status == 200
    assert headers["x-semrouter-decision"] == "agentic"
    kept = names(backend.last()["tools"])
    assert headers["x-semrouter-tools"] == f"{len(kept)}/{CATALOG_SIZE}"
    assert len(kept) == TOP_K + 1
    assert {"get_weather", "audit_log"} <= set(kept)
    assert in_catalog_order(kept)


def test_tool_choice_and_tool_turns_pass_intact(router: str, backend: RecordingBackend) -> None:
    messages = [
        {"role": "user", "content": "Email Ann the stock levels of line 7"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "inventory_report_7", "arguments": '{"sku": "7"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "1,204 units in stock"},
    ]
    choice = {"type": "function", "function": {"name": "book_flight"}}
    payload = {"model": "auto", "messages": messages, "tools": CATALOG, "tool_choice": choice}
    status, headers, _ = call(router, payload)
    assert status == 200
    received = backend.last()
    assert received["messages"] == messages
    assert received["tool_choice"] == choice
    kept = names(received["tools"])
    assert {"book_flight", "inventory_report_7", "audit_log", "send_email"} <= set(kept)
    assert in_catalog_order(kept)
    assert headers["x-semrouter-tools"] == f"{len(kept)}/{CATALOG_SIZE}"


@pytest.mark.parametrize(
    ("tools", "status", "code"),
    [
        ({"get_weather": {}}, 400, "invalid_tools"),
        (
            [CATALOG[0], {"type": "function", "function": {"description": "nameless"}}],
            400,
            "invalid_tools",
        ),
        (["get_weather"], 400, "invalid_tools"),
        ([tool(f"t{i}", "x") for i in range(10_000)], 413, "too_many_tools"),
    ],
)
def test_malformed_tools_get_a_clear_error_at_once(
    router: str, backend: RecordingBackend, tools: Any, status: int, code: str
) -> None:
    before = len(backend.standin.requests)
    started = time.monotonic()
    got, _, raw = call(router, chat("What's the weather?", tools=tools))
    assert time.monotonic() - started < 10
    assert got == status
    assert json.loads(raw)["error"]["code"] == code
    assert len(backend.standin.requests) == before  # nothing reached the backend
