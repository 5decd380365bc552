"""Tool pre-selection: the keeping rules, the scorer and its bounded caches, the request checks,
the config, the tool signals, and the stage through both transports (stand-in backend)."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from semrouter.bench.standin import StandIn, start_standin
from semrouter.config import ConfigError, RouterConfig, load_config, parse_config
from semrouter.config.schema import ToolsConfig
from semrouter.embed.base import Embedder, EmbeddingError, Encoded
from semrouter.pipeline.errors import RouterError
from semrouter.pipeline.flow import Pipeline
from semrouter.pipeline.request import parse_chat_request
from semrouter.pipeline.router import Router
from semrouter.proxy.app import ProxyApp
from semrouter.signals.engine import SignalInput
from semrouter.tools import Keeping, ToolScorer, kept_indices
from semrouter.tools.cache import LRU
from semrouter.tools.text import embedding_text, lexical_text, name_words, tool_digest, words
from tests.conftest import minimal_config
from tests.servers import serving

DIM = 64


def tool(name: str, description: str = "", *params: str) -> dict[str, Any]:
    properties = {p: {"type": "string", "description": f"the {p}"} for p in params}
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
    tool("send_email", "Send an email message to a recipient", "to", "subject"),
    tool("search_flights", "Find flights between two airports on a date", "origin"),
    tool("create_invoice", "Create a customer invoice with line items", "customer"),
    tool("translate_text", "Translate text into another language", "text", "language"),
    *(tool(f"inventory_{i}", f"Warehouse stock level report number {i}") for i in range(25)),
]


class WordEmbedder(Embedder):
    """A deterministic stand-in encoder: each word hashes to a direction, a text is the
    normalised sum of its words' directions. Records every call; `delay_s` slows encode."""

    dim = DIM
    feature_dim = DIM

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.delay_s = delay_s
        self.fail = fail

    def encode_sync(self, texts: Sequence[str]) -> Encoded:
        self.calls.append(list(texts))
        rows = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in zip(rows, texts, strict=True):
            for word in words(text):
                row[zlib.crc32(word.encode()) % DIM] += 1.0
            row /= max(float(np.linalg.norm(row)), 1e-9)
        counts = np.array([len(t.split()) for t in texts])
        return Encoded(rows, rows, counts)

    async def encode(self, texts: Sequence[str]) -> Encoded:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise EmbeddingError("encoder down")
        return self.encode_sync(texts)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encoded_texts(self) -> list[str]:
        return [t for call in self.calls for t in call]


def item(text: str, tools: Sequence[dict[str, Any]], context: str = "") -> SignalInput:
    return SignalInput(text=text, prompt_chars=len(text), tools=tuple(tools), context=context)


def names_of(tools: Sequence[dict[str, Any]]) -> list[str]:
    return [t["function"]["name"] for t in tools]


# --- keeping rules --------------------------------------------------------------------------

NAMES = ["a", "b", "c", "d", "e", "f"]
SCORES = np.array([0.1, 0.9, 0.3, 0.8, 0.2, 0.7])


def keeping(**overrides: Any) -> Keeping:
    rules = {"top_k": 2, "min_score": 0.0, "always_keep": frozenset(), "allow_empty": False}
    return Keeping(**{**rules, **overrides})


def test_top_k_is_kept_in_the_original_order() -> None:
    assert kept_indices(NAMES, SCORES, keeping(top_k=3), None, []) == [1, 3, 5]


def test_min_score_drops_weak_tools_but_never_all_of_them() -> None:
    assert kept_indices(NAMES, SCORES, keeping(min_score=0.85), None, []) == [1]
    assert kept_indices(NAMES, SCORES, keeping(min_score=0.95), None, []) == [1]
    assert kept_indices(NAMES, SCORES, keeping(min_score=0.95, allow_empty=True), None, []) == []
    # A call is required: an empty list is never allowed then.
    rules = keeping(min_score=0.95, allow_empty=True)
    assert kept_indices(NAMES, SCORES, rules, "required", []) == [1]


def test_tool_choice_always_keep_and_called_tools_survive() -> None:
    choice = {"type": "function", "function": {"name": "a"}}
    assert kept_indices(NAMES, SCORES, keeping(), choice, []) == [0, 1, 3]
    rules = keeping(always_keep=frozenset({"e"}))
    assert kept_indices(NAMES, SCORES, rules, "auto", []) == [1, 3, 4]
    history = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "1", "type": "function", "function": {"name": "c"}}],
        },
        {"role": "tool", "tool_call_id": "1", "content": "done"},
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": ""}},
    ]
    assert kept_indices(NAMES, SCORES, keeping(), None, history) == [1, 2, 3, 5]


