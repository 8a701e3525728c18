"""Sizes from aspect ratios: multiples of the step, near the pixel budget, the right shape."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.sizes import size_for_aspect


@pytest.mark.parametrize(
    ("ratio", "budget", "size"),
    [
        ((1, 1), 512 * 512, (512, 512)),
        ((16, 9), 512 * 512, (704, 384)),
        ((9, 16), 512 * 512, (384, 704)),
        ((4, 3), 512 * 512, (512, 384)),
        ((2, 3), 512 * 512, (384, 576)),
        ((4, 1), 512 * 512, (1024, 256)),
        ((16, 9), 1024 * 1024, (1344, 768)),
        ((1, 1), 1024 * 1024, (1024, 1024)),
    ],
)
def test_known_sizes(ratio: tuple[int, int], budget: int, size: tuple[int, int]) -> None:
    assert size_for_aspect(*ratio, pixel_budget=budget, step=64) == size


def test_sixteen_by_nine_is_within_five_percent() -> None:
    width, height = size_for_aspect(16, 9, pixel_budget=512 * 512, step=64)
    assert width > height
    assert abs((width / height) / (16 / 9) - 1) <= 0.05


def test_exact_fit_keeps_the_budget_rather_than_exceeding_it() -> None:
    assert size_for_aspect(1, 1, pixel_budget=768 * 768, step=8) == (768, 768)


def test_small_exact_fit_does_not_waste_the_budget() -> None:
    # 7:5 fits exactly only at 448x320 (55 % of the budget); a near ratio at full size wins.
    width, height = size_for_aspect(7, 5, pixel_budget=512 * 512, step=64)
    assert width * height >= 0.75 * 512 * 512


def test_tiny_budget_still_gives_one_step_square() -> None:
    assert size_for_aspect(4, 1, pixel_budget=64 * 64, step=64) == (64, 64)


@pytest.mark.parametrize(
    ("w", "h", "budget", "step"), [(0, 1, 4096, 64), (1, 1, 4095 - 200, 64), (1, 1, 4096, 0)]
)
def test_impossible_arguments(w: int, h: int, budget: int, step: int) -> None:
    with pytest.raises(ValueError):
        size_for_aspect(w, h, pixel_budget=budget, step=step)


ratios = st.tuples(st.integers(1, 64), st.integers(1, 64)).filter(
    lambda r: r[0] <= 4 * r[1] and r[1] <= 4 * r[0]
)


@settings(max_examples=150, deadline=None)
@given(ratios, st.sampled_from([256 * 256, 512 * 512, 768 * 768, 1024 * 1024]), st.sampled_from([8, 32, 64]))
def test_size_rules(ratio: tuple[int, int], budget: int, step: int) -> None:
    w, h = ratio
    width, height = size_for_aspect(w, h, pixel_budget=budget, step=step)
    assert width % step == 0 and height % step == 0
    assert 0.75 * budget <= width * height <= 1.05 * budget
    if w > h:
        assert width >= height
    elif w < h:
        assert width <= height
        assert size_for_aspect(h, w, pixel_budget=budget, step=step) == (height, width)
    else:
        assert width == height
