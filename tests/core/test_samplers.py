"""Sampler names: the spellings users type map to the one A1111 name the worker knows."""

from __future__ import annotations

import pytest

from core.prompt import PromptError
from core.samplers import SAMPLER_NAMES, canonical_sampler


def test_every_canonical_name_maps_to_itself_in_any_case() -> None:
    for name in SAMPLER_NAMES:
        assert canonical_sampler(name) == name
        assert canonical_sampler(name.upper()) == name
        assert canonical_sampler(f"  {name.lower()} ") == name


def test_names_are_unique_and_include_the_common_ones() -> None:
    assert len(set(SAMPLER_NAMES)) == len(SAMPLER_NAMES)
    for name in ("Euler", "Euler a", "DPM++ 2M Karras", "DPM++ SDE Karras", "DDIM", "UniPC", "LCM"):
        assert name in SAMPLER_NAMES


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("dpmpp_2m_karras", "DPM++ 2M Karras"),
        ("dpmpp_2m_sde_gpu", "DPM++ 2M SDE"),
        ("DPMPP-SDE-KARRAS", "DPM++ SDE Karras"),
        ("euler_ancestral", "Euler a"),
        ("k_euler_a", "Euler a"),
        ("k_lms", "LMS"),
        ("dpm_2_ancestral", "DPM2 a"),
        ("dpmpp_2s_ancestral", "DPM++ 2S a"),
        ("uni_pc", "UniPC"),
        ("EulerAncestralDiscreteScheduler", "Euler a"),
        ("DPMSolverMultistepScheduler", "DPM++ 2M"),
        ("PNDM", "PLMS"),
        ("plms", "PLMS"),
    ],
)
def test_other_spellings(typed: str, canonical: str) -> None:
    assert canonical_sampler(typed) == canonical


def test_close_typo_lists_suggestions() -> None:
    with pytest.raises(PromptError) as info:
        canonical_sampler("dpm++ 2m karas")
    assert info.value.token == "dpm++ 2m karas"
    assert '"DPM++ 2M Karras"' in info.value.reason


def test_unrelated_name_lists_every_sampler() -> None:
    with pytest.raises(PromptError) as info:
        canonical_sampler("zzz")
    assert "unknown sampler" in info.value.reason
    assert all(name in info.value.reason for name in SAMPLER_NAMES)
