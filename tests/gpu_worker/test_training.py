"""The shapes data set and the trainer: determinism, ground truth, held-out split, resuming.

The trainer tests run the real stages with tiny widths and a few steps, so they check the
mechanics (seeding, checkpoints, export in diffusers format), not the model's quality:
``bench/model_quality.py`` and ``test_shapes_model.py`` do that on the shipped weights.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bench.model_quality import accuracy, read_image
from gpu_worker.training.components import ModelSizes, build_tokenizer
from gpu_worker.training.dataset import (
    COLOURS,
    POSITIONS,
    SHAPES,
    TRAIN_SIZES,
    caption,
    draw_scene,
    eval_pairs,
    full_caption,
    is_held_out,
    sample_scene,
    scene_array,
    training_scenes,
    vocabulary,
)
from gpu_worker.training.train import ConfigMismatchError, TrainConfig, learning_rate, parse_args, train

# ---------------------------------------------------------------------------------------
# Data set


def test_same_seed_same_scenes_and_pixels() -> None:
    first = training_scenes(50, seed=3)
    again = training_scenes(50, seed=3)
    assert first == again
    assert all(np.array_equal(scene_array(a), scene_array(b)) for a, b in zip(first, again, strict=True))
    assert training_scenes(50, seed=4) != first


def test_shape_colour_always_differs_from_background() -> None:
    rng = random.Random(0)
    scenes = [sample_scene(rng) for _ in range(2000)]
    assert all(s.colour != s.background for s in scenes)
    # Every attribute value occurs (uniform draws over 2000 samples).
    assert {s.shape for s in scenes} == set(SHAPES)
    assert {s.colour for s in scenes} == set(COLOURS)
    assert {s.position for s in scenes} == set(POSITIONS)


def test_training_never_sees_held_out_combinations_and_eval_only_those() -> None:
    train_scenes = training_scenes(3000, seed=0)
    assert not any(is_held_out(s.combination) for s in train_scenes)
    pairs = eval_pairs(240)
    assert len(pairs) == 240
    assert all(is_held_out(p.scene.combination) for p in pairs)
    assert len({p.seed for p in pairs}) == 240
    assert eval_pairs(240) == pairs


def test_eval_prompts_name_every_attribute() -> None:
    for pair in eval_pairs(100):
        scene, words = pair.scene, pair.prompt.replace(",", " ").split()
        assert scene.shape in words and scene.colour in words and scene.background in words
        position_words = (
            {"centre", "center", "middle", "centred"}
            if scene.position == "centre"
            else set(scene.position.split())
        )
        assert position_words & set(words), pair.prompt


def test_captions_use_the_vocabulary_and_every_word_round_trips() -> None:
    tokenizer = build_tokenizer()
    words = set(vocabulary())
    for word in words:
        ids = tokenizer(word).input_ids
        assert tokenizer.decode(ids, skip_special_tokens=True).strip() == word
        # One token per word: the text encoder learns each word as one embedding.
        assert len(ids) == 3, (word, tokenizer.convert_ids_to_tokens(ids))
    rng = random.Random(1)
    for scene in training_scenes(300, seed=1):
        text = caption(scene, rng)
        assert set(text.replace(",", " ").split()) <= words, text
        assert scene.shape in text


def test_captions_drop_attributes_sometimes_and_name_them_otherwise() -> None:
    rng = random.Random(2)
    scene = training_scenes(1, seed=2)[0]
    texts = [caption(scene, rng) for _ in range(400)]
    with_colour = sum(scene.colour in t.split() or f"{scene.colour}," in t for t in texts)
    assert 0.6 * len(texts) < with_colour < 0.95 * len(texts)
    assert len(set(texts)) > 20, "several phrasings"
    assert scene.colour in full_caption(scene, rng)


def test_drawn_scene_has_its_colours_where_the_truth_says() -> None:
    for width, height in TRAIN_SIZES:
        scene = training_scenes(1, seed=5, width=width, height=height)[0]
        image = draw_scene(scene)
        assert image.size == (width, height)
        assert image.getpixel((0, 0)) == COLOURS[scene.background]
        # The middle of the shape's lower half is inside every shape (a triangle is widest there).
        inside = (int(scene.cx), int(scene.cy + scene.extent / 4))
        assert image.getpixel(inside) == COLOURS[scene.colour]


def test_scorer_reads_ground_truth_images_perfectly() -> None:
    # The benchmark's measurements, checked on the data itself: any error they make on the
    # model's images is the model's.
    for width, height in TRAIN_SIZES:
        scenes = training_scenes(150, seed=6, width=width, height=height)
        result = accuracy([read_image(scene_array(s)) for s in scenes], scenes)
        assert result == dict.fromkeys(result, 1.0), (width, height, result)


def test_learning_rate_warms_up_then_decays_to_a_tenth() -> None:
    assert learning_rate(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert learning_rate(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert learning_rate(99, 100, 1.0, 10) == pytest.approx(0.1, abs=1e-3)


# ---------------------------------------------------------------------------------------
# Trainer (tiny widths, a few steps)

TINY = TrainConfig(
    sizes=ModelSizes(vae_channels=(8, 8, 8), unet_channels=(8, 16, 16), text_width=16, text_layers=1),
    vae_steps=3,
    vae_batch=2,
    square_count=8,
    rect_count=2,
    unet_steps=4,
    unet_batch=4,
    decoder_steps=0,
    own_latent_steps=0,
    small_shape_passes=(),
    warmup=2,
    checkpoint_every=2,
)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(folder.glob("*/*.safetensors")):
        for key, value in load_file(file).items():
            tensors[f"{file.parent.name}/{key}"] = value
    return tensors


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("train")
    figures = train(TINY, root / "out", root / "work", log=lambda _: None)
    assert figures is not None
    return root / "out", figures


def test_export_is_a_standard_diffusers_folder(tiny_run: tuple[Path, dict[str, object]]) -> None:
    from diffusers import AutoPipelineForText2Image, StableDiffusionPipeline

    out, figures = tiny_run
    for part in ("unet", "vae", "text_encoder"):
        assert list((out / part).glob("*.safetensors")), part
        assert not list((out / part).glob("*.bin")), part
    assert (out / "tokenizer").is_dir() and (out / "scheduler" / "scheduler_config.json").exists()
    pipe = AutoPipelineForText2Image.from_pretrained(str(out), local_files_only=True)
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle", num_inference_steps=2, width=64, height=48, output_type="np").images[0]
    assert image.shape == (48, 64, 3)
    assert figures["vae"]["steps"] == 3 and figures["unet"]["steps"] == 4  # type: ignore[index]
    assert (out / "training.json").exists()


def test_same_config_gives_the_same_weights(tiny_run: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    out, _ = tiny_run
    train(TINY, tmp_path / "out", tmp_path / "work", log=lambda _: None)
    first, again = _weights(out), _weights(tmp_path / "out")
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_interrupted_run_resumes_to_the_same_weights(
    tiny_run: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    out, _ = tiny_run
    work = tmp_path / "work"
    # Stopped after 1 UNet step (the checkpoint of step 1 is written as it stops), then the
    # same command again: it must resume rather than restart, and end where one run ends.
    assert train(TINY, tmp_path / "out", work, log=lambda _: None, stop_after=1) is None
    messages: list[str] = []
    train(TINY, tmp_path / "out", work, log=messages.append)
    assert any("resuming at step 1" in m for m in messages)
    first, resumed = _weights(out), _weights(tmp_path / "out")
    assert all(torch.equal(first[k], resumed[k]) for k in first)


def test_work_folder_of_another_config_is_refused(
    tiny_run: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    train(TINY, tmp_path / "out", tmp_path / "work", log=lambda _: None, stop_after=0)
    with pytest.raises(ConfigMismatchError, match="seed"):
        train(replace(TINY, seed=1), tmp_path / "out", tmp_path / "work", log=lambda _: None)


def test_command_line_maps_to_the_config() -> None:
    config, out, work, threads, preview = parse_args(
        ["--out", "o", "--unet-steps", "7", "--unet-channels", "8,16", "--lr", "0.002", "--threads", "1"]
    )
    assert (out, work, threads, preview) == (Path("o"), Path("data/shapes-training"), 1, False)
    assert parse_args(["--out", "o", "--preview"])[4] is True
    assert config.unet_steps == 7 and config.lr == 0.002
    assert config.sizes.unet_channels == (8, 16)
    assert parse_args(["--out", "o"])[0] == TrainConfig()


def test_a_run_in_progress_exports_a_preview_of_its_last_checkpoint(tmp_path: Path) -> None:
    from diffusers import DiffusionPipeline

    from gpu_worker.training.train import export_preview

    work = tmp_path / "work"
    with pytest.raises(FileNotFoundError):
        export_preview(TINY, tmp_path / "early", tmp_path / "nothing")
    assert train(TINY, tmp_path / "out", work, log=lambda _: None, stop_after=1) is None

    step = export_preview(TINY, tmp_path / "preview", work, log=lambda _: None)

    assert step == 1
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "preview", local_files_only=True)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    with pytest.raises(ConfigMismatchError):
        export_preview(replace(TINY, seed=1), tmp_path / "other", work, log=lambda _: None)



def test_the_shape_region_covers_the_shapes_box_and_a_margin() -> None:
    import numpy as np

    from gpu_worker.training.dataset import sample_scene, shape_region

    scene = sample_scene(random.Random(3), 64, 64)
    region = shape_region([scene], margin=2.0)[0]
    ys, xs = np.nonzero(region)
    half = scene.extent / 2 + 2.0
    assert xs.min() + 0.5 >= scene.cx - half and xs.max() + 0.5 <= scene.cx + half
    assert ys.min() + 0.5 >= scene.cy - half and ys.max() + 0.5 <= scene.cy + half
    assert region.sum() == pytest.approx((2 * half) ** 2, rel=0.15)


def test_the_weighted_loss_is_plain_mse_without_weight_and_favours_the_region_with_it() -> None:
    import torch

    from gpu_worker.training.train import weighted_error

    target = torch.zeros(1, 1, 4, 4)
    region = torch.zeros(1, 1, 4, 4)
    region[..., :2, :2] = 1.0
    inside, outside = target.clone(), target.clone()
    inside[..., 0, 0] = 1.0
    outside[..., 3, 3] = 1.0
    assert weighted_error(inside, target, region, 0.0) == weighted_error(outside, target, region, 0.0)
    assert weighted_error(inside, target, None, 5.0) == torch.nn.functional.mse_loss(inside, target)
    assert weighted_error(inside, target, region, 5.0) == pytest.approx(6 * weighted_error(outside, target, region, 5.0))


def test_the_decoder_stage_changes_the_decoder_only_and_resumes(tmp_path: Path) -> None:
    weighted = replace(TINY, vae_shape_loss_weight=2.0, shape_loss_weight=3.0)
    config = replace(weighted, decoder_steps=3)
    plain = train(weighted, tmp_path / "plain", tmp_path / "plain-work", log=lambda _: None)
    figures = train(config, tmp_path / "out", tmp_path / "work", log=lambda _: None)
    assert plain is not None and figures is not None
    assert figures["decoder"]["steps"] == 3 and plain["decoder"]["steps"] == 0  # type: ignore[index]
    before, after = _weights(tmp_path / "plain"), _weights(tmp_path / "out")
    decoder = [k for k in after if k.startswith("vae/decoder.")]
    encoder = [k for k in after if k.startswith("vae/encoder.")]
    assert decoder and encoder
    assert all(torch.equal(before[k], after[k]) for k in encoder)  # the same VAE stage, untouched
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
    # Run again: everything is done, it resumes to the same weights.
    messages: list[str] = []
    train(config, tmp_path / "again", tmp_path / "work", log=messages.append)
    assert any("decoder: resuming at step 3" in m for m in messages)
    again = _weights(tmp_path / "again")
    assert all(torch.equal(after[k], again[k]) for k in after)


def test_the_own_latent_stage_tunes_the_decoder_on_the_unets_latents_and_resumes(
    tiny_run: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    config = replace(TINY, own_latent_steps=3, small_shape_passes=((2, 1, 3e-4), (1, 2, 2e-4)))
    plain_dir, plain = tiny_run  # the same run without the stage
    figures = train(config, tmp_path / "out", tmp_path / "work", log=lambda _: None)
    assert figures is not None
    assert figures["own_latent_decoder"]["steps"] == 3  # type: ignore[index]
    passes = figures["small_shape_decoder"]
    assert [done["steps"] for done in passes] == [2, 1]  # type: ignore[attr-defined,index]
    assert [done["config"]["small_scenes"] for done in passes] == [8, 16]  # type: ignore[attr-defined,index]
    assert [done["config"]["lr"] for done in passes] == [3e-4, 2e-4]  # type: ignore[attr-defined,index]
    assert plain["own_latent_decoder"]["steps"] == 0  # type: ignore[index]
    # The UNet's latents of every training size were made once and kept, the second pass's
    # small shapes beside them.
    (native_w, native_h), *_ = config.sizes_trained
    assert sorted(p.name for p in (tmp_path / "work" / "own-latents").glob("own-latents-*.pt")) == sorted(
        [f"own-latents-{w}x{h}.pt" for w, h in config.sizes_trained]
        + [f"own-latents-{native_w}x{native_h}-small{n}.pt" for n in (8, 16)]
    )
    before, after = _weights(plain_dir), _weights(tmp_path / "out")
    decoder = [k for k in after if k.startswith("vae/decoder.")]
    unchanged = [k for k in after if not k.startswith(("vae/decoder.", "vae/post_quant_conv."))]
    # UNet and text encoder as they were; the encoder too, inside the wider VAE (decoder_width)
    # whose new channels are zero.
    assert all(torch.equal(before[k], after[k][tuple(slice(0, n) for n in before[k].shape)]) for k in unchanged)
    assert any(before[k].shape != after[k].shape or not torch.equal(before[k], after[k]) for k in decoder)
    messages: list[str] = []
    train(config, tmp_path / "again", tmp_path / "work", log=messages.append)
    assert any("own-latent decoder: resuming at step 3" in m for m in messages)
    assert any("own-latent decoder: resuming at step 2" in m for m in messages)
    again = _weights(tmp_path / "again")
    assert all(torch.equal(after[k], again[k]) for k in after)


def test_a_text_to_image_picture_is_redrawn_at_its_box_with_the_prompted_class() -> None:
    from gpu_worker.training.dataset import draw_scene
    from gpu_worker.training.own_latents import redrawn

    rng = random.Random(5)
    scene = next(s for s in (sample_scene(rng) for _ in range(200)) if s.shape == "square" and s.size == "large")
    # The UNet's picture: a circle of the same colours, a little off the scene's exact centre.
    drawn = replace(scene, shape="circle", cx=scene.cx + 2.0, cy=scene.cy - 1.0, extent=scene.extent * 1.1)
    target = redrawn(scene, np.asarray(draw_scene(drawn), dtype=np.float32))
    assert target is not None
    assert target.shape == "square" and target.colour == scene.colour and target.background == scene.background
    assert target.cx == pytest.approx(drawn.cx, abs=0.6) and target.cy == pytest.approx(drawn.cy, abs=0.6)
    assert target.extent == pytest.approx(drawn.extent, abs=1.0)
    # Left out: nothing drawn, the shape far from its named place, or far from its named size.
    blank = np.asarray(draw_scene(replace(scene, extent=0.0)), dtype=np.float32)
    assert redrawn(scene, blank) is None
    far = replace(drawn, cx=(drawn.cx + scene.width / 2) % scene.width)
    assert redrawn(scene, np.asarray(draw_scene(far), dtype=np.float32)) is None
    tiny = replace(drawn, extent=scene.extent * 0.4)
    assert redrawn(scene, np.asarray(draw_scene(tiny), dtype=np.float32)) is None


def test_text_to_image_chunks_train_the_decoder_on_their_redrawn_scenes(
    tiny_run: tuple[Path, dict[str, object]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import StableDiffusionPipeline

    from gpu_worker.training import own_latents as stage

    moved: list[object] = []

    def fake_redrawn(scene: object, pixels: np.ndarray) -> object:
        # The tiny random UNet draws no shape; say it drew each one a pixel to the right.
        assert pixels.shape == (scene.height, scene.width, 3)  # type: ignore[attr-defined]
        target = replace(scene, cx=scene.cx + 1.0)  # type: ignore[type-var,attr-defined]
        moved.append(target)
        return target

    monkeypatch.setattr(stage, "redrawn", fake_redrawn)
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_run[0]), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    settings = replace(stage.OwnLatents(), steps=2, native_scenes=4, other_scenes=2, text_share=1.0, class_weight=5.0,
                       denoise_steps=2, batch=4, checkpoint_every=1, sizes=TINY.sizes_trained)
    done = stage.tune_decoder(settings, pipe, tmp_path, log=lambda _: None)
    assert done.decoder.steps == 2 and len(moved) == 4 + 2 * (len(TINY.sizes_trained) - 1)
    targets, latents, _ = stage.own_latents(settings, pipe, TINY.sizes_trained[0], tmp_path)
    assert targets == moved[:4] and latents.shape[0] == 4  # kept in the work folder, read back
    # A model whose pictures all miss their scenes cannot run the stage: a clear error.
    monkeypatch.setattr(stage, "redrawn", lambda scene, pixels: None)
    with pytest.raises(RuntimeError, match="no picture the UNet drew"):
        stage.tune_decoder(settings, pipe, tmp_path / "none", log=lambda _: None)


def test_the_class_region_marks_where_the_shape_classes_differ() -> None:
    from gpu_worker.training.dataset import class_region

    rng = random.Random(8)
    scene = next(s for s in (sample_scene(rng) for _ in range(200)) if s.size == "large")
    region = class_region([scene])[0]
    half = scene.extent / 2
    corner = (int(scene.cy - half + 1), int(scene.cx - half + 1))  # inside a square, outside a circle
    assert region[corner] == 1.0
    assert region[int(scene.cy + half * 0.3), int(scene.cx)] == 0.0  # inside all three classes
    assert region[int(scene.cy), int(scene.cx + half + 3) % scene.width] == 0.0  # outside them all
    assert 0.02 < float(region.mean()) < 0.3


def test_a_widened_vae_encodes_and_decodes_exactly_as_before_and_the_stage_trains_it(
    tiny_run: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    from gpu_worker.training import own_latents as stage
    from gpu_worker.training.components import widen_vae

    narrow = AutoencoderKL.from_pretrained(str(tiny_run[0] / "vae")).eval()
    wide = widen_vae(narrow, 2).eval()
    assert list(wide.config["block_out_channels"]) == [2 * c for c in narrow.config["block_out_channels"]]
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latents = narrow.encode(images).latent_dist.mean
        assert torch.equal(wide.encode(images).latent_dist.mean, latents)
        assert torch.allclose(wide.decode(latents).sample, narrow.decode(latents).sample, atol=1e-6)
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_run[0]), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    settings = replace(stage.OwnLatents(), steps=2, native_scenes=4, other_scenes=2, denoise_steps=10, batch=4,
                       checkpoint_every=1, sizes=TINY.sizes_trained, decoder_width=2)
    stage.tune_decoder(settings, pipe, tmp_path, log=lambda _: None)
    assert list(pipe.vae.config["block_out_channels"]) == list(wide.config["block_out_channels"])
    with torch.no_grad():  # the encoder is untouched: the UNet's latents mean what they meant
        assert torch.equal(pipe.vae.encode(images).latent_dist.mean, latents)
    # Resumed from its checkpoint, the stage rebuilds the wide VAE before loading it.
    again = StableDiffusionPipeline.from_pretrained(str(tiny_run[0]), local_files_only=True)
    again.set_progress_bar_config(disable=True)
    stage.tune_decoder(settings, again, tmp_path, log=lambda _: None)
    assert all(torch.equal(a, b) for a, b in zip(pipe.vae.state_dict().values(), again.vae.state_dict().values(), strict=True))


def test_the_absolute_error_on_the_region_commits_a_doubtful_pixel_to_the_likelier_value() -> None:
    """A corner pixel that is the shape's in 7 of 10 pictures with the same latents: the
    squared error is least near their mean (a blend), the absolute error on the region near
    the shape's value."""
    import torch

    from gpu_worker.training.steps import decoder_loss

    images = -torch.ones(10, 1, 4, 4)
    images[:7, :, 0, 0] = 1.0
    region = torch.zeros(10, 1, 4, 4)
    region[:, :, 0, 0] = 1.0
    candidates = torch.linspace(-1, 1, 201)

    def best(region_l1: bool) -> float:
        losses = []
        for value in candidates:
            recon = -torch.ones(10, 1, 4, 4)
            recon[:, :, 0, 0] = value
            losses.append(float(decoder_loss(recon, images, region, 10.0, region_l1)))
        return float(candidates[int(torch.tensor(losses).argmin())])

    assert best(region_l1=True) > 0.95
    assert 0.3 < best(region_l1=False) < 0.7


