"""Rendering operations: plain functions ``(pipe, spec, ...) -> images``.

They take a loaded pipeline and a :class:`~core.spec.JobSpec` and return PIL images; no
database, network or queue inside. :mod:`gpu_worker.ops.common` holds the shared render
helper that each of them ends in.
"""
