"""The model catalog: which checkpoints a deployment serves, read from ``models.toml``.

Pure data (no torch): the bot lists models and computes sizes from it, the GPU worker
loads pipelines from it; :mod:`core.models_file` reads the file. Example ``models.toml`` (relative paths are relative to the
file)::

    default = "dreamshaper"

    [models.dreamshaper]
    family = "sd15"
    path = "/srv/models/dreamshaper-8"          # a local diffusers folder
    steps = 25
    cfg = 7.0
    sampler = "DPM++ 2M Karras"
    clip_skip = 2
    style_prompt = "masterpiece, detailed"         # the house style, added to every prompt ...
    negative_prompt = "lowres, watermark"         # ... and negative prompt, unless --style raw
    upscaler = "/srv/models/4x-ultrasharp.safetensors"
    captioner = "/srv/models/blip-large"          # what /describe reads pictures with
    controlnets = { canny = "/srv/cn/sd15-canny" } # --cn types it offers (core/controls.py)
    depth_estimator = "/srv/models/dpt-hybrid"    # makes --cn depth maps
    style_adapter = { path = "/srv/ip-adapter", weight_name = "ip-adapter_sd15.safetensors",
                      image_encoder = "/srv/ip-adapter/image_encoder" }  # --sref (core/references.py)
    aliases = ["v6"]                              # what --v 6 (or --niji N: "nijiN") picks

    [[models.dreamshaper.loras]]
    name = "pixel-art"
    path = "loras/pixel-art.safetensors"
    sha256 = "9f2c..."                           # optional pin, checked before loading
    weight = 0.8

    [models.flux]
    family = "flux"
    path = "/srv/models/flux1-dev"
    dtype = "bf16"                                # auto (default) | bf16 | fp16 | fp32
    offload = "model"                             # none (default) | model | sequential
    vae_tiling = true                             # also vae_slicing
    preview_vae = "/srv/models/taef1"             # a tiny autoencoder folder: decoded previews

    [models.flux-12gb]
    family = "flux"
    path = "/srv/models/flux1-dev"                # everything but the denoiser comes from here
    denoiser = "/srv/models/flux1-dev-Q4_K_S.gguf" # a GGUF (quantised) or .safetensors denoiser
    denoiser_sha256 = "c7e2..."
    quantize = "int8"                             # or: the denoiser's linear layers at load
    quantize_text_encoders = true                 # ... and the large text encoders (T5, Qwen)
    attention = "flash"                           # diffusers attention backend (native = SDPA)
    compile = "regional"                          # none | regional | full: torch.compile at load
    channels_last = true                          # UNet families: NHWC convolutions
    batch_jobs = 4                                # 4 queued jobs in one call, waiting ...
    batch_window_ms = 150                         # ... at most 150 ms after each was queued

    [models.juggernaut]
    family = "sdxl"
    file = "/srv/models/juggernaut-xl.safetensors" # one single-file checkpoint ...
    config = "/srv/models/sdxl-config"            # ... with a local diffusers config folder
    sha256 = "41ab..."

    [models.turbo]
    family = "sdxl-turbo"
    hub = "stabilityai/sdxl-turbo"                # downloads: only because it is configured
    revision = "main"

Each model has exactly one source: ``path`` (a local diffusers folder), ``file`` (a single
``.safetensors`` checkpoint; ``config`` names the local diffusers folder that describes
its layout) or ``hub`` (a Hugging Face id). Pickle formats (``.ckpt``, ``.bin``, ``.pt``,
``.pth``) are refused everywhere. Unset defaults come from the family
(:mod:`core.families`).

Built-in models (:data:`BUILTIN_MODELS`) are always in the catalog and live in
``<data_dir>/models/<name>``; the worker writes them there on first use. To add one,
append a :class:`BuiltinModel` to :data:`BUILTIN_MODELS` and register how to write it in
``gpu_worker.registry.BUILTIN_WRITERS``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.captioners import CaptionerKind, CaptionerSource
from core.controls import ControlNetEntry
from core.families import ModelDefaults, ModelFamily
from core.references import AdapterEntry


class ModelConfigError(ValueError):
    """A problem in ``models.toml``; the message names the file, the model and the key."""


class SourceKind(enum.StrEnum):
    """Where a model's weights come from."""

    FOLDER = "folder"
    """A local diffusers folder (``model_index.json`` + ``.safetensors``)."""
    SINGLE_FILE = "single_file"
    """One ``.safetensors`` checkpoint plus a local diffusers config folder."""
    HUB = "hub"
    """A Hugging Face hub id; the only source that may download."""
    BUILTIN = "builtin"
    """A model the project writes itself into the data folder on first use."""