def test_a_required_call_within_k_keeps_every_tool() -> None:
    small = np.array([0.9, 0.1])
    choice = {"type": "function", "function": {"name": "a"}}
    assert kept_indices(["a", "b"], small, keeping(min_score=0.5), "required", []) == [0, 1]
    assert kept_indices(["a", "b"], small, keeping(min_score=0.5), choice, []) == [0, 1]
    assert kept_indices(["a", "b"], small, keeping(top_k=1, min_score=0.5), choice, []) == [0]


def test_decision_overrides_and_switching_off() -> None:
    config = ToolsConfig(top_k=3, always_keep=["x"], decisions={"chat": {"enabled": False}})
    assert Keeping.of(config) == Keeping(3, -1.0, frozenset({"x"}), False)
    assert Keeping.of(config, config.decisions["chat"]) is None
    override = ToolsConfig(decisions={"agent": {"top_k": 10, "min_score": 0.2, "always_keep": []}})
    assert Keeping.of(override, override.decisions["agent"]) == Keeping(10, 0.2, frozenset(), False)
    off = ToolsConfig(enabled=False, decisions={"agent": {"enabled": True}})
    assert Keeping.of(off) is None
    assert Keeping.of(off, off.decisions["agent"]) is not None


# --- text and the bounded cache -------------------------------------------------------------


def test_tool_text_is_words_and_bounded() -> None:
    assert name_words("getCurrentWeather") == "get current weather"
    assert name_words("weather.current_v2") == "weather current v 2"
    assert words("Booking flights") == ["book", "flight"]
    long = tool("read_file", "x" * 100_000, "path")
    assert len(embedding_text(long, 512)) == 512
    assert embedding_text(tool("get_weather", "Weather now", "city"), 512) == (
        "get weather: Weather now Parameters: city."
    )
    assert tool_digest(CATALOG[0]) == tool_digest(json.loads(json.dumps(CATALOG[0])))
    assert tool_digest(CATALOG[0]) != tool_digest(tool("get_weather", "Weather", "city"))


def test_lru_evicts_the_least_recently_used() -> None:
    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert len(cache) == 2
    with pytest.raises(ValueError):
        LRU(0)


# --- the scorer -----------------------------------------------------------------------------


def scorer(embedder: Embedder | None = None, **config: Any) -> ToolScorer:
    return ToolScorer(ToolsConfig(**config), embedder, batch_size=8)


async def test_each_distinct_tool_is_encoded_once_and_the_query_never() -> None:
    embedder = WordEmbedder()
    tools = scorer(embedder)
    query = embedder.encode_sync(["what is the weather in Paris"]).embeddings[0]
    embedder.calls.clear()
    scores = await tools.score(item("what is the weather in Paris", CATALOG), query)
    assert int(scores.argmax()) == 0
    first = embedder.encoded_texts()
    assert len(first) == len(CATALOG)
    assert "what is the weather in Paris" not in first
    assert max(len(call) for call in embedder.calls) <= 8  # in calls of the batch size
    await tools.score(item("send an email", CATALOG), query)
    assert len(embedder.encoded_texts()) == len(CATALOG)  # cached
    changed = [tool("get_weather", "Weather forecast for tomorrow", "city"), *CATALOG[1:]]
    await tools.score(item("forecast", changed), query)
    assert embedder.encoded_texts()[len(CATALOG) :] == [embedding_text(changed[0], 512)]


async def test_caches_stay_within_their_bounds_under_many_distinct_tools() -> None:
    embedder = WordEmbedder()
    tools = scorer(embedder, cache={"max_entries": 50, "max_catalogs": 3})
    query = embedder.encode_sync(["q"]).embeddings[0]
    for n in range(40):
        hostile = [tool(f"t{n}_{i}", f"random {n} {i}") for i in range(20)]
        await tools.score(item("q", hostile), query)
        assert len(tools.tools) <= 50
        assert len(tools.catalogs) <= 3
    assert not tools.pending()


