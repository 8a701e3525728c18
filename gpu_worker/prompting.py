"""Prompt text to text-encoder embeddings, the way A1111 users expect it to behave.

What this module implements, in the order it happens:

1. **Multi-prompts.** ``spec.parts`` holds the ``text::weight`` parts the parser split off.
   Each part is encoded on its own; the conditioning is the weighted sum of the parts'
   embeddings divided by the sum of the weights (so ``cat::2 dog::1`` is two thirds cat).
   Negative weights push away from a part (``::-0.5``); the weights must add up to more
   than zero.
2. **Attention syntax.** ``(word)`` multiplies a word's weight by 1.1, ``((word))`` by
   1.21, ``[word]`` divides it by 1.1, ``(word:1.3)`` sets 1.3; ``\\(`` and ``\\)`` are
   literal brackets and ``BREAK`` starts a new 75-token window. As in A1111, each token's
   embedding is multiplied by its weight and then the whole window is rescaled so that its
   mean is what it was before, which changes emphasis without changing overall magnitude.
3. **Long prompts.** Tokens are cut into windows of 75 (breaking at a comma when one falls
   in the last 20 tokens of a window), each window gets its own start and end tokens and is
   encoded separately, and the windows' embeddings are concatenated. The negative prompt
   (and each multi-prompt part) is padded with empty windows to the same length.
4. **Clip skip.** ``spec.clip_skip`` counts layers from the end, A1111 style: 1 (or None)
   is the last layer, 2 the one before it, and so on; SD 1.5 applies the final layer norm
   to the chosen layer. SDXL was trained on the penultimate layer, so there 1 (or None)
   means the penultimate layer and each step more skips one more layer.
5. **SDXL.** Both text encoders run on the same windows; their hidden states are
   concatenated along the feature axis and the pooled embedding comes from the second
   encoder's first window.

``--stylize`` is mapped by :func:`gpu_worker.guidance.guidance_for`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from core.spec import JobSpec
from gpu_worker.attention_text import parse_attention, strip_attention
from gpu_worker.failures import JobRejected
from gpu_worker.families import PromptStyle, adapter_of

WINDOW = 75
"""Prompt tokens per window; with the start and end tokens a window is CLIP's 77."""
COMMA_BACKTRACK = 20
"""A window that fills up breaks at its last comma if that comma is this close to the end."""
@dataclass(slots=True)
class _Windows:
    """Token ids and weights of a prompt, already cut into windows of :data:`WINDOW`."""

    tokens: list[list[int]]
    weights: list[list[float]]


def _tokenize_windows(tokenizer: Any, text: str) -> _Windows:
    runs = parse_attention(text)
    comma = tokenizer(",", add_special_tokens=False).input_ids
    comma_id = comma[0] if len(comma) == 1 else None
    windows = _Windows(tokens=[], weights=[])
    cur_t: list[int] = []
    cur_w: list[float] = []
    last_comma = -1

    def close_window() -> None:
        nonlocal cur_t, cur_w, last_comma
        windows.tokens.append(cur_t)
        windows.weights.append(cur_w)
        cur_t, cur_w, last_comma = [], [], -1

    for run in runs:
        if run.weight == -1:  # BREAK
            if cur_t:
                close_window()
            continue
        ids = tokenizer(run.text, add_special_tokens=False, truncation=False, verbose=False).input_ids
        for token in ids:
            if len(cur_t) == WINDOW:
                if last_comma >= 0 and len(cur_t) - last_comma <= COMMA_BACKTRACK:
                    # Keep a clause whole: move what follows the comma into the next window.
                    carry_t, carry_w = cur_t[last_comma + 1 :], cur_w[last_comma + 1 :]
                    cur_t, cur_w = cur_t[: last_comma + 1], cur_w[: last_comma + 1]
                    close_window()
                    cur_t, cur_w = carry_t, carry_w
                else:
                    close_window()
            if token == comma_id:
                last_comma = len(cur_t)
            cur_t.append(token)
            cur_w.append(run.weight)
    if cur_t or not windows.tokens:
        close_window()
    return windows


