"""Local embedding backend: all-MiniLM-L6-v2 in onnxruntime on the CPU.

Owns tokenisation, windowing and batching for the exported graph (see ``onnx_export``), which
it loads from the cache (``model_cache``) without importing onnx.
Texts longer than ``max_tokens`` wordpieces (special tokens included) keep a head and a tail
window, ``[CLS] + first k + last k + [SEP]``, so a 2,000-token prompt costs no more than a
256-token one; ``token_counts`` still reports the full length. Each batch is sorted by length
and split where padding to the longest item would waste too much work. With ``spelling`` on,
misspelt words are corrected before tokenisation (see ``spelling``).
Calls of at most ``short_lane_chars`` characters go to a second batcher and thread (the session
runs concurrent calls), so a short prompt is never queued behind a long one's inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from semrouter.embed.base import Embedder, Encoded
from semrouter.embed.batcher import MicroBatcher
from semrouter.embed.model_cache import ensure_model
from semrouter.embed.settings import MAX_WINDOW
from semrouter.embed.spelling import MAX_WORD_CHARS, SpellingNormaliser, shipped_vocabulary

DEFAULT_BATCH_TOKENS = 2048


def window(pieces: Sequence[int], max_tokens: int, cls_id: int, sep_id: int) -> list[int]:
    """``[CLS] pieces [SEP]``, keeping only a head and a tail window when that is too long."""
    budget = max_tokens - 2
    if len(pieces) > budget:
        head = (budget + 1) // 2
        pieces = [*pieces[:head], *pieces[len(pieces) - (budget - head) :]]
    return [cls_id, *pieces, sep_id]


def plan_batches(
    lengths: Sequence[int], max_batch: int, max_tokens: int = DEFAULT_BATCH_TOKENS
) -> list[list[int]]:
    """Group item indices into inference calls of at most ``max_batch`` items and at most
    ``max_tokens`` padded tokens (a lone item longer than that gets a call of its own).

    Items are taken shortest first; a new group starts when the next item is longer than
    ``1.5 * shortest + 16`` tokens of the current group, which bounds the padding waste
    without splitting similar lengths into many small calls. The token bound is what bounds
    memory: onnxruntime's arena keeps the largest call's activations for good (32 prompts of
    256 tokens in one call left RSS 340 MB higher; calls of 2,048 tokens, 84 MB, at the same
    speed per prompt).
    """
    groups: list[list[int]] = []
    shortest = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if (
            not groups
            or len(groups[-1]) >= max_batch
            or lengths[i] > 1.5 * shortest + 16
            or (len(groups[-1]) + 1) * lengths[i] > max_tokens
        ):
            groups.append([])
            shortest = lengths[i]
        groups[-1].append(i)
    return groups


class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 via onnxruntime; ``encode`` goes through a ``MicroBatcher`` per lane.

    ``threads`` is onnxruntime's intra-op pool. On an idle 2-core box 2 threads cut latency by
    ~1.6x (short prompt 8.0 -> 5.2 ms, 2,000 tokens 83 -> 48 ms); when other processes keep
    the cores busy, 1 thread degrades more gracefully.
    """

    def __init__(
        self,
        *,
        max_tokens: int = 256,
        threads: int = 2,
        batch_size: int = 32,
        batch_wait_ms: float = 2.0,
        quantize: bool = False,
        spelling: bool = True,
        cache_dir: str | Path | None = None,
        max_word_chars: int = MAX_WORD_CHARS,
        max_queue: int = 512,
        max_batch_tokens: int = DEFAULT_BATCH_TOKENS,
        short_lane_chars: int = 512,
    ) -> None:
        if not 8 <= max_tokens <= MAX_WINDOW:
            raise ValueError(f"max_tokens must be in 8..{MAX_WINDOW}, got {max_tokens}")
        files = ensure_model(cache_dir, quantize=quantize)
        path = self.model_path = files.onnx
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads sleep instead of spinning: on a small box they would otherwise
        # take CPU from the event loop and the other workers between inference calls.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # No arena: it keeps the largest activations it ever held, and with two lanes running at
        # once it grew in steps over a 30-minute soak (+10.7% RSS); same speed without it.
        opts.enable_cpu_mem_arena = False
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        shapes = {o.name: o.shape for o in self._session.get_outputs()}
        self.dim = int(shapes["embedding"][1])
        self.feature_dim = int(shapes["features"][1])
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self._tokenizer = Tokenizer.from_file(str(files.tokenizer))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._spelling: SpellingNormaliser | None = None
        self.fingerprint = str(path)
        """Identifies what this engine computes: the model file and the spelling vocabulary."""
        if spelling:
            vocabulary = shipped_vocabulary()
            whole_words = (w for w in self._tokenizer.get_vocab() if w.isalpha() and w.isascii())
            self._spelling = SpellingNormaliser.load(vocabulary, whole_words, max_word_chars)
            self.fingerprint += f"+spelling:{self._spelling.digest}"
        self._cls = self._special_id("[CLS]")
        self._sep = self._special_id("[SEP]")
        self._pad = self._special_id("[PAD]")
        self._batcher = MicroBatcher(
            self.encode_sync, max_batch=batch_size, max_wait_ms=batch_wait_ms, max_queue=max_queue
        )
        self._short_lane_chars = short_lane_chars
        self._short_batcher = (
            MicroBatcher(
                self.encode_sync,
                max_batch=batch_size,
                max_wait_ms=batch_wait_ms,
                max_queue=max_queue,
                thread_name="semrouter-embed-short",
            )
            if short_lane_chars
            else None
        )

    def _special_id(self, token: str) -> int:
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise ValueError(f"tokenizer lacks {token}")
        return token_id

    @property
    def _batchers(self) -> list[MicroBatcher]:
        short = [] if self._short_batcher is None else [self._short_batcher]
        return [self._batcher, *short]

    @property
    def batches_run(self) -> int:
        """Inference batches the async path has run (coalesced ``encode`` calls)."""
        return sum(b.batches_run for b in self._batchers)

    async def start(self) -> None:
        """Start the batchers and run one warm-up inference, so no request pays for it."""
        for batcher in self._batchers:
            await batcher.start()
        await self._batcher.submit(["warm-up"])

    async def close(self) -> None:
        for batcher in self._batchers:
            await batcher.close()

    async def encode(self, texts: Sequence[str]) -> Encoded:
        if self._short_batcher is not None and sum(map(len, texts)) <= self._short_lane_chars:
            return await self._short_batcher.submit(texts)
        return await self._batcher.submit(texts)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """Windowed model inputs per text, and each text's wordpiece count before windowing."""
        if self._spelling is not None:
            texts = [self._spelling(text) for text in texts]
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        counts = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        ids = [window(e.ids, self.max_tokens, self._cls, self._sep) for e in encodings]
        return ids, counts

    def encode_sync(self, texts: Sequence[str]) -> Encoded:
        ids, counts = self.tokenize(texts)
        embeddings = np.empty((len(ids), self.dim), dtype=np.float32)
        features = np.empty((len(ids), self.feature_dim), dtype=np.float32)
        for group in plan_batches([len(x) for x in ids], self.batch_size, self.max_batch_tokens):
            width = max(len(ids[i]) for i in group)
            input_ids = np.full((len(group), width), self._pad, dtype=np.int64)
            mask = np.zeros((len(group), width), dtype=np.int64)
            for row, i in enumerate(group):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            emb, feat = self._session.run(
                ["embedding", "features"], {"input_ids": input_ids, "attention_mask": mask}
            )
            embeddings[group] = emb
            features[group] = feat
        pieces = tuple(np.asarray(x[1:-1], dtype=np.int64) for x in ids)
        return Encoded(embeddings, features, counts, pieces)