PICKLE_SUFFIXES = frozenset({".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle"})
"""File suffixes of pickle-based formats, which can run code when loaded."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where to load a model from (exactly one kind of source)."""

    kind: SourceKind
    location: str
    """The folder or file path, the hub id, or the built-in's folder."""
    config: Path | None = None
    """For a single file: the local diffusers folder describing its layout."""
    sha256: str | None = None
    """For a single file: the expected sha256 (lower-case hex) of its bytes."""
    revision: str | None = None
    """For a hub id: the branch, tag or commit to load."""

    @property
    def path(self) -> Path:
        """The local path of a folder, single-file or built-in source."""
        if self.kind is SourceKind.HUB:
            raise ValueError(f"hub source {self.location!r} has no local path")
        return Path(self.location)


@dataclass(frozen=True, slots=True)
class LoraEntry:
    """A LoRA a model offers, referenced by name from prompts (``<lora:name:w>``)."""

    name: str
    path: Path
    sha256: str | None = None
    weight: float = 1.0
    """The weight the bot uses when a prompt names the LoRA without one."""


DTYPES = ("auto", "bf16", "fp16", "fp32")
"""Weight dtypes a model may ask for; ``auto`` is fp16 on a GPU and fp32 on a CPU."""
OFFLOADS = ("none", "model", "sequential")
"""How much of a model may wait in CPU memory between uses: ``model`` moves whole components
to the GPU when they run (a FLUX on a 16 GB card), ``sequential`` layer by layer (slowest,
least memory). Both need a GPU."""
QUANTIZE = ("none", "int8", "int4", "fp8", "nf4")
"""Weight quantisation of a model's linear layers at load: ``int8`` (torchao int8 weight-only;
runs on a CPU too), ``int4`` (torchao int4 weight-only), ``fp8`` (torchao float8 weight-only,
a GPU with FP8 units), ``nf4`` (bitsandbytes 4-bit NormalFloat). The last three need a CUDA
GPU; each needs its library installed on the worker."""


@dataclass(frozen=True, slots=True)
class MemoryOptions:
    """How a model is held in memory (``models.toml`` keys of the same names)."""

    dtype: str = "auto"
    offload: str = "none"
    vae_tiling: bool = False
    """Decode (and encode) in tiles: large upscales without running out of memory."""
    vae_slicing: bool = False
    """Decode a batch one image at a time."""
    quantize: str = "none"
    """One of :data:`QUANTIZE`: the denoiser's linear layers (except a GGUF denoiser's, which
    its file quantises) and, with :attr:`quantize_text_encoders`, the text encoders'."""
    quantize_text_encoders: bool = False
    """Quantise the large language-model text encoders (T5, Qwen, Mistral) the same way; CLIP
    encoders are small and stay as they are."""


MAX_BATCH_JOBS, MAX_BATCH_WINDOW_MS = 16, 2000  # batch_jobs and batch_window_ms at most

COMPILE_MODES = ("none", "regional", "full")
"""``torch.compile`` of the denoiser at load: ``regional`` compiles its repeated blocks (the
transformer blocks; quick to compile, nearly the full speed-up), ``full`` the whole module."""


