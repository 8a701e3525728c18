"""The rules of a /train request: names, trigger words, pictures, zips, counts, cost, captions."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from core import training
from core.training import (
    TrainingKind,
    TrainingRefused,
    check_name,
    check_pictures,
    check_trigger,
    read_picture,
    training_caption,
    training_cost,
    training_steps,
    unpack_zip,
)


def _png(size: tuple[int, int] = (96, 80), colour: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("name", ["my-cat", "Style_2", "x1"])
def test_names_that_are_accepted(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "a", "-lead", "has space", "x" * 41, "dot.name", "<@123>"])
def test_names_that_are_refused(name: str) -> None:
    with pytest.raises(TrainingRefused, match="LoRA name"):
        check_name(name)


def test_a_trigger_is_a_made_up_word() -> None:
    assert check_trigger("zorbl") == "zorbl"
    for bad in ("zo", "9lives", "two words", "x" * 33):
        with pytest.raises(TrainingRefused, match="trigger word is"):
            check_trigger(bad)
    for ordinary in ("Circle", "photo"):
        with pytest.raises(TrainingRefused, match="ordinary word"):
            check_trigger(ordinary)
    with pytest.raises(TrainingRefused, match="ordinary word"):
        check_trigger("backdrop", frozenset({"backdrop"}))  # a word of the model's prompts


def test_a_picture_must_decode_in_an_allowed_format_and_size() -> None:
    picture = read_picture(_png(), "cat.png", "  a red   cat ")
    assert (picture.width, picture.height, picture.caption) == (96, 80, "a red cat")
    assert read_picture(_png(fmt="JPEG"), "cat.jpg").width == 96
    with pytest.raises(TrainingRefused, match=r"`notes\.png` is not an image"):
        read_picture(b"hello, world", "notes.png")
    with pytest.raises(TrainingRefused, match="is not an image"):
        read_picture(_png()[:60], "cut.png")  # a truncated PNG
    with pytest.raises(TrainingRefused, match="is a GIF picture"):
        read_picture(_png(fmt="GIF"), "a.gif")
    with pytest.raises(TrainingRefused, match="is 32x80"):
        read_picture(_png((32, 80)), "thin.png")
    with pytest.raises(TrainingRefused, match="caption"):
        read_picture(_png(), "a.png", "x" * 301)


def test_a_zip_gives_its_pictures_with_their_captions() -> None:
    data = _zip({
        "set/01.png": _png(colour=(1, 2, 3)), "set/01.txt": b"a zorbl on a table", "set/02.jpg": _png(fmt="JPEG"),
        "__MACOSX/set/._01.png": b"junk", ".hidden.png": b"junk", "readme.md": b"# hi",
    })
    pictures = unpack_zip(data)
    assert [(p.filename, p.caption) for p in pictures] == [("01.png", "a zorbl on a table"), ("02.jpg", "")]
    with pytest.raises(TrainingRefused, match="not a zip"):
        unpack_zip(b"PK not really")
    # A caption no database can hold (a NUL in the text file) is refused, naming the picture.
    with pytest.raises(TrainingRefused, match=r"caption of `01.png` holds an unusable character \(U\+0000\)"):
        unpack_zip(_zip({"01.png": _png(), "01.txt": b"a zorbl\x00"}))


def test_a_zip_bomb_is_refused_before_it_is_unpacked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "MAX_UNPACKED_BYTES", 1024 * 1024)
    bomb = _zip({"zeros.png": bytes(4 * 1024 * 1024)})
    assert len(bomb) < 64 * 1024
    with pytest.raises(TrainingRefused, match="unpacks to more than 1 MB"):
        unpack_zip(bomb)


def test_counts_duplicates_steps_and_cost() -> None:
    pictures = [read_picture(_png(colour=(n, 0, 0)), f"{n}.png") for n in range(6)]
    assert len(check_pictures(pictures)) == 6
    with pytest.raises(TrainingRefused, match="at least 5 pictures; you gave 4"):
        check_pictures(pictures[:4])
    with pytest.raises(TrainingRefused, match="same as another"):
        check_pictures([*pictures[:4], pictures[0], pictures[1]])
    with pytest.raises(TrainingRefused, match="at most 40"):
        check_pictures(pictures * 7)
    assert training_steps(5) == 1250 and training_steps(12) == 3000 and training_steps(40) == 4000
    assert training_cost(5) == 4 + 13 and training_cost(40) == 4 + 40


def test_captions_carry_the_trigger_where_the_kind_puts_it() -> None:
    assert training_caption(TrainingKind.SUBJECT, "zorbl", "a red toy.") == "zorbl, a red toy"
    assert training_caption(TrainingKind.FACE, "zorbl", "") == "a photo of zorbl"
    assert training_caption(TrainingKind.STYLE, "zorbl", "a barn") == "a barn, in the style of zorbl"
    assert training_caption(TrainingKind.SUBJECT, "zorbl", "a green Zorbl on red") == "a green Zorbl on red"


def test_a_picture_too_large_is_refused_from_its_header_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFile

    out = io.BytesIO()
    Image.new("1", (8_000, 9_000)).save(out, "PNG")  # 72 megapixels in a small file
    assert len(out.getvalue()) < 200_000

    def decoded(self: object) -> None:
        raise AssertionError("the picture was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decoded)
    with pytest.raises(TrainingRefused, match="is 8000x9000; pictures need 64 to 4096 pixels a side"):
        read_picture(out.getvalue(), "huge.png")
