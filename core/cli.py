"""``imaginarium parse "PROMPT" [--json] [--budget PIXELS] [--step N]``: show what a prompt becomes.

The prompt may also be given unquoted (``imaginarium parse a cat --ar 16:9``): every
argument that is not one of this command's own options joins the prompt. Everything after
a lone ``--`` is prompt text, for a prompt that itself contains ``--json`` or ``--step``.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from core.prompt import PromptError, format, parse_all
from core.sizes import DEFAULT_PIXEL_BUDGET, DEFAULT_SIZE_STEP, size_for_aspect
from core.spec import JobSpec

USAGE = """\
usage: imaginarium parse "PROMPT" [--json] [--budget PIXELS] [--step N]

Parse a prompt (with {a, b} permutations) into job specs and print them.

options:
  --json            print a JSON list of spec objects (each with a "prompt" key)
  --budget PIXELS   pixel count that sizes aim at (default 262144, i.e. 512x512)
  --step N          image sides are multiples of N (default 64)
  --                the rest of the arguments are prompt text
exit status: 0 on success, 2 on a bad prompt or bad options"""


MAX_BUDGET = 4096 * 4096  # larger budgets make the size search slow and no model renders them


class _UsageError(Exception):
    pass


def parse_main(argv: list[str], *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``imaginarium parse``; return the exit status (2 for a bad prompt or bad options)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        options = _read_args(argv)
    except _UsageError as exc:
        print(f"imaginarium parse: {exc}\n\n{USAGE}", file=err)
        return 2
    if options is None:
        print(USAGE, file=out)
        return 0
    text, as_json, budget, step = options
    try:
        specs = parse_all(text, pixel_budget=budget, size_step=step)
    except PromptError as exc:
        print(f"imaginarium parse: {exc}", file=err)
        return 2
    if as_json:
        print(json.dumps([spec_json(spec) for spec in specs], indent=2, ensure_ascii=False), file=out)
    else:
        print(summary(specs), file=out)
    return 0


def spec_json(spec: JobSpec) -> dict[str, Any]:
    """``spec.to_dict()`` plus ``"prompt"``: the positive prompt as one string."""
    data = spec.to_dict()
    data["prompt"] = spec.prompt
    return data


def summary(specs: list[JobSpec]) -> str:
    """A readable description of ``specs``, one block per job."""
    blocks = []
    for number, spec in enumerate(specs, start=1):
        heading = f"job {number} of {len(specs)}: " if len(specs) > 1 else ""
        blocks.append(heading + format(spec) + "\n" + _describe(spec))
    return "\n\n".join(blocks)


def _describe(spec: JobSpec) -> str:
    rows: list[tuple[str, str]] = []
    rows += [("image", url) for url in spec.image_urls]
    if len(spec.parts) == 1 and spec.parts[0].weight == 1:
        rows.append(("prompt", spec.parts[0].text))
    else:
        rows += [("prompt part", f"{part.text}  (weight {part.weight:g})") for part in spec.parts]
    if spec.negative_prompt:
        rows.append(("negative", spec.negative_prompt))
    w, h = spec.aspect_ratio
    rows.append(("size", f"{spec.width}x{spec.height} (aspect {w}:{h})"))
    rows.append(("seed", "random" if spec.seed is None else str(spec.seed)))
    rows.append(("chaos", str(spec.chaos)))
    rows.append(("stylize", str(spec.stylize)))
    optional = [
        ("steps", spec.steps),
        ("cfg", spec.cfg),
        ("sampler", spec.sampler),
        ("model", spec.model),
        ("image weight", spec.image_weight),
        ("clip skip", spec.clip_skip),
    ]
    rows += [
        (label, f"{value:g}" if isinstance(value, float) else str(value))
        for label, value in optional
        if value is not None
    ]
    rows += [("lora", f"{lora.name} (weight {lora.weight:g})") for lora in spec.loras]
    if spec.tile:
        rows.append(("tile", "yes"))
    rows.append(("quality", f"{spec.quality:g}"))
    if spec.repeat != 1:
        rows.append(("repeat", str(spec.repeat)))
    rows.append(("lane", spec.lane.value if spec.lane else "server default"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


def _read_args(argv: list[str]) -> tuple[str, bool, int, int] | None:
    """Split our own options from prompt words; None means "show help"."""
    words: list[str] = []
    as_json = False
    budget, step = DEFAULT_PIXEL_BUDGET, DEFAULT_SIZE_STEP
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, has_value, inline = arg.partition("=")
        if arg == "--":
            words += argv[i + 1 :]
            break
        if arg in {"-h", "--help"}:
            return None
        if arg == "--json":
            as_json = True
        elif name in {"--budget", "--step"}:
            if has_value:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise _UsageError(f"{name} needs a number")
            if (
                not value.isascii()
                or not value.isdigit()
                or len(value) > 9
                or not 0 < int(value) <= MAX_BUDGET
            ):
                raise _UsageError(f"{name} must be a whole number from 1 to {MAX_BUDGET}, got {value!r}")
            if name == "--budget":
                budget = int(value)
            else:
                step = int(value)
        else:
            words.append(arg)
        i += 1
    if not words:
        raise _UsageError("no prompt given")
    try:
        size_for_aspect(1, 1, pixel_budget=budget, step=step)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    return " ".join(words), as_json, budget, step