async def test_a_slow_new_catalog_is_scored_lexically_then_embedded() -> None:
    embedder = WordEmbedder(delay_s=0.3)
    tools = scorer(embedder, encode_wait_ms=20)
    query = embedder.encode_sync(["current weather in the city"]).embeddings[0]
    request = item("current weather in the city", CATALOG)
    started = asyncio.get_running_loop().time()
    lexical = await tools.score(request, query)
    assert asyncio.get_running_loop().time() - started < 0.2
    assert lexical.max() == pytest.approx(0.3)  # the lexical term alone, scaled to its weight
    assert tools.pending()
    again = await tools.score(request, query)  # the encoding is under way: not started twice
    assert len(tools.pending()) == 1
    await asyncio.gather(*tools.pending())
    embedded = await tools.score(request, query)
    assert embedded.max() > 0.3 + 0.5
    assert int(embedded.argmax()) == int(lexical.argmax()) == int(again.argmax()) == 0


async def test_an_encoder_failure_falls_back_to_words_and_is_retried() -> None:
    embedder = WordEmbedder(fail=True)
    tools = scorer(embedder)
    query = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    scores = await tools.score(item("send an email to Bob", CATALOG), query)
    assert int(scores.argmax()) == 1
    assert not tools.pending()
    embedder.fail = False
    await tools.score(item("send an email to Bob", CATALOG), query)
    assert embedder.calls  # tried again, and it worked this time


def test_context_words_help_a_terse_turn() -> None:
    tools = scorer(None)
    bare = tools.score_sync(item("yes, do it", CATALOG), None)
    assert bare.max() == 0
    helped = tools.score_sync(item("yes, do it", CATALOG, context="translate into French"), None)
    assert int(helped.argmax()) == 4


# --- the request checks ---------------------------------------------------------------------


def body(tools: object) -> bytes:
    return json.dumps(
        {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tools": tools}
    ).encode()


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ({"name": "x"}, "'tools' must be a list"),
        (["get_weather"], "tools[0] must be an object"),
        ([{"type": "function", "function": {"description": "no name"}}], "tools[0].function.name"),
        ([tool("ok"), {"type": "function", "function": {"name": ""}}], "tools[1].function.name"),
        ([{"type": 3}], "tools[0].type must be a string"),
        ([{"type": "function"}], "tools[0] has no name: tools[0].function.name"),
    ],
)
def test_malformed_tools_are_a_clear_400(tools: object, message: str) -> None:
    with pytest.raises(RouterError) as caught:
        parse_chat_request(body(tools), 1 << 20)
    assert caught.value.status == 400
    assert caught.value.code == "invalid_tools"
    assert message in caught.value.message


def test_too_many_tools_is_a_413_and_other_tool_types_pass() -> None:
    with pytest.raises(RouterError) as caught:
        parse_chat_request(body([tool(f"t{i}") for i in range(1025)]), 1 << 22)
    assert (caught.value.status, caught.value.code) == (413, "too_many_tools")
    custom = [{"type": "custom", "custom": {"name": "grep"}}, {"type": "web", "name": "search"}]
    assert parse_chat_request(body(custom), 1 << 20).tools == tuple(custom)


# --- config ---------------------------------------------------------------------------------


def test_the_default_config_selects_five_tools() -> None:
    config = load_config(Path(__file__).resolve().parents[2] / "config" / "default.yaml")
    assert config.tools.enabled
    assert config.tools.top_k == 5


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"tools": {"decisions": {"nope": {"enabled": False}}}}, "tools.decisions.nope: unknown"),
        ({"tools": {"cache": {"max_entries": 10}}}, "tools.cache.max_entries: 10 is less than"),
        ({"tools": {"top_k": 0}}, "tools.top_k"),
        ({"tools": {"encode_wait_ms": 300}}, "tools.encode_wait_ms: 300 is not below"),
        (
            {"signals": {"tools": [{"name": "any_tools"}]}},
            "give min_count (> 1), max_count or min_score",
        ),
        (
            {"signals": {"tools": [{"name": "has_tools", "min_count": 3}]}},
            "'has_tools' is reserved",
        ),
        (
            {"signals": {"tools": [{"name": "mid", "min_count": 9, "max_count": 3}]}},
            "max_count must be >= min_count",
        ),
    ],
)
def test_tool_config_errors_are_precise(section: dict[str, Any], error: str) -> None:
    data = minimal_config()
    for key, value in section.items():
        data[key] = {**data.get(key, {}), **value}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env={})
    assert any(error in line for line in caught.value.errors), caught.value.errors


# --- the stage in the pipeline and through the HTTP proxy -----------------------------------