@dataclass(frozen=True, slots=True)
class SpeedOptions:
    """How a model's denoiser runs (``models.toml`` keys of the same names)."""

    attention: str = "native"
    """A diffusers attention backend (``diffusers.models.attention_dispatch.AttentionBackendName``:
    ``native`` is PyTorch's SDPA, ``flash``, ``sage``, ``_native_cudnn``...) for transformer
    families; backends fetched from the hub are refused."""
    compile: str = "none"
    """One of :data:`COMPILE_MODES`; a compiled model renders once at load (the worker says
    ready after it), and the compiled kernels are kept in ``<data dir>/compile-cache``."""
    channels_last: bool = False
    """Channels-last memory format for the UNet and VAE (convolutions run faster in NHWC on
    recent GPUs)."""
    batch_jobs: int = 1
    """Cross-job batching (:mod:`core.batching`): at most this many queued jobs that can share
    a pipeline call render in one (1: each alone; a GPU gains, a CPU does not)."""
    batch_window_ms: int = 0
    """How long after it was queued a job may wait for companions (0: take what is queued)."""


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One servable model: its source, family, render defaults, LoRAs and upscaler."""

    name: str
    family: ModelFamily
    source: ModelSource
    defaults: ModelDefaults
    loras: tuple[LoraEntry, ...] = ()
    upscaler: Path | None = None
    """Optional super-resolution model (``.safetensors``) used for the resize step of upscales."""
    upscaler_sha256: str | None = None
    description: str = ""
    aliases: tuple[str, ...] = ()
    """Other names prompts may use for it: ``--v 7`` asks for ``v7``, ``--niji 6`` for ``niji6``."""
    memory: MemoryOptions = MemoryOptions()
    speed: SpeedOptions = SpeedOptions()
    denoiser: Path | None = None
    """A single file that replaces the source's denoiser (UNet or transformer): a ``.gguf``
    file, quantised (loaded with diffusers' GGUF support; ``pip install gguf``), or a
    ``.safetensors`` one, in the original layout or diffusers'. The rest of the pipeline
    (text encoders, VAE, scheduler) and the denoiser's config come from the source."""
    denoiser_sha256: str | None = None
    """Optional pin of :attr:`denoiser`, checked before loading."""
    preview_vae: Path | None = None
    """A tiny autoencoder (diffusers ``AutoencoderTiny`` folder, e.g. TAESD for SD and SDXL,
    TAEF1 for FLUX) that decodes progress previews; without one, previews are a linear
    projection of the latents."""
    captioner: CaptionerSource | None = None
    """What ``/describe`` reads pictures with on this model (:mod:`core.captioners`); None
    refuses ``/describe`` here."""
    controlnets: tuple[ControlNetEntry, ...] = ()
    """The ControlNets ``--cn`` can use on this model, one per type (:mod:`core.controls`)."""
    depth_estimator: Path | None = None
    """A ``transformers`` depth-estimation folder that makes ``--cn depth`` maps."""
    pose_estimator: Path | None = None
    """A ``transformers`` VitPose folder that makes ``--cn pose`` skeletons."""

    @property
    def estimators(self) -> frozenset[str]:
        """The ``--cn`` types it has an estimator for."""
        made = {"depth": self.depth_estimator, "pose": self.pose_estimator}
        return frozenset(kind for kind, folder in made.items() if folder is not None)
    style_adapter: AdapterEntry | None = None
    """The IP-Adapter ``--sref`` pictures condition renders through (:mod:`core.references`);
    without one they are image prompts."""
    character_adapter: AdapterEntry | None = None
    """The IP-Adapter of ``--cref`` (a face or character adapter)."""

    def controlnet(self, kind: str) -> ControlNetEntry:
        """The ControlNet of type ``kind``.

        Raises:
            KeyError: the model has none of that type.
        """
        for entry in self.controlnets:
            if entry.kind == kind:
                return entry
        raise KeyError(f"model {self.name!r} has no {kind!r} ControlNet")

    def lora(self, name: str) -> LoraEntry:
        """The LoRA called ``name`` (case-insensitive).

        Raises:
            KeyError: with a message listing the LoRAs the model offers.
        """
        for entry in self.loras:
            if entry.name.lower() == name.lower():
                return entry
        offered = ", ".join(e.name for e in self.loras) or "none"
        raise KeyError(f"model {self.name!r} has no LoRA {name!r} (available: {offered})")


@dataclass(frozen=True, slots=True)
class BuiltinModel:
    """A model the project ships: it needs no ``models.toml`` entry and no download."""

    name: str
    family: ModelFamily
    defaults: ModelDefaults
    description: str = ""
    captioner: bool = False
    """Its folder holds a ``captioner/`` that ``/describe`` reads its pictures with."""
    controlnets: tuple[str, ...] = ()
    """The ``--cn`` types it has a ControlNet for, in its folder's ``controlnet-<type>/``."""


BUILTIN_MODELS: list[BuiltinModel] = [
    BuiltinModel(
        name="shapes",
        family=ModelFamily.SD15,
        # Trained by the project (gpu_worker/training) at 64x64 and at the 16-pixel-step
        # sizes of 5:3, 4:3 and their portraits: 16x16 latents (VAE factor 4) through a UNet
        # with two downsamplings, hence sides in steps of 16. Its own scheduler (DPM-Solver++
        # 2M, v-prediction, trailing spacing) at 20 steps and CFG 3 scored best
        # (bench/model_quality.py; CFG 5 and above lose colour accuracy).
        # LoRAs: 2e-3 (text encoder 5e-4) draws a new shape from 12 pictures in 3,000 steps
        # (bench/lora_training.py, runs in bench/RESULTS.md); 1e-3 reached 55 %.
        defaults=ModelDefaults(pixel_budget=64 * 64, size_step=16, steps=20, cfg=3.0, sampler=None,
                               lora_learning_rate=2e-3),
        description="the project's own small model: flat shapes in named colours, sizes and places (64x64)",
        # Its captioner is a classifier trained on the same scenes (gpu_worker/captioning/shapes.py),
        # its canny ControlNet a copy of its UNet's encoder trained on them (gpu_worker/training/control.py).
        captioner=True,
        controlnets=("canny",),
    ),
    BuiltinModel(
        name="tiny",
        family=ModelFamily.SD15,
        # The tiny UNet's native size is 64x64 (32x32 latents, VAE factor 2); sides stay
        # multiples of 16 so the latent side is divisible by the UNet's downsampling.
        defaults=ModelDefaults(pixel_budget=64 * 64, size_step=16, steps=4, cfg=7.0, sampler="Euler"),
        description="random weights, offline; draws noise (the fastest model, for tests)",
        # A tiny BLIP with random weights: /describe runs the transformers path offline; two
        # random ControlNets, so that two controls at once run offline too.
        captioner=True,
        controlnets=("canny", "scribble"),
    ),
]
"""Models that are always in the catalog; the first is the default when ``models.toml`` names none.
Extend with :class:`BuiltinModel` entries."""


@dataclass(frozen=True, slots=True)
class ModelCatalog:
    """The models a deployment serves, by name (built-ins first, then ``models.toml``)."""

    entries: tuple[ModelEntry, ...]
    default_name: str
    source_file: Path | None = None
    _by_name: dict[str, ModelEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {alias.lower(): e for e in self.entries for alias in e.aliases}
        by_name.update({e.name.lower(): e for e in self.entries})
        object.__setattr__(self, "_by_name", by_name)
        if self.default_name.lower() not in self._by_name:
            raise ModelConfigError(f"default model {self.default_name!r} is not in the catalog")

    def get(self, name: str | None) -> ModelEntry:
        """The entry called ``name`` or aliased ``name`` (case-insensitive); None means the default model.

        Raises:
            KeyError: with a message listing the available models.
        """
        if name is None:
            return self.default
        found = self._by_name.get(name.lower())
        if found is None:
            raise KeyError(f"unknown model {name!r}; available: {', '.join(self.names())}")
        return found

    @property
    def default(self) -> ModelEntry:
        """The model used when a prompt names none."""
        return self._by_name[self.default_name.lower()]

    def names(self) -> list[str]:
        """Model names in catalog order."""
        return [e.name for e in self.entries]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def builtin_entries(data_dir: Path, builtins: Iterable[BuiltinModel] | None = None) -> list[ModelEntry]:
    """Catalog entries of the built-in models, living in ``data_dir/models/<name>``."""
    return [
        ModelEntry(
            name=b.name,
            family=b.family,
            source=ModelSource(SourceKind.BUILTIN, str(data_dir / "models" / b.name)),
            defaults=b.defaults,
            description=b.description,
            captioner=CaptionerSource(CaptionerKind.BUILTIN, "captioner") if b.captioner else None,
            controlnets=tuple(ControlNetEntry(kind, f"controlnet-{kind}", builtin=True) for kind in b.controlnets),
        )
        for b in (BUILTIN_MODELS if builtins is None else builtins)
    ]


def refuse_pickle(path: Path, what: str) -> None:
    """Raise :class:`ModelConfigError` if ``path`` names a pickle-based format.

    Args:
        path: the file to check (by suffix; the file need not exist).
        what: how the error message names the file (``"model 'x' file"``).
    """
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelConfigError(
            f"{what} {path} is a pickle format ({path.suffix}), which can run code when loaded; "
            "convert it to .safetensors"
        )
