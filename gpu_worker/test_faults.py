"""Faults a test worker injects on request: ``fault:KIND[=N][@ATTEMPTS]`` in a prompt.

Honoured only when :data:`TEST_FAULTS_ENV` is ``1`` in the worker's environment, so a prompt
can never trigger one in a real deployment.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

logger = logging.getLogger(__name__)

TEST_FAULTS_ENV = "IMAGINARIUM_TEST_FAULTS"
"""Set to ``1`` in a worker's environment to honour ``fault:`` markers in prompts (tests only)."""


class TestFault(RuntimeError):
    """The failure a ``fault:raise`` marker injects (only with :data:`TEST_FAULTS_ENV` set)."""

    __test__ = False  # not a pytest test class


_FAULT = re.compile(r"\bfault:(raise|oom|sleep|exit)(?:=(\d+(?:\.\d+)?))?(?:@([\d,]+))?")


def inject_test_fault(job: Any) -> None:
    """Act on a ``fault:KIND[=N][@ATTEMPTS]`` marker in the prompt, in test workers only.

    Honoured only when :data:`TEST_FAULTS_ENV` is ``1`` in the worker's environment, so a
    prompt can never trigger one in a real deployment. Kinds: ``raise`` (a
    :class:`TestFault`), ``oom`` (``torch.OutOfMemoryError``), ``sleep=N`` (N seconds, to
    reach a time limit), ``exit`` (the process dies, as on a crash). ``@1,2`` limits the
    fault to those attempt numbers.
    """
    if os.environ.get(TEST_FAULTS_ENV) != "1":
        return
    match = _FAULT.search(job.spec.prompt)
    if match is None:
        return
    kind, arg, attempts = match.groups()
    if attempts and job.attempts not in {int(a) for a in attempts.split(",") if a}:
        return
    logger.warning("job %s: injecting test fault %r on attempt %d", job.id, match.group(0), job.attempts)
    if kind == "raise":
        raise TestFault(f"injected test fault on attempt {job.attempts}")
    if kind == "oom":
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory (injected test fault)")
    if kind == "sleep":
        time.sleep(float(arg or 1))
    if kind == "exit":
        os._exit(70)


_SLOW = re.compile(r"\bfault:slow=(\d+(?:\.\d+)?)")


def slow_steps(job: Any, callback: Any) -> Any:
    """``fault:slow=N``: every denoising step of the job takes N seconds more (so that a test
    can act on a job while it renders). Returns ``callback`` unchanged without the marker."""
    match = _SLOW.search(job.spec.prompt) if os.environ.get(TEST_FAULTS_ENV) == "1" else None
    if match is None:
        return callback
    delay = float(match.group(1))

    def on_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        time.sleep(delay)
        return callback(pipe, step, timestep, tensors) if callback is not None else tensors

    setattr(on_step, "tensor_inputs", getattr(callback, "tensor_inputs", None))  # noqa: B010
    return on_step