def tools_config(backend: str = "http://127.0.0.1:9/v1", **tools: Any) -> RouterConfig:
    data = minimal_config()
    for model in data["models"]:
        model["endpoints"] = [{"url": backend}]
    data["signals"]["tools"] = [{"name": "big_catalog", "min_count": 20}]
    data["decisions"] = [
        *data["decisions"],
        {
            "name": "agent",
            "priority": -1,
            "rules": {"conditions": [{"name": "big_catalog"}]},
            "model": "reasoner",
        },
        {
            "name": "few_tools",
            "priority": -2,
            "rules": {"conditions": [{"name": "has_tools"}]},
            "model": "fast",
        },
    ]
    data["tools"] = {"top_k": 3, "always_keep": ["create_invoice"], **tools}
    data["router"] = {"max_body_bytes": 1 << 20}
    return parse_config(data, env={})


def chat(text: str, tools: Sequence[dict[str, Any]], **extra: Any) -> bytes:
    messages = extra.pop("messages", [{"role": "user", "content": text}])
    return json.dumps({"model": "auto", "messages": messages, "tools": tools, **extra}).encode()


async def test_tool_signals_route_and_the_stage_keeps_in_order() -> None:
    pipeline = Pipeline(Router(tools_config()))
    prepared = await pipeline.prepare(chat("translate this text to German", CATALOG), {})
    assert prepared.route.decision == "agent"
    assert prepared.route.signals is not None
    assert {"has_tools", "big_catalog"} <= prepared.route.signals.fired
    sent = json.loads(prepared.body)["tools"]
    assert {"create_invoice", "translate_text"} <= set(names_of(sent))  # top 3 + always_keep
    assert len(sent) == 4 and prepared.headers["x-semrouter-tools"] == f"4/{len(CATALOG)}"
    assert [CATALOG.index(t) for t in sent] == sorted(CATALOG.index(t) for t in sent)
    few = await pipeline.prepare(chat("translate this", CATALOG[:4]), {})
    assert few.route.decision == "few_tools"
    none = await pipeline.prepare(chat("hello", []), {})
    assert "x-semrouter-tools" not in none.headers
    assert none.route.signals is not None and "has_tools" not in none.route.signals.fired


async def test_selection_off_for_a_decision_and_direct_requests() -> None:
    pipeline = Pipeline(Router(tools_config(decisions={"agent": {"enabled": False}})))
    prepared = await pipeline.prepare(chat("translate this text", CATALOG), {})
    assert prepared.headers["x-semrouter-tools"] == f"{len(CATALOG)}/{len(CATALOG)}"
    assert json.loads(prepared.body)["tools"] == CATALOG
    direct = await pipeline.prepare(chat("send an email to Ann", CATALOG, model="fast"), {})
    assert direct.route.decision == "direct"
    assert "send_email" in names_of(json.loads(direct.body)["tools"])  # scored on its words


@pytest.fixture
async def standin() -> AsyncIterator[tuple[StandIn, str]]:
    backend = StandIn(record=True)
    runner, port = await start_standin(backend)
    yield backend, f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def post(url: str, path: str, raw: bytes) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as session, session.post(url + path, data=raw) as answer:
        return answer.status, dict(answer.headers), await answer.json(content_type=None)


