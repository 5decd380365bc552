"""Embedding engine: ONNX export vs a numpy BERT reference, windowing, batching, remote API."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from pydantic import ValidationError

from semrouter.embed import EmbeddingError, EmbeddingSettings, Encoded, create_embedder
from semrouter.embed.batcher import MicroBatcher
from semrouter.embed.local import LocalEmbedder, plan_batches, window
from semrouter.embed.model_cache import MODEL_NAME, ensure_model, source_model_dir
from semrouter.embed.onnx_export import FEATURE_LAYERS, load_config, load_weights
from semrouter.embed.remote import RemoteEmbedder

PARAPHRASE = (
    "A man is playing a guitar on stage.",
    "Someone performs music with a guitar in front of an audience.",
)
UNRELATED = "The stock market fell sharply after the announcement of new tariffs."
# sentence-transformers 6.2 / torch 2.13, all-MiniLM-L6-v2: first 8 dims of two embeddings.
ST_ANCHORS = {
    PARAPHRASE[0]: [
        0.018591,
        0.035837,
        -0.01521,
        -0.078206,
        -0.143276,
        0.004202,
        0.074919,
        -0.017194,
    ],
    "hi": [-0.090476, 0.04044, 0.023906, 0.058948, -0.022882, -0.04722, 0.045048, 0.015786],
}
LONG_TEXT = " ".join(f"sentence {i} talks about routing, latency and caches." for i in range(300))


# ---------------------------------------------------------------- numpy reference forward pass


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


_erf = np.frompyfunc(math.erf, 1, 1)


def reference_forward(
    ids: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """BERT + masked mean pooling in float64: (normalised embedding, pooled hidden per layer)."""
    cfg = load_config(source_model_dir())
    w = {
        k: v.astype(np.float64)
        for k, v in load_weights(source_model_dir() / "model.safetensors").items()
        if v.dtype == np.float32
    }
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    b, s = ids.shape
    hd = cfg["hidden_size"] // heads

    def lin(x: np.ndarray, p: str) -> np.ndarray:
        return x @ w[f"{p}.weight"].T + w[f"{p}.bias"]

    def split(x: np.ndarray) -> np.ndarray:
        return x.reshape(b, s, heads, hd).transpose(0, 2, 1, 3)

    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:s]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    m = mask.astype(np.float64)
    bias = (1.0 - m[:, None, None, :]) * -10000.0
    pooled: dict[int, np.ndarray] = {}
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (split(lin(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, -1)
        x = _layer_norm(
            lin(ctx, f"{p}.attention.output.dense") + x,
            w[f"{p}.attention.output.LayerNorm.weight"],
            w[f"{p}.attention.output.LayerNorm.bias"],
            eps,
        )
        h = lin(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)).astype(np.float64))
        x = _layer_norm(
            lin(h, f"{p}.output.dense") + x,
            w[f"{p}.output.LayerNorm.weight"],
            w[f"{p}.output.LayerNorm.bias"],
            eps,
        )
        pooled[i + 1] = (x * m[..., None]).sum(1) / m.sum(1, keepdims=True)
    last = pooled[cfg["num_hidden_layers"]]
    return last / np.linalg.norm(last, axis=1, keepdims=True), pooled


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("semrouter-cache")


@pytest.fixture(scope="module")
def embedder(cache_dir: Path) -> LocalEmbedder:
    return LocalEmbedder(cache_dir=cache_dir, threads=1)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------------ export and reference


def test_export_is_cached_under_a_fingerprinted_name(cache_dir: Path) -> None:
    first = ensure_model(cache_dir)
    mtime = first.onnx.stat().st_mtime_ns
    assert ensure_model(cache_dir) == first
    assert first.onnx.stat().st_mtime_ns == mtime  # not rebuilt
    assert first.onnx.name.startswith(f"{MODEL_NAME}-") and first.onnx.suffix == ".onnx"
    # The model, its tokenizer and the manifest naming them; no temp files left behind.
    expected = [first.onnx.name, first.tokenizer.name, f"{MODEL_NAME}.json"]
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(expected)


def test_onnx_matches_numpy_reference(embedder: LocalEmbedder) -> None:
    texts = [
        "hi",
        "Write a Python function that reverses a linked list, then explain it.",
        "What is the capital of France?",
    ]
    ids, _ = embedder.tokenize(texts)
    width = max(map(len, ids))
    input_ids = np.zeros((len(ids), width), np.int64)
    mask = np.zeros_like(input_ids)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)], mask[row, : len(x)] = x, 1
    ref_emb, ref_pooled = reference_forward(input_ids, mask)
    got = embedder.encode_sync(texts)  # padded differently (length-sorted groups)

    assert np.abs(got.embeddings - ref_emb).max() < 1e-4
    ref_features = np.concatenate([ref_pooled[i] for i in FEATURE_LAYERS], axis=1)
    assert got.features.shape == (3, 384 * len(FEATURE_LAYERS)) == (3, embedder.feature_dim)
    assert np.abs(got.features - ref_features).max() < 1e-4


def test_matches_sentence_transformers_anchor(embedder: LocalEmbedder) -> None:
    got = embedder.encode_sync(list(ST_ANCHORS))
    assert np.abs(got.embeddings[:, :8] - np.array(list(ST_ANCHORS.values()))).max() < 1e-5


def test_int8_model_is_built_beside_and_stays_close(
    tmp_path: Path, embedder: LocalEmbedder
) -> None:
    int8 = LocalEmbedder(cache_dir=tmp_path, quantize=True, threads=1)
    models = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".onnx")
    assert sorted(name.endswith("-int8.onnx") for name in models) == [False, True]
    texts = [*PARAPHRASE, UNRELATED, LONG_TEXT]
    fp32, q = embedder.encode_sync(texts), int8.encode_sync(texts)
    assert float((fp32.embeddings * q.embeddings).sum(1).min()) > 0.95
    assert q.features.shape == fp32.features.shape


def test_embeddings_are_unit_norm_and_semantic(embedder: LocalEmbedder) -> None:
    got = embedder.encode_sync([*PARAPHRASE, UNRELATED])
    assert got.embeddings.dtype == np.float32 and got.features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got.embeddings, axis=1), 1.0, atol=1e-5)
    e = got.embeddings
    assert _cos(e[0], e[1]) > 0.6 > _cos(e[0], e[2]) + 0.4


def test_padding_and_grouping_do_not_change_results(embedder: LocalEmbedder) -> None:
    texts = ["hi", "a somewhat longer prompt " * 12, "mid length question here?", LONG_TEXT]
    together = embedder.encode_sync(texts)
    alone = [embedder.encode_sync([t]) for t in texts]
    for i, single in enumerate(alone):
        assert np.abs(together.embeddings[i] - single.embeddings[0]).max() < 1e-5
        assert np.abs(together.features[i] - single.features[0]).max() < 1e-4
    empty = embedder.encode_sync([])
    assert empty.embeddings.shape == (0, 384) and empty.token_counts.shape == (0,)


# ------------------------------------------------------------------------------------ windowing


def test_window_keeps_head_and_tail() -> None:
    pieces = list(range(1000, 1300))
    out = window(pieces, 256, cls_id=101, sep_id=102)
    assert len(out) == 256 and out[0] == 101 and out[-1] == 102
    assert out[1:128] == pieces[:127] and out[128:255] == pieces[-127:]
    assert window([7, 8], 256, 101, 102) == [101, 7, 8, 102]
    assert len(window(list(range(10)), 9, 101, 102)) == 9


def test_long_text_is_windowed_but_counted_in_full(embedder: LocalEmbedder) -> None:
    n = embedder.count_tokens(LONG_TEXT)
    assert n > 2000
    ids, counts = embedder.tokenize([LONG_TEXT, "hello world"])
    assert counts.tolist() == [n, 2] and len(ids[0]) == embedder.max_tokens and len(ids[1]) == 4
    got = embedder.encode_sync([LONG_TEXT])
    assert got.token_counts.tolist() == [n]
    # the tail window matters: a different ending changes the embedding
    other = embedder.encode_sync([LONG_TEXT + " Finally, tell me a joke about penguins."])
    assert _cos(got.embeddings[0], other.embeddings[0]) < 0.999


def test_plan_batches_bounds_size_and_padding() -> None:
    lengths = [5, 300, 6, 7, 256, 5, 40, 8]
    groups = plan_batches(lengths, max_batch=3)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) <= 3 for g in groups)
    for g in groups:  # never pads a short prompt to a long one
        assert max(lengths[i] for i in g) <= 1.5 * min(lengths[i] for i in g) + 16
    assert plan_batches([], 32) == []


def test_plan_batches_bounds_padded_tokens_per_call() -> None:
    lengths = [256] * 20 + [600]
    groups = plan_batches(lengths, max_batch=32, max_tokens=2048)
    assert all(len(g) * max(lengths[i] for i in g) <= 2048 for g in groups if len(g) > 1)
    assert [len(g) for g in groups] == [8, 8, 4, 1]  # the 600-token item alone
    assert sorted(i for g in groups for i in g) == list(range(21))


# ------------------------------------------------------------------------------------- batcher


def _fake_run(calls: list[list[str]], delay: float = 0.0) -> Any:
    def run(texts: list[str]) -> Encoded:
        calls.append(texts)
        time.sleep(delay)
        values = np.array([[float(t.split("-")[1])] for t in texts], dtype=np.float32)
        return Encoded(values, values * 2, np.arange(len(texts)))

    return run


async def test_batcher_coalesces_concurrent_calls() -> None:
    calls: list[list[str]] = []
    batcher = MicroBatcher(_fake_run(calls, delay=0.01), max_batch=8, max_wait_ms=2.0)
    try:
        results = await asyncio.gather(*(batcher.submit([f"t-{i}"]) for i in range(50)))
        pair = await batcher.submit(["t-100", "t-101"])
    finally:
        await batcher.close()
    assert [float(r.embeddings[0, 0]) for r in results] == list(range(50))
    assert pair.embeddings[:, 0].tolist() == [100.0, 101.0]
    assert pair.features[:, 0].tolist() == [200.0, 202.0]
    assert batcher.batches_run == len(calls) <= 50 // 8 + 2
    assert all(len(c) <= 8 for c in calls)


async def test_lone_request_does_not_wait() -> None:
    batcher = MicroBatcher(_fake_run([]), max_batch=32, max_wait_ms=500.0)
    try:
        await batcher.submit(["t-0"])  # warm the worker thread
        start = time.perf_counter()
        await batcher.submit(["t-1"])
        assert time.perf_counter() - start < 0.1
    finally:
        await batcher.close()


async def test_event_loop_stays_responsive_during_inference() -> None:
    batcher = MicroBatcher(_fake_run([], delay=0.3), max_batch=4)
    try:
        job = asyncio.create_task(batcher.submit(["t-1"]))
        ticks = 0
        while not job.done():
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks >= 10
    finally:
        await batcher.close()


async def test_batch_errors_reach_only_that_batch() -> None:
    release = threading.Event()

    def run(texts: list[str]) -> Encoded:
        if texts == ["t-0"]:
            release.wait(5)
        if "t-666" in texts:
            raise ValueError("bad batch")
        v = np.zeros((len(texts), 1), np.float32)
        return Encoded(v, v, np.zeros(len(texts), np.int64))

    batcher = MicroBatcher(run, max_batch=4, max_wait_ms=1.0)
    try:
        blocker = asyncio.create_task(batcher.submit(["t-0"]))
        await asyncio.sleep(0.05)  # t-0 is now running; the rest queue up behind it
        doomed = [asyncio.create_task(batcher.submit([f"t-{i}"])) for i in (1, 2, 666, 3)]
        later = asyncio.create_task(batcher.submit(["t-4"]))
        await asyncio.sleep(0.01)
        release.set()
        await blocker
        for task in doomed:  # the engine's own exception, as an EmbeddingError
            with pytest.raises(EmbeddingError, match="the encoder failed: ValueError"):
                await task
        assert (await later).embeddings.shape == (1, 1)
    finally:
        await batcher.close()


async def test_close_fails_waiting_callers() -> None:
    batcher = MicroBatcher(_fake_run([], delay=0.2))
    running = asyncio.create_task(batcher.submit(["t-1"]))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(batcher.submit(["t-2"]))
    await asyncio.sleep(0)
    await batcher.close()
    for task in (running, waiting):
        with pytest.raises(EmbeddingError, match="closed"):
            await task


async def test_local_embedder_async_path(embedder: LocalEmbedder) -> None:
    await embedder.start()
    try:
        texts = [f"question number {i} about physics" for i in range(40)]
        before = embedder.batches_run
        results = await asyncio.gather(*(embedder.encode([t]) for t in texts))
        assert embedder.batches_run - before < 40
        direct = embedder.encode_sync(texts)
        got = np.concatenate([r.embeddings for r in results])
        assert np.abs(got - direct.embeddings).max() < 1e-5
    finally:
        await embedder.close()


@pytest.mark.parametrize(
    ("short_lane_chars", "order"), [(200, ["short", "long"]), (0, ["long", "short"])]
)
async def test_short_call_is_not_queued_behind_a_long_one(
    cache_dir: Path, short_lane_chars: int, order: list[str]
) -> None:
    """A short prompt goes to its own lane: it is answered while a long batch still runs
    (with the lane off, it waits for that batch)."""
    embedder = LocalEmbedder(cache_dir=cache_dir, threads=1, short_lane_chars=short_lane_chars)
    await embedder.start()
    try:
        finished: list[str] = []

        async def encode(name: str, texts: list[str]) -> None:
            await embedder.encode(texts)
            finished.append(name)

        long_texts = [f"paragraph {i} " + "about the history of physics " * 60 for i in range(32)]
        long = asyncio.create_task(encode("long", long_texts))
        await asyncio.sleep(0.005)  # the long batch has started
        await encode("short", ["what is the capital of France?"])
        await long
        assert finished == order
    finally:
        await embedder.close()


# -------------------------------------------------------------------------------------- remote


class _FakeEmbeddingsServer:
    """A real HTTP server: embedding of text t is [len(t), 1, 2, 3] (unnormalised)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail = False

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("Authorization")})
        if self.fail:
            return web.json_response({"error": "overloaded"}, status=503)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 2.0, 3.0]}
            for i, t in enumerate(body["input"])
        ]
        return web.json_response({"object": "list", "data": data[::-1], "model": body["model"]})


