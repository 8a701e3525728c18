"""An offline CLIP tokenizer: byte-level BPE built from a word list, no download.

The vocabulary holds the special tokens, every byte-level character (so any text encodes,
one character at a time in the worst case) and, for each given word, the merges that
assemble it, so that words the model was trained on become one token each.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from transformers import CLIPTokenizer, Qwen2Tokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@lru_cache(maxsize=1)
def _byte_chars() -> list[str]:
    """The 256 printable stand-ins that byte-level BPE uses for raw bytes (GPT-2's table)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_clip_tokenizer(words: Iterable[str] = (), *, model_max_length: int = 77) -> CLIPTokenizer:
    """Build a CLIP tokenizer whose vocabulary covers ``words`` as single tokens.

    Args:
        words: words to learn (lower-cased; anything else still encodes as characters).
        model_max_length: the text encoder's context length.

    Returns:
        A ``CLIPTokenizer`` that needs no files; ``save_pretrained`` writes it to a folder.
    """
    vocab: dict[str, int] = {BOS: 0, EOS: 1}
    for ch in _byte_chars():
        vocab.setdefault(ch, len(vocab))
    for ch in _byte_chars():
        vocab.setdefault(ch + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    # BPE applies the lowest-ranked merge first, wherever it occurs, so a merge made for one
    # word can split another ("r"+"i" from "right" breaks the left-to-right chain of
    # "triangle"). Each word is therefore encoded with the merges so far, and whatever parts
    # remain are joined by new merges ranked after all others, which no word already
    # encoded as one token can ever reach.
    for word in sorted({w.lower() for w in words if w and re.fullmatch(r"[a-z0-9]+", w.lower())}):
        parts = _apply_merges([*word[:-1], word[-1] + "</w>"], ranks)
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in ranks:
                ranks[pair] = len(merges)
                merges.append(pair)
                vocab.setdefault(pair[0] + pair[1], len(vocab))
            parts = _apply_merges(parts, ranks)
    return CLIPTokenizer(
        vocab=vocab,
        # The tokenizers backend wants (left, right) pairs; transformers' annotation says str.
        merges=cast(Any, merges),
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        model_max_length=model_max_length,
    )


QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The ChatML layout of Qwen's chat template (what the Qwen-encoder pipelines render prompts with)."""


def build_qwen_tokenizer(words: Iterable[str] = (), *, model_max_length: int = 1024) -> Qwen2Tokenizer:
    """Build a Qwen2 (byte-level BPE, ChatML) tokenizer whose vocabulary covers ``words``.

    Each word is one token after a space (``Ġword``) and at the start of a text; the
    ChatML markers ``<|im_start|>`` and ``<|im_end|>`` are special tokens and the tokenizer
    carries a chat template, so the Z-Image, Qwen-Image and FLUX.2 Klein pipelines encode
    prompts with it exactly as with Qwen's own tokenizer (on other ids).
    """
    vocab: dict[str, int] = {}
    for ch in _byte_chars():
        vocab.setdefault(ch, len(vocab))
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    chosen = {w.lower() for w in words if w and re.fullmatch(r"[a-z0-9]+", w.lower())}
    for word in sorted(chosen | {"user", "assistant", "system"}):
        for form in ("\u0120" + word, word):
            parts = _apply_merges(list(form), ranks)
            while len(parts) > 1:
                pair = (parts[0], parts[1])
                if pair not in ranks:
                    ranks[pair] = len(merges)
                    merges.append(pair)
                    vocab.setdefault(pair[0] + pair[1], len(vocab))
                parts = _apply_merges(parts, ranks)
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=cast(Any, merges),
        unk_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=model_max_length,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def _apply_merges(parts: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word's parts: merge the lowest-ranked adjacent pair until none applies."""
    parts = list(parts)
    while len(parts) > 1:
        ranked = [(ranks[pair], i) for i, pair in enumerate(itertools.pairwise(parts)) if pair in ranks]
        if not ranked:
            break
        _, i = min(ranked)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def save_clip_tokenizer(words: Iterable[str], out_dir: str | Path, *, model_max_length: int = 77) -> Path:
    """Build the tokenizer for ``words`` and write it (diffusers ``tokenizer/`` folder layout)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build_clip_tokenizer(words, model_max_length=model_max_length).save_pretrained(out)
    return out