async def test_the_backend_gets_only_the_kept_tools_and_the_turns_intact(
    standin: tuple[StandIn, str],
) -> None:
    backend, backend_url = standin
    app = ProxyApp(Router(tools_config(backend_url))).app
    messages = [
        {"role": "user", "content": "email the invoice to Bob"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "inventory_7", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42 units"},
    ]
    choice = {"type": "function", "function": {"name": "search_flights"}}
    async with serving(app) as url:
        status, headers, _ = await post(
            url, "/v1/chat/completions", chat("", CATALOG, messages=messages, tool_choice=choice)
        )
        assert status == 200
        received = backend.requests[-1]
        kept = names_of(received["tools"])
        assert {"search_flights", "create_invoice", "inventory_7", "send_email"} <= set(kept)
        assert headers["x-semrouter-tools"] == f"{len(kept)}/{len(CATALOG)}"
        assert received["messages"] == messages
        assert received["tool_choice"] == choice
        status, _, summary = await post(
            url,
            "/api/v1/classify",
            json.dumps({"text": "send an email", "tools": CATALOG}).encode(),
        )
        assert status == 200
        assert summary["tools"]["total"] == len(CATALOG)
        best = max(summary["tools"]["kept"], key=lambda t: t["score"])
        assert best["name"] == "send_email" and best["score"] > 0
        status, _, error = await post(
            url, "/v1/chat/completions", chat("hi", [{"type": "function"}])
        )
        assert status == 400 and error["error"]["code"] == "invalid_tools"


async def test_ext_proc_forwards_the_kept_tools_and_reports_them() -> None:
    from semrouter.extproc.server import ExtProcServicer
    from tests.unit.test_extproc import (
        drive,
        mutations,
        request_body,
        request_headers,
        response_headers,
    )

    servicer = ExtProcServicer(Pipeline(Router(tools_config())))
    raw = chat("translate this text to German", CATALOG)
    replies = await drive(
        servicer, [request_headers(), request_body(raw), response_headers("application/json")]
    )
    common = replies[1].request_body.response
    sent = json.loads(common.body_mutation.body)["tools"]
    assert "translate_text" in names_of(sent) and len(sent) == 4
    assert mutations(common)["x-semrouter-tools"] == f"4/{len(CATALOG)}"
    assert mutations(replies[2].response_headers.response)["x-semrouter-tools"] == (
        f"4/{len(CATALOG)}"
    )


def test_tool_context_is_the_recent_turns_without_the_routing_turn_or_system() -> None:
    messages = [
        {"role": "system", "content": "You are a travel agent"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "book it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "1", "type": "function", "function": {"name": "search"}}],
        },
        {"role": "tool", "tool_call_id": "1", "content": "flight AF12 found"},
    ]
    request = parse_chat_request(chat("", CATALOG, messages=messages), 1 << 20)
    assert request.tool_context(4, 1000) == "flight AF12 found\n\nfirst answer\nfirst question"
    assert request.tool_context(2, 1000) == "flight AF12 found\n"
    assert request.tool_context(4, 5) == "fligh"
    signals = request.signal_input()
    assert signals.text == "book it" and signals.context.startswith("flight AF12 found")
    without_tools = parse_chat_request(chat("", [], messages=messages), 1 << 20)
    assert without_tools.signal_input().context == ""


def test_a_huge_tool_costs_no_more_than_its_text_limit() -> None:
    class Counting(dict[str, Any]):
        """Parameters that count how many of them are read."""

        read = 0

        def items(self) -> Any:
            for key, value in super().items():
                Counting.read += 1
                yield key, value

    properties = Counting({f"p{i}": {"description": "y" * 50} for i in range(10_000)})
    huge = {"type": "function", "function": {"name": "n" * 100_000, "parameters": {}}}
    huge["function"]["parameters"]["properties"] = properties
    for text in (embedding_text(huge, 512), lexical_text(huge, 512)):
        assert len(text) <= 512
    assert Counting.read < 200  # of 2 x 10,000


async def test_routing_encodes_the_query_once_for_signals_and_tools() -> None:
    data = minimal_config()
    data["signals"]["similarity"] = [{"name": "travel", "examples": ["book me a flight"]}]
    embedder = WordEmbedder()
    router = Router(parse_config(data, env={}), embedder)
    await router.start()
    request = parse_chat_request(chat("find flights from Paris to Rome", CATALOG), 1 << 20)
    route = await router.route(request)
    assert route.signals is not None and route.signals.tool_scores is not None
    assert names_of(CATALOG)[int(route.signals.tool_scores.argmax())] == "search_flights"
    assert embedder.encoded_texts().count("find flights from Paris to Rome") == 1
    embedder.calls.clear()
    await router.route(request)
    assert embedder.calls == [["find flights from Paris to Rome"]]  # the catalog is cached


async def test_allow_empty_drops_tools_and_tool_choice_unless_a_call_is_required() -> None:
    pipeline = Pipeline(Router(tools_config(min_score=2.0, allow_empty=True, always_keep=[])))
    extra = {"tool_choice": "auto", "parallel_tool_calls": True}
    prepared = await pipeline.prepare(chat("translate this", CATALOG, **extra), {})
    body = json.loads(prepared.body)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(body)
    assert prepared.headers["x-semrouter-tools"] == f"0/{len(CATALOG)}"
    required = await pipeline.prepare(chat("translate this", CATALOG, tool_choice="required"), {})
    body = json.loads(required.body)
    assert names_of(body["tools"]) == ["translate_text"] and body["tool_choice"] == "required"
