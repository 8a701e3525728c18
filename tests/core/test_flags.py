"""The flag table (:mod:`core.flags`) is the grammar's one home for flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import flags
from core import prompt as grammar
from core.spec import JobSpec

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_flag_table_is_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- flags -->\n", 1)[1].split("\n<!-- /flags -->", 1)[0]
    assert table == flags.markdown_table(), "run `python -m core.flags` and paste its table into README.md"


@pytest.mark.parametrize("flag", flags.FLAGS, ids=lambda f: f.name)
def test_every_flag_and_alias_parses_formats_back_and_sets_its_field(flag: flags.Flag) -> None:
    prefix = "https://cdn.example/a.png " if flag.needs_image_prompt else ""
    companion = flags.lookup(flag.needs_flag) if flag.needs_flag else None
    suffix = f" --{companion.name} {companion.example}" if companion is not None else ""
    for spelling in (flag.name, *flag.aliases):
        written = f"--{spelling} {flag.example}".strip()
        spec = grammar.parse(f"{prefix}a red fox {written}{suffix}")
        assert getattr(spec, flag.field) != getattr(JobSpec(parts=spec.parts), flag.field)
        assert any(f.write(spec) for f in flags.FLAGS if f.field == flag.field), f"--{flag.name} is not written back"
        assert grammar.parse(grammar.format(spec)) == spec
        assert flags.written(f"a fox {written}") == {flag.name}
    if companion is not None:
        with pytest.raises(grammar.PromptError, match=f"weighs --{companion.name}"):
            grammar.parse(f"{prefix}a red fox --{flag.name} {flag.example}")


@pytest.mark.parametrize(
    "flag", [f for f in flags.FLAGS if f.takes is not flags.Takes.SWITCH], ids=lambda f: f.name
)
def test_a_flag_without_its_value_says_what_it_needs(flag: flags.Flag) -> None:
    prefix = "https://cdn.example/a.png " if flag.needs_image_prompt else ""
    with pytest.raises(grammar.PromptError) as refused:
        grammar.parse(f"{prefix}a red fox --{flag.name}")
    assert refused.value.token == f"--{flag.name}" and flag.needs in refused.value.reason


def test_two_flags_setting_one_field_cannot_be_combined() -> None:
    with pytest.raises(grammar.PromptError, match="--fast and --relax cannot be combined"):
        grammar.parse("a fox --fast --relax")


def test_names_and_aliases_are_unique_and_every_field_exists() -> None:
    spellings = [s for f in flags.FLAGS for s in (f.name, *f.aliases)]
    assert len(spellings) == len(set(spellings))
    fields = set(JobSpec.__dataclass_fields__)
    assert all(f.field in fields for f in flags.FLAGS)
