"""The other client APIs end to end: the official `anthropic` and `openai` clients against
semrouter, through both transports (`semrouter serve`, and Envoy with `semrouter extproc`), in
front of real llama.cpp servers (SmolLM2-135M), JSON and SSE.

Anthropic Messages (a response, a stream, a tool-use round trip, an error in Anthropic's
shape), the Responses API (`responses.create`, streamed and not; `previous_response_id`
refused), `/v1/completions` routed by its prompt and `/v1/embeddings` passed to the embedding
backend: a third llama.cpp server on the same model, started with `--embedding true` (llama.cpp
serves embeddings only from a model loaded for them). The router config uses keyword signals
only, so no embedding model is involved in routing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import yaml

from tests.e2e.conftest import Tap, start_envoy, start_extproc, start_llama, start_semrouter
from tests.servers import free_port

pytestmark = pytest.mark.e2e

MULTI_STEP = "Think step by step: what is 12 times 12?"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def embedding_backend(log_dir: Path) -> Iterator[str]:
    process, url = start_llama("smollm2-embed", log_dir, "--embedding", "true")
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def router_config(
    llama_backends: dict[str, str], reasoner_tap: Tap, embedding_backend: str, log_dir: Path
) -> Path:
    def model(name: str, upstream: str, url: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "provider_model_id": upstream,
            "endpoints": [{"url": url}],
            "retries": 0,
            **extra,
        }

    config = {
        "router": {"embeddings_model": "embedder"},
        "models": [
            model("fast", "smollm2-fast", llama_backends["fast"]),
            model("reasoner", "smollm2-reasoner", reasoner_tap.url, reasoning_family="qwen3"),
            model("embedder", "smollm2-embed", embedding_backend),
        ],
        "signals": {
            "domain": {"enabled": False},
            "reasoning": {"enabled": False},
            "keywords": [{"name": "multi_step", "patterns": ["step by step"]}],
        },
        "decisions": [
            {
                "name": "multi_step",
                "rules": {"conditions": [{"name": "multi_step"}]},
                "model": "reasoner",
                "use_reasoning": True,
            }
        ],
        "default": {"model": "fast"},
    }
    path = log_dir / "apis-router.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def serve(router_config: Path, log_dir: Path) -> Iterator[str]:
    port = free_port()
    process = start_semrouter(
        ["serve", "--config", str(router_config), "--port", str(port)],
        {},
        log_dir / "apis-serve.log",
        f"http://127.0.0.1:{port}/ready",
    )
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def gateway(router_config: Path, log_dir: Path) -> Iterator[str]:
    extproc, port = start_extproc(router_config, log_dir / "apis-extproc.log")
    envoy, url = start_envoy(router_config, port, log_dir / "apis-envoy.log")
    yield url
    envoy.terminate()
    envoy.wait(10)
    extproc.terminate()
    extproc.wait(10)


@pytest.fixture(params=["serve", "envoy"])
def base_url(request: pytest.FixtureRequest) -> str:
    """Each test runs through both transports."""
    return str(request.getfixturevalue("serve" if request.param == "serve" else "gateway"))


def claude(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key="unused", max_retries=0, timeout=120)


def gpt(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_messages_json(base_url: str) -> None:
    raw = claude(base_url).messages.with_raw_response.create(
        model="auto",
        max_tokens=12,
        system="You answer in one short sentence.",
        messages=[{"role": "user", "content": "Say hello to a cat."}],
    )
    assert raw.headers["x-semrouter-model"] == "fast"
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "smollm2-fast"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 12


def test_messages_stream(base_url: str, reasoner_tap: Tap) -> None:
    before = len(reasoner_tap.bodies)
    with claude(base_url).messages.stream(
        model="auto",
        max_tokens=16,
        messages=[{"role": "user", "content": MULTI_STEP}],
        thinking={"type": "enabled", "budget_tokens": 2048},
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    assert kinds.count("text") > 1  # token by token
    assert final.content[0].type == "text" and final.content[0].text.strip()
    assert final.stop_reason in ("end_turn", "max_tokens")
    sent = reasoner_tap.bodies[before]  # the routing decision set reasoning, in its dialect
    assert sent["chat_template_kwargs"] == {"enable_thinking": True}
    assert "reasoning_effort" not in sent and sent["stream"] is True


@pytest.mark.parametrize("streamed", [False, True])
def test_tool_use_round_trips(base_url: str, reasoner_tap: Tap, streamed: bool) -> None:
    client = claude(base_url)
    ask = {
        "model": "auto",
        "max_tokens": 48,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [{"role": "user", "content": f"{MULTI_STEP} Then check the weather."}],
    }
    if streamed:
        with client.messages.stream(**ask) as stream:  # type: ignore[arg-type]
            first = stream.get_final_message()
    else:
        first = client.messages.create(**ask)  # type: ignore[arg-type]
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": call.input["city"]}
    assert call.input["city"] in ("Paris", "Oslo") and call.id
    before = len(reasoner_tap.bodies)
    answer = client.messages.create(
        model="auto",
        max_tokens=16,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        messages=[
            ask["messages"][0],  # type: ignore[index]
            {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}
                ],
            },
        ],
    )
    assert answer.content and answer.content[0].type == "text"
    sent = reasoner_tap.bodies[before]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call.id
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}


def test_messages_error_has_anthropic_shape(base_url: str) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        claude(base_url).messages.create(
            model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "The model 'no-such-model' does not exist"},
    }
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude(base_url).messages.create(
            model="auto",
            max_tokens=5,
            messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}],  # type: ignore[list-item,typeddict-item]
        )
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_responses_create(base_url: str) -> None:
    client = gpt(base_url)
    response = client.responses.create(
        model="auto", instructions="Answer briefly.", input="Name a colour.", max_output_tokens=10
    )
    assert response.object == "response" and response.model == "smollm2-fast"
    assert response.status in ("completed", "incomplete")
    assert response.output_text.strip()
    assert response.usage is not None and response.usage.input_tokens > 0
    events = list(
        client.responses.create(model="auto", input=MULTI_STEP, max_output_tokens=12, stream=True)
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert kinds.count("response.output_text.delta") > 1
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = events[-1].response  # type: ignore[union-attr]
    assert text.strip() and done.output_text == text and done.model == "smollm2-reasoner"


def test_responses_refuses_previous_response_id(base_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        gpt(base_url).responses.create(model="auto", input="hi", previous_response_id="resp_1")
    assert raised.value.code == "previous_response_not_supported"


def test_completions_and_embeddings(base_url: str, embedding_backend: str) -> None:
    client = gpt(base_url)
    raw = client.completions.with_raw_response.create(
        model="auto", prompt="Think step by step: once upon a time", max_tokens=6
    )
    assert raw.headers["x-semrouter-model"] == "reasoner"
    completion = raw.parse()
    assert completion.object == "text_completion" and completion.model == "smollm2-reasoner"
    assert completion.choices[0].text
    raw_embeddings = client.embeddings.with_raw_response.create(
        model="anything", input=["hello", "goodbye"]
    )
    assert raw_embeddings.headers["x-semrouter-model"] == "embedder"
    embeddings = raw_embeddings.parse()
    assert [e.index for e in embeddings.data] == [0, 1] and embeddings.model == "smollm2-embed"
    # Passed through as the backend answers (llama.cpp gives a generative model's per-token
    # vectors: it has no pooling layer).
    direct = openai.OpenAI(base_url=embedding_backend, api_key="unused").embeddings.create(
        model="smollm2-embed", input=["hello", "goodbye"]
    )
    assert [e.embedding for e in embeddings.data] == [e.embedding for e in direct.data]
