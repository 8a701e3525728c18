"""``--cn`` on the worker: ControlNet models, control maps, and the call that uses them.

:class:`ControlKit` keeps each model entry's loaded ControlNets (one per type) and its depth
estimator between jobs. For a job it makes one control map per control
(:mod:`gpu_worker.control.preprocess`, the depth estimator, or the picture as it is),
sized to the render, and returns a :class:`ControlCall`: the ControlNet (several at once
through the family's multi-ControlNet class), the maps and their weights.
:func:`control_pipeline` builds the family's ControlNet pipeline for a task on the loaded
pipeline's modules (``from_pipe``: no weight is copied).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from core.controls import ControlNetEntry
from core.models import ModelEntry
from core.spec import ControlRef
from gpu_worker.failures import JobRejected


@dataclass(frozen=True, slots=True)
class ControlCall:
    """What a ControlNet render needs besides the prompt."""

    model: Any
    """One ControlNet, or the family's multi-ControlNet of several."""
    images: list[Image.Image]
    """One control map per control, at the render's size."""
    scales: list[float]

    @property
    def scale(self) -> float | list[float]:
        """``controlnet_conditioning_scale`` as the pipelines take it (a number for one)."""
        return self.scales[0] if len(self.scales) == 1 else self.scales

    @property
    def image(self) -> Image.Image | list[Image.Image]:
        return self.images[0] if len(self.images) == 1 else self.images


def control_pipeline(pipe: Any, adapter: Any, task: str, controlnet: Any) -> Any:
    """The family's ControlNet pipeline for ``task`` on ``pipe``'s modules.

    Raises:
        JobRejected: the family has no ControlNet pipeline for the task.
    """
    from core.families import Task

    name = adapter.control_pipelines.get(Task(task))
    if name is None:
        raise JobRejected(f"{adapter.families[0].value} models have no ControlNet pipeline for {task}")
    import diffusers

    derived = getattr(diffusers, name).from_pipe(pipe, controlnet=controlnet)
    derived.set_progress_bar_config(disable=True)
    return derived


class ControlKit:
    """Loaded ControlNets and depth estimators, by model entry (see the module docstring)."""

    def __init__(self) -> None:
        self._nets: dict[tuple[str, str], Any] = {}
        self._estimators: dict[str, Any] = {}
        self._lock = threading.Lock()

    def call(
        self,
        entry: ModelEntry,
        pipe: Any,
        controls: Sequence[ControlRef],
        pictures: Sequence[Image.Image],
        size: tuple[int, int],
    ) -> ControlCall:
        """The ControlNet(s), maps and weights of a job's controls.

        Args:
            entry: the job's model.
            pipe: its loaded pipeline (for the device, dtype and family).
            controls: the job's ``--cn`` controls.
            pictures: the prompt's pictures: one for all controls, or one each.
            size: the render's ``(width, height)``.

        Raises:
            JobRejected: no such ControlNet, no picture, or a map that cannot be made here.
        """
        from gpu_worker.families import adapter_of

        adapter = adapter_of(pipe)
        if adapter is None or not adapter.control_pipelines:
            raise JobRejected(f"model {entry.name!r} has no ControlNet pipelines")
        if len(pictures) not in (1, len(controls)):
            raise JobRejected(f"{len(controls)} controls take one picture for all or one each")
        nets, maps = [], []
        for index, control in enumerate(controls):
            picture = pictures[index if len(pictures) > 1 else 0]
            nets.append(self._net(entry, control.kind, pipe, adapter))
            maps.append(self._map(entry, control, picture).resize(size, Image.Resampling.BILINEAR))
        from core.families import family

        most = min(family(key).max_controls for key in adapter.families)
        if len(nets) > most:
            raise JobRejected(f"{adapter.families[0].value} models take {most} --cn control(s) at a time")
        model = nets[0] if len(nets) == 1 else _multi(adapter, nets)
        return ControlCall(model, maps, [c.weight for c in controls])

    # -- ControlNets --------------------------------------------------------------------------
    def _net(self, entry: ModelEntry, kind: str, pipe: Any, adapter: Any) -> Any:
        key = (entry.name, kind)
        with self._lock:
            if key not in self._nets:
                try:
                    found = entry.controlnet(kind)
                except KeyError as exc:
                    raise JobRejected(str(exc.args[0])) from None
                folder = _folder(entry, found, pipe)
                import diffusers

                cls = getattr(diffusers, adapter.controlnet_class)
                net = cls.from_pretrained(str(folder), use_safetensors=True)
                if adapter.controlnet_shares_transformer:
                    net = cls.from_transformer(net, pipe.transformer)
                self._nets[key] = net.to(device=pipe.device, dtype=pipe.dtype).eval()
            return self._nets[key]

    # -- maps -----------------------------------------------------------------------------------
    def _map(self, entry: ModelEntry, control: ControlRef, picture: Image.Image) -> Image.Image:
        if control.as_is:
            return picture.convert("RGB")
        from gpu_worker.control.preprocess import WEIGHTLESS

        make = WEIGHTLESS.get(control.kind)
        if make is not None:
            return make(picture)
        if control.kind in ("depth", "pose"):
            return self._estimate(entry, control.kind, picture)
        raise JobRejected(
            f"there is no {control.kind} preprocessor here: give a ready map with --cn {control.kind}:asis"
        )

    def _estimate(self, entry: ModelEntry, kind: str, picture: Image.Image) -> Image.Image:
        folder = entry.depth_estimator if kind == "depth" else entry.pose_estimator
        if folder is None:
            raise JobRejected(f"model {entry.name!r} has no {kind} estimator to make a {kind} map")
        key = f"{entry.name}:{kind}"
        with self._lock:
            if key not in self._estimators:
                from gpu_worker.control.estimators import DepthEstimator, PoseEstimator

                made = DepthEstimator if kind == "depth" else PoseEstimator
                self._estimators[key] = made.load(folder)
            estimator = self._estimators[key]
        return estimator(picture)


