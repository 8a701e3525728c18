"""models.toml: parsing, family defaults, built-ins, and refusals with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.families import FAMILY_DEFAULTS
from core.models import ModelConfigError, ModelFamily, SourceKind
from core.models_file import load_catalog

PIN = "ab" * 32


@pytest.fixture
def model_files(tmp_path: Path) -> Path:
    """A folder with a diffusers folder, a single-file checkpoint, its config and a LoRA."""
    (tmp_path / "dreamshaper").mkdir()
    (tmp_path / "dreamshaper" / "model_index.json").write_text("{}")
    (tmp_path / "juggernaut.safetensors").write_bytes(b"weights")
    (tmp_path / "sdxl-config").mkdir()
    (tmp_path / "loras").mkdir()
    (tmp_path / "loras" / "pixel.safetensors").write_bytes(b"lora")
    (tmp_path / "4x.safetensors").write_bytes(b"esrgan")
    return tmp_path


def _write(folder: Path, text: str) -> Path:
    path = folder / "models.toml"
    path.write_text(text)
    return path


def test_the_builtin_models_are_always_there_and_the_shipped_one_is_the_default(tmp_path: Path) -> None:
    catalog = load_catalog(None, data_dir=tmp_path)
    assert catalog.names() == ["shapes", "tiny"]
    shapes, tiny = catalog.get("shapes"), catalog.get("tiny")
    assert catalog.default is shapes and catalog.get(None) is shapes
    for entry in (shapes, tiny):
        assert entry.family is ModelFamily.SD15
        assert entry.source.kind is SourceKind.BUILTIN
        assert entry.source.path == tmp_path / "models" / entry.name
        assert entry.defaults.size_for((1, 1)) == (64, 64)
    # The sizes the shipped model was trained at besides 64x64 (5:3, 4:3 and portraits).
    assert [shapes.defaults.size_for(ar) for ar in ((5, 3), (4, 3), (3, 4))] == [(80, 48), (64, 48), (48, 64)]
    assert (shapes.defaults.steps, shapes.defaults.cfg, shapes.defaults.sampler) == (20, 3.0, None)


def test_full_file_parses_with_family_defaults_and_relative_paths(model_files: Path) -> None:
    path = _write(
        model_files,
        f"""
default = "juggernaut"

[models.dreamshaper]
family = "sd15"
path = "dreamshaper"
steps = 30
clip_skip = 2
upscaler = "4x.safetensors"
upscaler_sha256 = "{PIN}"

[[models.dreamshaper.loras]]
name = "pixel"
path = "loras/pixel.safetensors"
sha256 = "{PIN.upper()}"
weight = 0.8

[models.juggernaut]
family = "SDXL"
file = "juggernaut.safetensors"
config = "sdxl-config"
sha256 = "{PIN}"