@dataclass(frozen=True, slots=True)
class _Encoder:
    tokenizer: Any
    text_encoder: Any
    layer_from_end: int
    """Index from the end of ``hidden_states`` (1 = last layer)."""
    final_norm: bool
    """Whether to apply the final layer norm to a hidden state other than the last."""
    pooled: bool
    """Whether this encoder provides the pooled embedding (SDXL's second encoder)."""


def _encoders(pipe: Any, clip_skip: int | None) -> list[_Encoder]:
    skip = 1 if clip_skip is None else clip_skip
    if skip < 1:
        raise ValueError(f"clip skip must be 1 or more, got {clip_skip}")
    tok2, enc2 = getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None)
    tok1, enc1 = getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)
    if is_sdxl(pipe):
        out = []
        if enc1 is not None and tok1 is not None:
            out.append(_Encoder(tok1, enc1, skip + 1, final_norm=False, pooled=False))
        out.append(_Encoder(tok2, enc2, skip + 1, final_norm=False, pooled=True))
    elif tok1 is not None and enc1 is not None:
        out = [_Encoder(tok1, enc1, skip, final_norm=True, pooled=False)]
    else:
        return []
    for e in out:
        layers = e.text_encoder.config.num_hidden_layers
        if e.layer_from_end > layers:
            raise ValueError(f"clip skip {clip_skip} is more than this model's {layers} text encoder layers")
    return out


def _style(pipe: Any) -> PromptStyle:
    found = adapter_of(pipe)
    return found.prompt_style if found is not None else PromptStyle.PLAIN


def is_sdxl(pipe: Any) -> bool:
    """Whether ``pipe`` conditions on two CLIP encoders plus a pooled embedding (its family's
    :class:`~gpu_worker.families.PromptStyle`)."""
    return _style(pipe) is PromptStyle.CLIP_PAIR


def is_weightable(pipe: Any) -> bool:
    """Whether :func:`encode_prompt` can build embeddings for ``pipe`` (a CLIP-encoder family)."""
    return _style(pipe) in (PromptStyle.CLIP, PromptStyle.CLIP_PAIR)


def _device(pipe: Any, fallback: Any) -> torch.device:
    device = getattr(pipe, "_execution_device", None)
    return torch.device(device) if device is not None else fallback.device


