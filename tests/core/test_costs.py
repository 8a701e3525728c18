from core.costs import is_large, job_cost
from core.kinds import recipe
from core.spec import JobKind, JobSpec, Lane, PromptPart


def spec(**kw: object) -> JobSpec:
    return JobSpec(parts=(PromptPart("a cat"),), **kw)  # type: ignore[arg-type]


def test_standard_render_costs_one_credit() -> None:
    assert job_cost(spec()) == 1
    assert job_cost(spec(), kind=recipe(JobKind.UPSCALE, "subtle")) == 1


def test_cost_scales_with_pixels_steps_and_quality() -> None:
    assert job_cost(spec(width=1024, height=1024)) == 4
    assert job_cost(spec(steps=60)) == 3
    assert job_cost(spec(quality=2.0)) == 2
    assert job_cost(spec(width=1024, height=1024, steps=40)) == 8
    assert is_large(job_cost(spec(width=1024, height=1024)))
    assert not is_large(job_cost(spec()))


def test_relax_is_free_and_small_jobs_never_free() -> None:
    assert job_cost(spec(width=1024, height=1024), lane=Lane.RELAX) == 0
    assert job_cost(spec(width=64, height=64, steps=1, quality=0.25)) == 1