[models.turbo]
family = "sdxl-turbo"
hub = "stabilityai/sdxl-turbo"
revision = "main"
""",
    )
    catalog = load_catalog(path, data_dir=model_files / "data")
    assert catalog.names() == ["shapes", "tiny", "dreamshaper", "juggernaut", "turbo"]
    assert catalog.default.name == "juggernaut"

    dream = catalog.get("DreamShaper")
    assert dream.source.kind is SourceKind.FOLDER
    assert dream.source.path == model_files / "dreamshaper"
    assert (dream.defaults.steps, dream.defaults.clip_skip) == (30, 2)
    assert dream.defaults.cfg == FAMILY_DEFAULTS[ModelFamily.SD15].cfg
    assert dream.upscaler == model_files / "4x.safetensors"
    lora = dream.lora("PIXEL")
    assert (lora.path, lora.sha256, lora.weight) == (model_files / "loras" / "pixel.safetensors", PIN, 0.8)

    jug = catalog.get("juggernaut")
    assert jug.family is ModelFamily.SDXL
    assert jug.source.kind is SourceKind.SINGLE_FILE
    assert (jug.source.sha256, jug.source.config) == (PIN, model_files / "sdxl-config")
    assert jug.defaults.size_for((1, 1)) == (1024, 1024)

    turbo = catalog.get("turbo")
    assert (turbo.source.kind, turbo.source.location, turbo.source.revision) == (
        SourceKind.HUB,
        "stabilityai/sdxl-turbo",
        "main",
    )
    assert turbo.defaults.cfg == 0.0


def test_first_model_of_the_file_is_the_default(model_files: Path) -> None:
    path = _write(model_files, '[models.dreamshaper]\nfamily = "sd15"\npath = "dreamshaper"\n')
    assert load_catalog(path, data_dir=model_files).default.name == "dreamshaper"


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt", ".pth"])
def test_pickle_checkpoints_are_refused(model_files: Path, suffix: str) -> None:
    (model_files / f"old{suffix}").write_bytes(b"pickle")
    path = _write(
        model_files, f'[models.old]\nfamily = "sd15"\nfile = "old{suffix}"\nconfig = "sdxl-config"\n'
    )
    with pytest.raises(ModelConfigError, match=r"is a pickle format .*convert it to \.safetensors"):
        load_catalog(path, data_dir=model_files)


def test_pickle_lora_is_refused(model_files: Path) -> None:
    (model_files / "loras" / "old.bin").write_bytes(b"pickle")
    path = _write(
        model_files,
        '[models.m]\nfamily = "sd15"\npath = "dreamshaper"\n'
        '[[models.m.loras]]\nname = "old"\npath = "loras/old.bin"\n',
    )
    with pytest.raises(ModelConfigError, match=r"LoRA 'old' file .*old\.bin is a pickle format"):
        load_catalog(path, data_dir=model_files)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'family = "sd9"\npath = "dreamshaper"',
            r"unknown family 'sd9'; expected one of sd15, sdxl, sd-turbo",
        ),
        ('path = "dreamshaper"', r"'family' is required"),
        ('family = "sd15"\npath = "missing"', r"diffusers folder .*missing does not exist"),
        (
            'family = "sd15"\nfile = "missing.safetensors"\nconfig = "sdxl-config"',
            r"missing\.safetensors does not exist",
        ),
        ('family = "sd15"\nfile = "juggernaut.safetensors"', r"needs 'config'"),
        ('family = "sd15"\npath = "dreamshaper"\nhub = "a/b"', r"exactly one source.*got path, hub"),
        ('family = "sd15"\npath = "dreamshaper"\nstep = 20', r"unknown key 'step'"),
        ('family = "sd15"\npath = "dreamshaper"\nsteps = "many"', r"'steps' must be an integer, got 'many'"),
        (
            f'family = "sd15"\npath = "dreamshaper"\nsha256 = "{PIN}"',
            r"'sha256' and 'config' apply to a single 'file' source only",
        ),
        (
            'family = "sd15"\nfile = "juggernaut.safetensors"\nconfig = "sdxl-config"\nsha256 = "xyz"',
            r"64 hex digits",
        ),
    ],
)
def test_invalid_entries_say_what_is_wrong(model_files: Path, body: str, message: str) -> None:
    path = _write(model_files, f"[models.broken]\n{body}\n")
    with pytest.raises(ModelConfigError, match=message) as info:
        load_catalog(path, data_dir=model_files)
    assert "model 'broken'" in str(info.value) or "broken" in str(info.value)


def test_builtin_names_are_reserved_and_default_must_exist(model_files: Path) -> None:
    path = _write(model_files, '[models.Tiny]\nfamily = "sd15"\npath = "dreamshaper"\n')
    with pytest.raises(ModelConfigError, match="reserved for a built-in"):
        load_catalog(path, data_dir=model_files)
    path = _write(model_files, 'default = "nope"\n[models.m]\nfamily = "sd15"\npath = "dreamshaper"\n')
    with pytest.raises(ModelConfigError, match=r"default model 'nope' is not defined \(models: shapes, tiny, m\)"):
        load_catalog(path, data_dir=model_files)


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="models file not found"):
        load_catalog(tmp_path / "nope.toml", data_dir=tmp_path)
    with pytest.raises(ModelConfigError, match="not valid TOML"):
        load_catalog(_write(tmp_path, "[models"), data_dir=tmp_path)


def test_unknown_model_and_lora_list_what_exists(tmp_path: Path) -> None:
    catalog = load_catalog(None, data_dir=tmp_path)
    with pytest.raises(KeyError, match="unknown model 'sdxl'; available: shapes, tiny"):
        catalog.get("sdxl")
    with pytest.raises(KeyError, match=r"has no LoRA 'x' \(available: none\)"):
        catalog.default.lora("x")
    assert "TINY" in catalog and "Shapes" in catalog and "sdxl" not in catalog


def test_version_flags_find_the_model_an_operator_aliased(model_files: Path) -> None:
    from core import planning

    path = _write(
        model_files,
        '[models.dream]\nfamily = "sd15"\npath = "dreamshaper"\naliases = ["v6", "Niji5"]\n'
        '[models.jug]\nfamily = "sdxl"\nfile = "juggernaut.safetensors"\nconfig = "sdxl-config"\naliases = ["v7"]\n',
    )
    catalog = load_catalog(path, data_dir=model_files)

    assert catalog.get("V7").name == "jug" and catalog.get("niji5").name == "dream"
    [job] = planning.plan_prompt("a red fox --v 7 --ar 3:2", catalog)
    assert job.model.name == "jug" and job.spec.model == "jug"
    assert (job.spec.width, job.spec.height) == job.model.defaults.size_for((3, 2))
    with pytest.raises(KeyError, match="unknown model 'v5'"):
        planning.plan_prompt("a red fox --v 5", catalog)


@pytest.mark.parametrize(
    ("aliases", "message"),
    [
        ('["v7"]\n[models.b]\nfamily = "sd15"\npath = "dreamshaper"\naliases = ["V7"]', "alias 'v7' is already"),
        ('["tiny"]', "alias 'tiny' is already the name or an alias of model 'tiny'"),
        ('"v7"', "'aliases' must be a list of names"),
        ('["v 7"]', "alias 'v 7' must be letters"),
    ],
)
def test_aliases_are_names_no_other_model_has(model_files: Path, aliases: str, message: str) -> None:
    path = _write(model_files, f'[models.a]\nfamily = "sd15"\npath = "dreamshaper"\naliases = {aliases}\n')
    with pytest.raises(ModelConfigError, match=message):
        load_catalog(path, data_dir=model_files)


def test_memory_options_are_read_and_checked(model_files: Path) -> None:
    from core.models import MemoryOptions

    path = _write(
        model_files,
        '[models.a]\nfamily = "flux"\npath = "dreamshaper"\ndtype = "BF16"\noffload = "model"\nvae_tiling = true\n'
        '[models.b]\nfamily = "sd15"\npath = "dreamshaper"\n',
    )
    catalog = load_catalog(path, data_dir=model_files)
    assert catalog.get("a").memory == MemoryOptions(dtype="bf16", offload="model", vae_tiling=True)
    assert catalog.get("b").memory == MemoryOptions()
    for body, message in (
        ('dtype = "int3"', "'dtype' must be one of auto, bf16, fp16, fp32"),
        ('offload = "disk"', "'offload' must be one of none, model, sequential"),
        ('vae_slicing = "yes"', "'vae_slicing' must be true or false"),
    ):
        bad = _write(model_files, f'[models.a]\nfamily = "sd15"\npath = "dreamshaper"\n{body}\n')
        with pytest.raises(ModelConfigError, match=message):
            load_catalog(bad, data_dir=model_files)


def test_quantisation_and_denoiser_files_are_read_and_checked(model_files: Path) -> None:
    from core.models import MemoryOptions

    (model_files / "flux-Q4_K_S.gguf").write_bytes(b"GGUF")
    path = _write(
        model_files,
        '[models.a]\nfamily = "flux"\npath = "dreamshaper"\ndenoiser = "flux-Q4_K_S.gguf"\n'
        f'denoiser_sha256 = "{"A" * 64}"\nquantize = "INT8"\nquantize_text_encoders = true\n'
        '[models.b]\nfamily = "sdxl"\npath = "dreamshaper"\nquantize = "nf4"\n',
    )
    catalog = load_catalog(path, data_dir=model_files)
    a = catalog.get("a")
    assert a.denoiser == model_files / "flux-Q4_K_S.gguf" and a.denoiser_sha256 == "a" * 64
    assert a.memory == MemoryOptions(quantize="int8", quantize_text_encoders=True)
    assert catalog.get("b").memory == MemoryOptions(quantize="nf4")
    for body, message in (
        ('quantize = "int2"', "'quantize' must be one of none, int8, int4, fp8, nf4"),
        ('denoiser = "unet.ckpt"', "pickle"),
        ('denoiser = "unet.onnx"', "must be a .gguf or .safetensors file"),
        ('denoiser = "missing.gguf"', "does not exist"),
        ('denoiser = "flux-Q4_K_S.gguf"\nquantize = "int8"', "quantised by its file"),
        ('quantize_text_encoders = true', "'quantize_text_encoders' needs 'quantize'"),
        (f'denoiser_sha256 = "{"a" * 64}"', "'denoiser_sha256' without a 'denoiser' file"),
    ):
        bad = _write(model_files, f'[models.a]\nfamily = "flux"\npath = "dreamshaper"\n{body}\n')
        with pytest.raises(ModelConfigError, match=message):
            load_catalog(bad, data_dir=model_files)


def test_speed_options_are_read_and_checked(model_files: Path) -> None:
    from core.models import SpeedOptions

    path = _write(
        model_files,
        '[models.a]\nfamily = "flux"\npath = "dreamshaper"\nattention = "FLASH"\ncompile = "regional"\n'
        'channels_last = true\nbatch_jobs = 8\nbatch_window_ms = 200\n[models.b]\nfamily = "sd15"\npath = "dreamshaper"\n',
    )
    catalog = load_catalog(path, data_dir=model_files)
    assert catalog.get("a").speed == SpeedOptions(attention="flash", compile="regional", channels_last=True,
                                                  batch_jobs=8, batch_window_ms=200)
    assert catalog.get("b").speed == SpeedOptions()
    for body, message in (
        ('attention = "flash_hub"', "downloads its kernels from the hub"),
        ('attention = "../x"', "must be a diffusers attention backend name"),
        ('compile = "max"', "'compile' must be one of none, regional, full"),
        ('channels_last = 1', "'channels_last' must be true or false"),
        ("batch_jobs = 0", "'batch_jobs' must be a whole number from 1 to 16"),
        ("batch_jobs = 17", "'batch_jobs' must be a whole number from 1 to 16"),
        ("batch_jobs = true", "'batch_jobs' must be a whole number"),
        ("batch_window_ms = -1", "'batch_window_ms' must be a whole number from 0 to 2000"),
        ('batch_window_ms = "fast"', "'batch_window_ms' must be a whole number"),
    ):
        bad = _write(model_files, f'[models.a]\nfamily = "flux"\npath = "dreamshaper"\n{body}\n')
        with pytest.raises(ModelConfigError, match=message):
            load_catalog(bad, data_dir=model_files)


def test_a_family_without_negative_prompts_refuses_a_house_negative_prompt(model_files: Path) -> None:
    path = _write(model_files, '[models.a]\nfamily = "flux2-dev"\npath = "dreamshaper"\nstyle_prompt = "vivid"\n')
    assert load_catalog(path, data_dir=model_files).get("a").defaults.steps == 50
    bad = _write(model_files, '[models.a]\nfamily = "flux2-dev"\npath = "dreamshaper"\nnegative_prompt = "lowres"\n')
    with pytest.raises(ModelConfigError, match="flux2-dev models take no negative prompt"):
        load_catalog(bad, data_dir=model_files)


def test_a_house_style_is_read_and_checked(model_files: Path) -> None:
    path = _write(
        model_files,
        '[models.a]\nfamily = "sd15"\npath = "dreamshaper"\nstyle_prompt = "  masterpiece,  detailed , "\n'
        'negative_prompt = "lowres"\n[models.b]\nfamily = "sd15"\npath = "dreamshaper"\n',
    )
    catalog = load_catalog(path, data_dir=model_files)
    a, b = catalog.get("a").defaults, catalog.get("b").defaults
    assert (a.style_prompt, a.negative_prompt, a.has_house_style) == ("masterpiece, detailed", "lowres", True)
    assert not b.has_house_style
    bad = _write(model_files, f'[models.a]\nfamily = "sd15"\npath = "dreamshaper"\nstyle_prompt = "{"x" * 1001}"\n')
    with pytest.raises(ModelConfigError, match="'style_prompt' is longer than 1000 characters"):
        load_catalog(bad, data_dir=model_files)
