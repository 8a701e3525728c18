"""Prompt embeddings: attention weights, long prompts, multi-prompts, clip skip, SDXL, stylize."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from core.spec import PromptPart
from gpu_worker.attention_text import parse_attention, strip_attention
from gpu_worker.guidance import guidance_for
from gpu_worker.prompting import WINDOW, encode_prompt
from gpu_worker.tiny_model import build_tiny_pipeline
from tests.gpu_worker.conftest import tiny_spec

WINDOW_LEN = WINDOW + 2


def _runs(text: str) -> list[tuple[str, float]]:
    return [(r.text, round(r.weight, 4)) for r in parse_attention(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a cat", [("a cat", 1.0)]),
        ("a (cat:1.3) here", [("a ", 1.0), ("cat", 1.3), (" here", 1.0)]),
        ("((cat))", [("cat", 1.21)]),
        ("[cat]", [("cat", round(1 / 1.1, 4))]),
        ("(a [b] c:2)", [("a ", 2.0), ("b", round(2 / 1.1, 4)), (" c", 2.0)]),
        (r"\(not weighted\)", [("(not weighted)", 1.0)]),
        ("(unclosed", [("unclosed", 1.1)]),
        ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
        ("time: 5pm", [("time: 5pm", 1.0)]),
    ],
)
def test_parse_attention_follows_a1111(text: str, expected: list[tuple[str, float]]) -> None:
    assert _runs(text) == expected


def test_strip_attention_keeps_the_words() -> None:
    assert strip_attention(r"a ((red)) [cat] (hat:1.4) \(x\)") == "a red cat hat (x)"


def _embeds(pipe: Any, prompt: str, **spec: Any) -> torch.Tensor:
    return encode_prompt(pipe, tiny_spec(prompt, **spec))["prompt_embeds"][0]


def _count(pipe: Any, text: str) -> int:
    return len(pipe.tokenizer(text, add_special_tokens=False).input_ids)


def _token_index(pipe: Any, prompt: str, word: str) -> int:
    ids = pipe.tokenizer(prompt).input_ids
    return int(ids.index(pipe.tokenizer(word, add_special_tokens=False).input_ids[0]))


def test_plain_prompt_matches_the_pipelines_own_encoding(tiny_pipe: Any) -> None:
    kwargs = encode_prompt(tiny_pipe, tiny_spec("a red cat", negative_prompt="blurry"), num_images=2)
    reference = tiny_pipe.encode_prompt(
        "a red cat",
        device="cpu",
        num_images_per_prompt=1,
        do_classifier_free_guidance=True,
        negative_prompt="blurry",
    )

    assert kwargs["prompt_embeds"].shape[0] == 2
    torch.testing.assert_close(kwargs["prompt_embeds"][1], reference[0][0])
    torch.testing.assert_close(kwargs["negative_prompt_embeds"][0], reference[1][0])
    if len(reference) == 4:  # SDXL: pooled embeddings too
        torch.testing.assert_close(kwargs["pooled_prompt_embeds"][0], reference[2][0])
        torch.testing.assert_close(kwargs["negative_pooled_prompt_embeds"][0], reference[3][0])


@pytest.fixture(scope="module")
def biased_sd15() -> Any:
    """A tiny SD 1.5 pipeline whose final layer norm has a bias, so embeddings have a mean.

    The shared fixture's fresh layer norm (bias 0) gives every token a zero mean, where
    A1111's mean restoration is (rightly) skipped; real CLIP weights have a bias.
    """
    pipe = build_tiny_pipeline("sd15", seed=0)
    with torch.no_grad():
        pipe.text_encoder.final_layer_norm.bias.fill_(0.5)
    return pipe


@pytest.mark.parametrize(("syntax", "factor"), [("(fox:1.5)", 1.5), ("((fox))", 1.21), ("[fox]", 1 / 1.1)])
@pytest.mark.parametrize("model", ["tiny_sd15", "biased_sd15"])
def test_attention_weight_scales_the_word_relative_to_the_rest(
    request: pytest.FixtureRequest, model: str, syntax: str, factor: float
) -> None:
    pipe = request.getfixturevalue(model)
    plain = _embeds(pipe, "a fox in the forest")
    weighted = _embeds(pipe, f"a {syntax} in the forest")
    fox = _token_index(pipe, "a fox in the forest", "fox")
    forest = _token_index(pipe, "a fox in the forest", "forest")

    def ratio(z: torch.Tensor) -> float:
        return float(z[fox].norm() / z[forest].norm())

    # Only the weighted token changes relative to the others, by exactly its weight.
    assert ratio(weighted) == pytest.approx(ratio(plain) * factor, rel=1e-4)
    # A1111 restores the window's mean after weighting (a no-op when the mean is zero).
    assert float(weighted.mean()) == pytest.approx(float(plain.mean()), rel=1e-4, abs=1e-6)


def test_long_prompt_is_encoded_in_windows_not_truncated(tiny_sd15: Any) -> None:
    words = "red fox with blue hair in the forest near a lake " * 10
    assert _count(tiny_sd15, words) == 110
    long_a = _embeds(tiny_sd15, words + "at night")
    long_b = _embeds(tiny_sd15, words + "by day")
    short = encode_prompt(tiny_sd15, tiny_spec("a fox", negative_prompt=""))

    assert long_a.shape == (2 * WINDOW_LEN, 32)
    # The last words (past CLIP's 77 tokens) change the second window only.
    torch.testing.assert_close(long_a[:WINDOW_LEN], long_b[:WINDOW_LEN])
    assert not torch.allclose(long_a[WINDOW_LEN:], long_b[WINDOW_LEN:])
    # The negative prompt is padded to the positive's length, and vice versa.
    long_kwargs = encode_prompt(tiny_sd15, tiny_spec(words, negative_prompt="blurry"))
    assert long_kwargs["negative_prompt_embeds"].shape == long_kwargs["prompt_embeds"].shape
    long_negative = encode_prompt(tiny_sd15, tiny_spec("a fox", negative_prompt=words))
    assert long_negative["prompt_embeds"].shape == (1, 2 * WINDOW_LEN, 32)
    torch.testing.assert_close(long_negative["prompt_embeds"][:, :WINDOW_LEN], short["prompt_embeds"])


def test_a_full_window_breaks_at_a_late_comma(tiny_sd15: Any) -> None:
    head, tail = "dog " * 70, "red " * 8
    assert _count(tiny_sd15, head) == 70 and _count(tiny_sd15, ", " + tail) == 9
    z = _embeds(tiny_sd15, head + ", " + tail)
    # 79 tokens: rather than cutting the clause after the comma at token 75, the comma
    # closes the first window and the whole clause starts the second.
    assert z.shape == (2 * WINDOW_LEN, 32)
    torch.testing.assert_close(z[WINDOW_LEN:], _embeds(tiny_sd15, tail))


def test_break_starts_a_new_window(tiny_sd15: Any) -> None:
    z = _embeds(tiny_sd15, "a red fox BREAK a blue dog")

    assert z.shape == (2 * WINDOW_LEN, 32)
    torch.testing.assert_close(z[WINDOW_LEN:], _embeds(tiny_sd15, "a blue dog"))


def test_multi_prompt_is_the_weighted_mean_of_its_parts(tiny_pipe: Any) -> None:
    def kwargs(*parts: tuple[str, float]) -> dict[str, Any]:
        return encode_prompt(tiny_pipe, tiny_spec(parts=tuple(PromptPart(t, w) for t, w in parts)))

    cat, dog = kwargs(("a cat", 1.0)), kwargs(("a dog", 1.0))
    mixed = kwargs(("a cat", 2.0), ("a dog", 1.0))
    away = kwargs(("a cat", 1.0), ("a dog", -0.5))

    for key in ("prompt_embeds", "pooled_prompt_embeds"):
        if key not in cat:
            continue
        torch.testing.assert_close(mixed[key], (2 * cat[key] + dog[key]) / 3)
        torch.testing.assert_close(away[key], (cat[key] - 0.5 * dog[key]) / 0.5)
    with pytest.raises(ValueError, match="add up to more than zero"):
        kwargs(("a cat", 1.0), ("a dog", -1.0))


def test_multi_prompt_parts_of_different_lengths_are_padded(tiny_sd15: Any) -> None:
    long = "red fox with blue hair in the forest near a lake " * 8
    parts = (PromptPart(long, 1.0), PromptPart("a dog", 1.0))

    z = encode_prompt(tiny_sd15, tiny_spec(parts=parts))["prompt_embeds"]

    assert z.shape == (1, 2 * WINDOW_LEN, 32)


def test_clip_skip_uses_an_earlier_layer(tiny_pipe: Any) -> None:
    default = _embeds(tiny_pipe, "a red cat")

    torch.testing.assert_close(_embeds(tiny_pipe, "a red cat", clip_skip=1), default)
    skipped = _embeds(tiny_pipe, "a red cat", clip_skip=2)
    assert skipped.shape == default.shape
    assert not torch.allclose(skipped, default)
    with pytest.raises(ValueError, match="clip skip 9"):
        _embeds(tiny_pipe, "a red cat", clip_skip=9)


def test_sdxl_pooled_embeddings_and_zero_empty_negative(tiny_sdxl: Any) -> None:
    kwargs = encode_prompt(tiny_sdxl, tiny_spec("a red cat", negative_prompt=""), num_images=3)

    assert kwargs["prompt_embeds"].shape == (3, WINDOW_LEN, 64)  # 32 + 32 features side by side
    assert kwargs["pooled_prompt_embeds"].shape == (3, 32)
    # SDXL base's pipeline sends zeros for an empty negative prompt; so do we.
    assert not kwargs["negative_prompt_embeds"].any()
    assert not kwargs["negative_pooled_prompt_embeds"].any()
    with_negative = encode_prompt(tiny_sdxl, tiny_spec("a red cat", negative_prompt="blurry"))
    assert with_negative["negative_pooled_prompt_embeds"].abs().sum() > 0


def test_long_weighted_embeddings_render(tiny_sdxl: Any) -> None:
    prompt = "a (red:1.3) cat with a [blue] hat " * 12
    kwargs = encode_prompt(tiny_sdxl, tiny_spec(prompt, negative_prompt="blurry"), num_images=2)

    images = tiny_sdxl(
        **kwargs,
        num_inference_steps=2,
        height=32,
        width=32,
        generator=[torch.Generator().manual_seed(s) for s in (1, 2)],
        output_type="latent",
    ).images

    assert images.shape == (2, 4, 16, 16)
    assert torch.isfinite(images).all()


@pytest.mark.parametrize(
    ("stylize", "expected"),
    [(0, 8.75), (50, 7.88), (100, 7.0), (250, 6.53), (1000, 4.2)],
)
def test_stylize_lowers_guidance_as_it_rises(stylize: int, expected: float) -> None:
    assert guidance_for(tiny_spec(cfg=None, stylize=stylize), 7.0) == pytest.approx(expected, abs=0.01)


def test_explicit_cfg_and_guidance_free_models_ignore_stylize() -> None:
    assert guidance_for(tiny_spec(cfg=5.5, stylize=1000), 7.0) == 5.5
    assert guidance_for(tiny_spec(cfg=None, stylize=1000), 1.0) == 1.0
    assert guidance_for(tiny_spec(cfg=None, stylize=0), 0.0) == 0.0
    # A low default is never pushed under the floor where guidance stops working.
    assert guidance_for(tiny_spec(cfg=None, stylize=1000), 2.0) == 1.5


def test_weird_moves_every_image_the_same_seeded_way(tiny_sd15: DiffusionPipeline) -> None:
    from gpu_worker.prompting import apply_weird

    base = encode_prompt(tiny_sd15, tiny_spec("a red fox", seed=3), num_images=4)
    weird = apply_weird(base, 1500, 3)
    moved = weird["prompt_embeds"] - base["prompt_embeds"]
    assert moved.abs().sum() > 0 and torch.equal(weird["negative_prompt_embeds"], base["negative_prompt_embeds"])
    assert all(torch.allclose(moved[0], row) for row in moved)  # the four images move together
    other = apply_weird(base, 1500, 4)["prompt_embeds"] - base["prompt_embeds"]
    assert not torch.allclose(other, moved)  # another seed, another direction
    assert torch.allclose(apply_weird(base, 3000, 3)["prompt_embeds"] - base["prompt_embeds"], 2 * moved, atol=1e-4)
    assert apply_weird(base, 0, 3) is base