def test_small_scenes_add_text_to_image_pictures_of_small_shapes_to_the_native_set(
    tiny_run: tuple[Path, dict[str, object]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import StableDiffusionPipeline

    from gpu_worker.training import own_latents as stage

    redrawn: list[object] = []

    def fake_redrawn(scene: object, pixels: np.ndarray) -> object:
        redrawn.append(scene)  # the tiny random UNet draws no shape: keep the scene as it is
        return scene

    monkeypatch.setattr(stage, "redrawn", fake_redrawn)
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_run[0]), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    native = TINY.sizes_trained[0]
    settings = replace(stage.OwnLatents(), steps=1, native_scenes=4, other_scenes=2, text_share=0.0, small_scenes=3, strength=(0.5, 1.0),
                       denoise_steps=2, batch=4, checkpoint_every=1, sizes=(native,))
    stage.tune_decoder(settings, pipe, tmp_path, log=lambda _: None)
    assert len(redrawn) == 3 and all(scene.size == "small" for scene in redrawn)  # type: ignore[attr-defined]
    targets, latents, _ = stage.own_latents(settings, pipe, native, tmp_path, small=True)
    assert targets == redrawn and latents.shape[0] == 3
    plain, _, _ = stage.own_latents(settings, pipe, native, tmp_path)
    assert len(plain) == 4 and not set(map(id, plain)) & set(map(id, targets))
    # A larger set reads a smaller one's whole chunks back and makes the same set as it would alone.
    monkeypatch.setattr(stage, "CHUNK", 2)
    (tmp_path / "grown").mkdir()
    (tmp_path / "alone").mkdir()
    stage.own_latents(replace(settings, small_scenes=2), pipe, native, tmp_path / "grown", small=True)
    redrawn.clear()
    grown, grown_latents, _ = stage.own_latents(replace(settings, small_scenes=4), pipe, native, tmp_path / "grown",
                                                small=True)
    assert len(redrawn) == 2 and grown[:3] == targets  # only the last chunk was made
    _, alone, _ = stage.own_latents(replace(settings, small_scenes=4), pipe, native, tmp_path / "alone", small=True)
    assert torch.equal(grown_latents, alone)
