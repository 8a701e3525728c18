"""Model-family adapters: one module per architecture (:mod:`gpu_worker.families.base`).

:func:`adapter` gives a catalog family's adapter; :func:`adapter_of` finds the adapter of a
pipeline in hand (by its class), which is how operations that get only a pipeline learn how
to encode its prompts and preview its latents. Adding a family: a module here with an
``ADAPTER`` (every module of this package that has one is found), beside its
:class:`core.families.Family` record.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from core.families import ModelFamily
from gpu_worker.families.base import Adapter, LatentPreview, PromptStyle

__all__ = ["ADAPTERS", "Adapter", "LatentPreview", "PromptStyle", "adapter", "adapter_of"]


def _found() -> tuple[Adapter, ...]:
    adapters = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found = getattr(module, "ADAPTER", None)
        if isinstance(found, Adapter):
            adapters.append(found)
    return tuple(adapters)


ADAPTERS: tuple[Adapter, ...] = _found()
"""Every family adapter, one per module of this package."""

_BY_FAMILY: dict[ModelFamily, Adapter] = {key: a for a in ADAPTERS for key in a.families}


def adapter(family: ModelFamily | str) -> Adapter:
    """The adapter of a catalog family.

    Raises:
        KeyError: a family without an adapter (a test keeps every family covered).
    """
    return _BY_FAMILY[ModelFamily(family)]


def adapter_of(pipe: Any) -> Adapter | None:
    """The adapter whose pipeline classes include ``pipe``'s class; None for a class none knows."""
    return next((a for a in ADAPTERS if a.runs(pipe)), None)
