"""Image sizes from an aspect ratio and a pixel budget.

Diffusion models render best near the pixel count they were trained at (512x512 for
SD 1.5, 1024x1024 for SDXL) and need sides that are multiples of the latent step (64 is
safe for every pipeline we load). So an aspect ratio is turned into a size by this rule:

1. Candidates are all ``(width, height)`` pairs whose sides are positive multiples of
   ``step`` and whose area lies between 75 % and 105 % of ``pixel_budget``. The lower edge
   keeps a ratio that fits exactly only at a small size (7:5 fits 448x320, 55 % of
   512x512) from beating a slightly-off ratio that uses the budget (512x384). If no pair
   lies in that band (a budget smaller than a few steps squared), the lower edge is dropped.
2. The winner is the candidate whose ratio is closest to ``w:h``, measured as
   ``max(r / t, t / r)`` for candidate ratio ``r`` and target ``t``, so 2:1 and 1:2 are
   treated alike. Ties go to the area closest to the budget (768x768 rather than 784x784
   for a 768x768 budget at step 8), then to the larger area, then to the longer long side
   (so ``h:w`` always gets ``w:h``'s size turned on its side).

At the default budget of 512x512 and step 64: 1:1 -> 512x512, 16:9 -> 704x384 (3 % wide),
4:3 -> 512x384, 2:3 -> 384x576, 4:1 -> 1024x256. At 1024x1024: 16:9 -> 1344x768.
"""

from __future__ import annotations

from functools import lru_cache

DEFAULT_PIXEL_BUDGET = 512 * 512
DEFAULT_SIZE_STEP = 64


def size_for_aspect(
    w: int, h: int, *, pixel_budget: int = DEFAULT_PIXEL_BUDGET, step: int = DEFAULT_SIZE_STEP
) -> tuple[int, int]:
    """Return ``(width, height)`` for aspect ratio ``w:h`` under the rule in the module docstring.

    Raises:
        ValueError: if a side of the ratio, the step or the budget is not positive, or the
            budget is smaller than one ``step x step`` square (no size fits).
    """
    if w <= 0 or h <= 0:
        raise ValueError(f"aspect ratio sides must be positive, got {w}:{h}")
    if step <= 0:
        raise ValueError(f"size step must be positive, got {step}")
    if 20 * step * step > 21 * pixel_budget:
        raise ValueError(f"pixel budget {pixel_budget} is smaller than one {step}x{step} square")
    return _size_for_aspect(w, h, pixel_budget, step)


@lru_cache(maxsize=256)
def _size_for_aspect(w: int, h: int, budget: int, step: int) -> tuple[int, int]:
    best = _best_in_band(w, h, budget, step, with_lower_edge=True)
    if best is None:
        best = _best_in_band(w, h, budget, step, with_lower_edge=False)
    assert best is not None  # a step x step square always fits once the lower edge is gone
    return best


def _best_in_band(w: int, h: int, budget: int, step: int, *, with_lower_edge: bool) -> tuple[int, int] | None:
    # Integer arithmetic throughout: comparing ratios as floats made ties (and so the
    # chosen size) depend on rounding.
    best: tuple[int, int] | None = None
    best_key: tuple[int, int, int, int, int] | None = (
        None  # (err_num, err_den, -|area-budget|, area, long side)
    )
    max_side = (21 * budget) // (20 * step)
    for width in range(step, max_side + 1, step):
        # Heights in the band for this width, as multiples of step.
        h_hi = (21 * budget) // (20 * width) // step * step
        h_lo = -(-(3 * budget) // (4 * width)) if with_lower_edge else step
        h_lo = max(step, -(-h_lo // step) * step)
        if h_hi < h_lo:
            continue
        ideal = width * h // w  # the height that would match the ratio exactly, rounded down
        options = {ideal // step * step, ideal // step * step + step, h_lo, h_hi}
        for height in options:
            if not h_lo <= height <= h_hi:
                continue
            num, den = width * h, height * w  # candidate ratio / target ratio == num / den
            if num < den:
                num, den = den, num
            area = width * height
            key = (num, den, -abs(area - budget), area, width if w >= h else height)
            if best_key is None or _better(key, best_key):
                best, best_key = (width, height), key
    return best


def _better(a: tuple[int, int, int, int, int], b: tuple[int, int, int, int, int]) -> bool:
    left, right = a[0] * b[1], b[0] * a[1]  # compare the ratio errors a[0]/a[1] and b[0]/b[1]
    if left != right:
        return left < right
    return a[2:] > b[2:]


def aspect_of(width: int, height: int, *, limit: int = 4, largest_term: int = 16) -> tuple[int, int]:
    """The plain aspect ratio nearest to a picture's size, for ``--ar`` (``1536x1024`` -> ``3:2``).

    The ratio ``a:b`` with both terms at most ``largest_term`` that is closest to
    ``width / height`` (by ``max(r / t, t / r)``, the measure of :func:`size_for_aspect`),
    the smaller terms winning ties, and never beyond ``limit``:1 either way (the range
    ``--ar`` accepts).

    Raises:
        ValueError: a side is not positive.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image sides must be positive, got {width}x{height}")
    target = min(max(width / height, 1 / limit), limit)
    best = (1, 1)
    best_error = max(target, 1 / target)
    for a in range(1, largest_term + 1):
        for b in range(1, largest_term + 1):
            ratio = a / b
            if not 1 / limit <= ratio <= limit:
                continue
            error = max(ratio / target, target / ratio)
            if error < best_error - 1e-12 or (abs(error - best_error) <= 1e-12 and a + b < sum(best)):
                best, best_error = (a, b), error
    return best
