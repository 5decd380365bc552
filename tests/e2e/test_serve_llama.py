"""`semrouter serve` with config/default.yaml in front of two real llama.cpp servers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.client import call, chat
from tests.e2e.conftest import Tap, start_semrouter
from tests.servers import free_port

pytestmark = pytest.mark.e2e

MATH = (
    "Solve step by step: a train leaves at 3pm at 60 km/h, another at 4pm at 90 km/h "
    "from the same station. When does the second catch up?"
)


def test_multi_step_problem_reaches_reasoner_with_thinking_on(
    semrouter_url: str, reasoner_tap: Tap
) -> None:
    before = len(reasoner_tap.bodies)
    status, headers, raw = call(
        semrouter_url, chat(MATH, chat_template_kwargs={"enable_thinking": False})
    )
    assert status == 200, raw
    assert headers["x-semrouter-model"] == "reasoner"
    assert headers["x-semrouter-reasoning"] == "on"
    assert headers["x-semrouter-domain"] == "math"
    body = json.loads(raw)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"]
    sent = reasoner_tap.bodies[before]
    assert sent["model"] == "smollm2-reasoner"
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}
    assert sent["messages"][0]["role"] == "system"


def test_greeting_takes_the_fast_path(semrouter_url: str) -> None:
    status, headers, raw = call(semrouter_url, chat("hi! how are you today?"))
    assert status == 200, raw
    assert headers["x-semrouter-model"] == "fast"
    assert headers["x-semrouter-reasoning"] == "off"
    assert json.loads(raw)["model"] == "smollm2-fast"


def test_sse_streams_through(semrouter_url: str) -> None:
    request = urllib.request.Request(
        semrouter_url + "/v1/chat/completions",
        data=json.dumps(chat("Tell me a short fun fact about cats.", stream=True)).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:].strip() for line in response if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) > 3
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).strip()


def test_classify_explains_without_calling_a_backend(semrouter_url: str, reasoner_tap: Tap) -> None:
    before = len(reasoner_tap.bodies)
    status, _, raw = call(
        semrouter_url, None, json.dumps({"text": MATH}).encode(), "/api/v1/classify"
    )
    assert status == 200
    result = json.loads(raw)
    assert result["model"] == "reasoner" and result["reasoning"] is True
    assert 0.0 <= result["confidence"] <= 1.0
    assert len(reasoner_tap.bodies) == before


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{oops", 400),
        (b'{"model": "auto"}', 400),
        (b'{"model": "nope", "messages": []}', 400),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404),
    ],
)
def test_bad_input_errors_in_openai_shape(semrouter_url: str, raw: bytes, status: int) -> None:
    got, _, body = call(semrouter_url, None, raw)
    assert got == status
    assert set(json.loads(body)["error"]) == {"message", "type", "code"}


def test_dead_backend_gives_502_and_router_survives(
    llama_backends: dict[str, str], log_dir: Path
) -> None:
    port = free_port()
    env = {
        "SEMROUTER_FAST_URL": f"http://127.0.0.1:{free_port()}/v1",
        "SEMROUTER_REASONER_URL": llama_backends["reasoner"],
    }
    process = start_semrouter(
        ["serve", "--config", "config/default.yaml", "--port", str(port)],
        env,
        log_dir / "semrouter-dead.log",
        f"http://127.0.0.1:{port}/ready",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        status, _headers, raw = call(url, chat("hello there"))
        assert status == 502
        assert json.loads(raw)["error"]["code"] == "backend_unavailable"
        status, _, raw = call(url, chat(MATH))
        assert status == 200, raw
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(10)