@pytest.fixture
async def fake_server() -> AsyncIterator[tuple[str, _FakeEmbeddingsServer]]:
    server = _FakeEmbeddingsServer()
    app = web.Application()
    app.router.add_post("/v1/embeddings", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/v1", server
    await runner.cleanup()


def _expected(text: str) -> np.ndarray:
    v = np.array([len(text), 1, 2, 3], np.float32)
    return v / np.linalg.norm(v)


async def test_remote_embedder_round_trip(
    fake_server: tuple[str, _FakeEmbeddingsServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server = fake_server
    monkeypatch.setenv("TEST_EMBED_KEY", "sekrit")
    emb = RemoteEmbedder(url, "mini", api_key_env="TEST_EMBED_KEY", batch_size=2)
    await emb.start()  # probes the size
    try:
        assert emb.dim == emb.feature_dim == 4
        texts = ["a", "bbbb", "cc", "ddddddddd", "e"]
        got = await emb.encode(texts)
        assert (await emb.encode([])).embeddings.shape == (0, 4)
    finally:
        await emb.close()
    np.testing.assert_allclose(got.embeddings, np.stack([_expected(t) for t in texts]), atol=1e-6)
    assert got.features is got.embeddings
    assert got.token_counts.tolist() == [1, 1, 1, 3, 1]
    assert len(server.requests) == 1 + 3  # probe + ceil(5 / 2)
    assert all(
        r["auth"] == "Bearer sekrit" and r["body"]["model"] == "mini" for r in server.requests
    )


async def test_remote_embedder_sync_and_errors(
    fake_server: tuple[str, _FakeEmbeddingsServer],
) -> None:
    url, server = fake_server
    emb = RemoteEmbedder(url, "mini", dim=4)
    got = await asyncio.to_thread(emb.encode_sync, ["xyz", "hello"])
    np.testing.assert_allclose(got.embeddings[1], _expected("hello"), atol=1e-6)
    server.fail = True
    with pytest.raises(EmbeddingError, match="503"):
        await asyncio.to_thread(emb.encode_sync, ["xyz"])
    try:  # no start(): the session is opened on first use
        with pytest.raises(EmbeddingError, match="503"):
            await emb.encode(["xyz"])
        server.fail = False
        with pytest.raises(EmbeddingError, match="embedding size 4, expected 8"):
            await asyncio.to_thread(RemoteEmbedder(url, "mini", dim=8).encode_sync, ["x"])
    finally:
        await emb.close()
    unreachable = RemoteEmbedder("http://127.0.0.1:9/v1", "mini", dim=4, timeout_s=2)
    with pytest.raises(EmbeddingError, match="unreachable"):
        unreachable.encode_sync(["x"])


def test_remote_requires_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_EMBED_KEY_MISSING", raising=False)
    with pytest.raises(ValueError, match="TEST_EMBED_KEY_MISSING"):
        RemoteEmbedder("http://127.0.0.1:9", "m", api_key_env="TEST_EMBED_KEY_MISSING")


# ------------------------------------------------------------------------- settings / factory


def test_settings_validation() -> None:
    with pytest.raises(ValidationError):
        EmbeddingSettings(backend="remote", url="http://x/v1")  # no model
    with pytest.raises(ValidationError):
        EmbeddingSettings.model_validate({"backend": "local", "bogus": 1})
    with pytest.raises(ValidationError):
        EmbeddingSettings(max_tokens=4096)


def test_factory_builds_each_backend(cache_dir: Path) -> None:
    remote = create_embedder(
        EmbeddingSettings(backend="remote", url="http://h/v1", model="m", dim=8)
    )
    assert isinstance(remote, RemoteEmbedder) and remote.dim == 8
    assert remote.count_tokens("x" * 40) == 10
    local = create_embedder(EmbeddingSettings(cache_dir=str(cache_dir), max_tokens=64))
    assert isinstance(local, LocalEmbedder) and local.dim == 384
    ids, counts = local.tokenize([LONG_TEXT])
    assert len(ids[0]) == 64 and counts[0] > 2000