@torch.no_grad()
def _encode_text(pipe: Any, encoders: list[_Encoder], text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embeddings ``(1, 77 * windows, dim)`` and the pooled embedding ``(1, dim2)`` if any."""
    windows = _tokenize_windows(encoders[0].tokenizer, text)
    hidden: list[torch.Tensor] = []
    pooled: torch.Tensor | None = None
    for enc in encoders:
        tok = enc.tokenizer
        # Both SDXL tokenizers share CLIP's vocabulary but differ in padding token; the
        # windows were cut with the first, which is what A1111 does too.
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        device = _device(pipe, enc.text_encoder)
        per_window: list[torch.Tensor] = []
        for i, ids in enumerate(windows.tokens):
            # [BOS] tokens [EOS] [PAD]...: the layout diffusers' own encode_prompt uses, so a
            # short unweighted prompt gives exactly the pipeline's embeddings.
            row = [tok.bos_token_id, *ids, tok.eos_token_id] + [pad] * (WINDOW - len(ids))
            input_ids = torch.tensor([row], device=device)
            out = enc.text_encoder(input_ids, output_hidden_states=True)
            if enc.layer_from_end == 1 and enc.final_norm:
                z = out.last_hidden_state
            else:
                z = out.hidden_states[-enc.layer_from_end]
                if enc.final_norm:
                    # transformers 5 flattened CLIPTextModel (no ``text_model`` wrapper).
                    z = getattr(enc.text_encoder, "text_model", enc.text_encoder).final_layer_norm(z)
            per_window.append(z)
            if enc.pooled and i == 0:
                pooled = out[0]
        hidden.append(torch.cat(per_window, dim=1))
    z = torch.cat(hidden, dim=-1)
    return _apply_weights(z, windows.weights), pooled


def _apply_weights(z: torch.Tensor, weights: list[list[float]]) -> torch.Tensor:
    """Multiply token embeddings by their weights, then restore each window's mean (A1111)."""
    length = WINDOW + 2
    if all(w == 1.0 for window in weights for w in window):
        return z
    out = []
    for i, window in enumerate(weights):
        chunk = z[:, i * length : (i + 1) * length].float()
        w = torch.ones(length, dtype=torch.float32, device=z.device)
        w[1 : 1 + len(window)] = torch.tensor(window, dtype=torch.float32)
        before = chunk.mean()
        scaled = chunk * w[None, :, None]
        after = scaled.mean()
        # Rescaling by a ratio of means near zero (an encoder whose final layer norm has no
        # bias) or of opposite signs would blow the window up or flip it; then the plain
        # multiplication is the better approximation.
        floor = 1e-3 * chunk.abs().mean()
        if before.abs() > floor and after.abs() > floor and before * after > 0:
            scaled = scaled * (before / after)
        out.append(scaled.to(z.dtype))
    return torch.cat(out, dim=1)


def _pad_to(z: torch.Tensor, windows: int, empty: torch.Tensor) -> torch.Tensor:
    have = z.shape[1] // empty.shape[1]
    if have >= windows:
        return z
    return torch.cat([z, *([empty] * (windows - have))], dim=1)


def _weighted_mean(tensors: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    total = tensors[0] * weights[0]
    for t, w in zip(tensors[1:], weights[1:], strict=True):
        total = total + t * w
    return total / sum(weights)


def _plain_prompt(pipe: Any, spec: JobSpec, num_images: int) -> dict[str, Any]:
    """Prompt arguments for a family whose encoders A1111 weighting does not cover (T5, LLMs).

    Attention syntax is removed. Weighted multi-prompts (``a::2 b::1``) are blended: each
    part is encoded by the family's own encoder (:attr:`Adapter.encode_text`) and the
    embeddings are averaged by weight, negative weights pushing away, as for CLIP.
    """
    parts = spec.parts or ()
    family = adapter_of(pipe)
    weighted = len(parts) > 1 or any(p.weight != 1.0 for p in parts)
    kwargs: dict[str, Any]
    # --weird moves embeddings: a family that can encode a text itself gives them to move.
    if (weighted or spec.weird) and family is not None and family.encode_text is not None:
        encoded = [family.encode_text(pipe, strip_attention(p.text).strip(), spec.clip_skip) for p in parts]
        weights = [p.weight for p in parts]
        kwargs = {
            key: _weighted_mean([e[key] for e in encoded], weights).repeat(
                num_images, *([1] * (encoded[0][key].dim() - 1))
            )
            for key in encoded[0]
        }
    else:
        if any(p.weight != 1.0 for p in parts):
            what = family.families[0].value if family is not None else type(pipe).__name__
            raise JobRejected(f"{what} models cannot blend weighted prompt parts; write the prompt without weights")
        text = ", ".join(strip_attention(p.text).strip() for p in parts)
        kwargs = {"prompt": [text] * num_images}
        if spec.clip_skip is not None and "clip_skip" in inspect.signature(pipe.__call__).parameters:
            kwargs["clip_skip"] = spec.clip_skip
    if spec.negative_prompt:
        kwargs["negative_prompt"] = [strip_attention(spec.negative_prompt)] * num_images
    return kwargs


def encode_prompt(pipe: Any, spec: JobSpec, *, num_images: int = 1) -> dict[str, Any]:
    """Build the prompt keyword arguments for a diffusers pipeline call.

    Applies multi-prompt weights, A1111 attention syntax, long-prompt windows, clip skip
    and SDXL's two encoders (see the module docstring). Pass the result straight to the
    pipeline with ``num_images_per_prompt`` left at 1: the batch already holds
    ``num_images`` rows, one per generator.

    For models whose text encoders are not CLIP (e.g. FLUX's T5) the prompt is passed as
    text with the attention syntax removed and only the positive-weight parts kept.

    Args:
        pipe: a loaded pipeline (text-to-image, img2img or inpaint; they share encoders).
        spec: the job; ``parts``, ``negative_prompt`` and ``clip_skip`` are used.
        num_images: the batch size to repeat the embeddings to.

    Returns:
        ``prompt_embeds`` and ``negative_prompt_embeds`` (``(num_images, 77*k, dim)``) and,
        for SDXL, ``pooled_prompt_embeds`` and ``negative_pooled_prompt_embeds``; or
        ``prompt`` (and ``negative_prompt``) for models this module cannot weight.

    Raises:
        ValueError: the multi-prompt weights add up to zero or less, or clip skip is out
            of range for the model.
    """
    parts = spec.parts or ()
    total = sum(p.weight for p in parts)
    if parts and total <= 0:
        raise ValueError("the multi-prompt weights must add up to more than zero")
    if not is_weightable(pipe):
        return apply_weird(_plain_prompt(pipe, spec, num_images), spec.weird, spec.seed)

    encoders = _encoders(pipe, spec.clip_skip)
    empty, empty_pooled = _encode_text(pipe, encoders, "")
    encoded = [_encode_text(pipe, encoders, p.text) for p in parts] or [(empty, empty_pooled)]
    weights = [p.weight for p in parts] or [1.0]

    zero_negative = (
        is_sdxl(pipe)
        and not spec.negative_prompt
        and bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
    )
    neg, neg_pooled = _encode_text(pipe, encoders, spec.negative_prompt)
    if zero_negative:
        # SDXL base was trained with an all-zero unconditional input; its pipeline does the same.
        neg = torch.zeros_like(neg)
        neg_pooled = torch.zeros_like(neg_pooled) if neg_pooled is not None else None

    windows = max([z.shape[1] for z, _ in encoded] + [neg.shape[1]]) // empty.shape[1]
    pos = _weighted_mean([_pad_to(z.float(), windows, empty.float()) for z, _ in encoded], weights)
    pos = pos.to(empty.dtype)
    neg = _pad_to(neg, windows, torch.zeros_like(empty) if zero_negative else empty)

    kwargs = {
        "prompt_embeds": pos.repeat(num_images, 1, 1),
        "negative_prompt_embeds": neg.repeat(num_images, 1, 1),
    }
    if empty_pooled is not None:
        pooled = _weighted_mean([p.float() for _, p in encoded if p is not None], weights)
        assert neg_pooled is not None
        kwargs["pooled_prompt_embeds"] = pooled.to(empty_pooled.dtype).repeat(num_images, 1)
        kwargs["negative_pooled_prompt_embeds"] = neg_pooled.repeat(num_images, 1)
    return apply_weird(kwargs, spec.weird, spec.seed)


WEIRD_SCALE = 0.6
"""Offset of ``--weird 1000``, in units of the embedding's own standard deviation (1.8 at 3000)."""
WEIRD_SALT = 0x3E1D_7A11
"""Mixed into the job's seed for the direction of ``--weird``."""


def apply_weird(kwargs: dict[str, Any], weird: int, seed: int | None) -> dict[str, Any]:
    """``--weird``: every image's positive prompt embedding (and pooled one) moved by the same
    seeded random direction, ``(weird / 1000) * WEIRD_SCALE * std(e)`` long. Unlike ``--chaos``,
    which moves each image its own way, the four images move together: one unusual reading
    of the prompt, different for another seed, the same for the same seed.

    Raises:
        JobRejected: ``weird`` is set and the prompt reaches the pipeline as text (nothing to move).
    """
    if not weird:
        return kwargs
    moved = [key for key in ("prompt_embeds", "pooled_prompt_embeds") if isinstance(kwargs.get(key), torch.Tensor)]
    if not moved:
        raise JobRejected("this model takes its prompt as text, so --weird has no embedding to move")
    out = dict(kwargs)
    gen = torch.Generator(device="cpu").manual_seed(((seed or 0) ^ WEIRD_SALT) & 0xFFFF_FFFF_FFFF)
    amount = weird / 1000 * WEIRD_SCALE
    for key in moved:
        emb = out[key]
        noise = torch.randn(emb.shape[1:], generator=gen, dtype=torch.float32).to(emb.device)
        scale = emb.float().std()
        out[key] = (emb.float() + amount * scale * noise).to(emb.dtype)
    return out