def _multi(adapter: Any, nets: list[Any]) -> Any:
    import importlib

    module, name = adapter.multi_controlnet_class.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(nets)


def _folder(entry: ModelEntry, found: ControlNetEntry, pipe: Any) -> Path:
    """A ControlNet's folder; a built-in model's is inside its own folder (``tiny`` writes
    random ones there the first time they are needed)."""
    if not found.builtin:
        return Path(found.location)
    from gpu_worker.registry import ensure_builtin

    folder = ensure_builtin(entry) / found.location
    if (folder / "config.json").is_file():
        return folder
    if entry.name != "tiny":
        raise JobRejected(f"built-in model {entry.name!r} is missing its {found.kind} ControlNet")
    from gpu_worker.folders import write_folder_once

    return write_folder_once(
        folder, lambda out: write_tiny_controlnet(pipe, out, seed=sum(map(ord, found.kind)))
    )


def tiny_controlnet(pipe: Any, *, seed: int = 0) -> Any:
    """A ControlNet for a tiny pipeline of any family with ControlNets: a copy of its UNet's
    encoder (SD, SDXL) or of its transformer's first blocks (FLUX, SD 3.5, Qwen-Image), with
    the zero-initialised output layers given small random weights so that a control changes
    the render (diffusers' own ControlNet tests do the same)."""
    import diffusers
    import torch

    from gpu_worker.families import adapter_of

    adapter = adapter_of(pipe)
    if adapter is None or not adapter.control_pipelines:
        raise ValueError(f"{type(pipe).__name__} has no ControlNet pipelines")
    cls = getattr(diffusers, adapter.controlnet_class)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if hasattr(pipe, "unet"):
            factor = int(getattr(pipe, "vae_scale_factor", 8))
            channels = tuple(16 * 2**i for i in range(max(1, factor.bit_length())))
            net = cls.from_unet(pipe.unet, conditioning_embedding_out_channels=channels)
        elif adapter.controlnet_shares_transformer:
            config = pipe.transformer.config
            net = cls(
                control_layers_places=[0, 1],
                control_refiner_layers_places=[0],
                control_in_dim=config.in_channels,
                all_patch_size=tuple(config.all_patch_size),
                all_f_patch_size=tuple(config.all_f_patch_size),
                dim=config.dim,
                n_refiner_layers=config.n_refiner_layers,
                n_heads=config.n_heads,
                n_kv_heads=config.n_kv_heads,
                norm_eps=config.norm_eps,
                qk_norm=config.qk_norm,
            )
        else:
            config = pipe.transformer.config
            options: dict[str, Any] = {"num_layers": 1}
            if adapter.controlnet_class == "FluxControlNetModel":
                options.update(
                    num_single_layers=1,
                    attention_head_dim=config.attention_head_dim,
                    num_attention_heads=config.num_attention_heads,
                )
            elif adapter.controlnet_class == "SD3ControlNetModel":
                # The tiny SD3 transformer's one block is its last (context_pre_only): a ControlNet
                # block is not, so its weights are random rather than copied.
                options.update(num_extra_conditioning_channels=0, load_weights_from_transformer=False)
            else:
                options.update(
                    attention_head_dim=config.attention_head_dim,
                    num_attention_heads=config.num_attention_heads,
                )
            net = cls.from_transformer(pipe.transformer, **options)
        for param in net.parameters():
            if not bool(param.detach().abs().sum()):  # the zero-initialised layers
                torch.nn.init.normal_(param, std=0.05)
    if adapter.controlnet_shares_transformer:
        net = cls.from_transformer(net, pipe.transformer)
    return net


def write_tiny_controlnet(pipe: Any, out: Path, *, seed: int = 0) -> Path:
    """Write :func:`tiny_controlnet` as a diffusers folder."""
    tiny_controlnet(pipe, seed=seed).save_pretrained(str(out), safe_serialization=True)
    return out
