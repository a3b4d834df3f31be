"""Image discovery, safe decoding, labelled folders and scores (core, no TensorFlow)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import predict_corpus as pc
import pytest
from PIL import Image

from tltui.core import images
from tltui.core.images import ImageSkip, Score


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return pc.make_corpus(tmp_path / "photos")


# ---------------------------------------------------------------------------- discovery


def test_find_images_lists_every_image_file_in_sorted_relative_order(corpus: Path) -> None:
    rels = [e.rel for e in images.find_images(corpus)]
    assert rels == sorted([*pc.EXPECTED, *pc.SKIPPED], key=lambda r: r.split("/"))
    assert "notes.txt" not in rels
    assert "blue/c_upper.JPG" in rels  # extensions are case-insensitive


def test_find_images_is_stable_and_skips_hidden(tmp_path: Path) -> None:
    for name in ("b.png", "a.PNG", "c/z.jpg", "c/a.webp", "a b/x.tiff", ".hidden/x.png", ".x.png"):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    first = [e.rel for e in images.find_images(tmp_path)]
    assert first == ["a b/x.tiff", "a.PNG", "b.png", "c/a.webp", "c/z.jpg"]
    assert [e.rel for e in images.find_images(tmp_path)] == first


def test_find_images_follows_symlinks_without_looping(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    pc.solid(pc.RED).save(tmp_path / "a/img.png")
    (tmp_path / "a/loop").symlink_to(tmp_path)  # a directory cycle
    (tmp_path / "link.png").symlink_to(tmp_path / "a/img.png")
    rels = [e.rel for e in images.find_images(tmp_path)]
    assert rels == ["a/img.png", "link.png"]
    assert images.prepare(tmp_path / "link.png", (8, 8)).getpixel((0, 0)) == pc.RED


def test_find_images_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert images.find_images(tmp_path / "nope") == []


# ---------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("rel", "color"),
    [
        ("red/a_red.png", pc.RED),
        ("red/b_black.jpg", pc.BLACK),
        ("red/c_cmyk.jpeg", pc.RED),
        ("green/a_gray16.png", (255, 255, 255)),
        ("green/b_palette.png", pc.GREEN),
        ("green/c_anim.gif", pc.GREEN),  # the first frame, not the red second one
        ("blue/b_rgba.png", pc.BLUE),
        ("blue/c_upper.JPG", pc.BLUE),
        ("blue/d_red.bmp", pc.RED),
        ("blue/e_webp.webp", pc.BLUE),
        ("blue/f_tiff.tif", pc.BLUE),
    ],
)
def test_every_format_and_mode_becomes_rgb_of_the_run_size(corpus: Path, rel: str, color: tuple[int, int, int]) -> None:
    im = images.prepare(corpus / rel, (16, 12))
    assert im.mode == "RGB"
    assert im.size == (12, 16)  # Pillow sizes are (width, height); image_size is [height, width]
    px = im.getpixel((6, 8))
    assert all(abs(a - b) <= 4 for a, b in zip(px, color, strict=True)), px


@pytest.mark.parametrize(("rel", "words"), sorted(pc.SKIPPED.items()))
def test_bad_files_are_skipped_with_their_reason(corpus: Path, rel: str, words: str) -> None:
    with pytest.raises(ImageSkip, match=words):
        images.prepare(corpus / rel, (16, 16))


def test_16_bit_samples_are_scaled_not_clipped(tmp_path: Path) -> None:
    Image.new("I;16", (4, 4), 32768).save(tmp_path / "mid.png")
    assert images.open_rgb(tmp_path / "mid.png").getpixel((0, 0)) == (128, 128, 128)


def test_grayscale_and_palette_with_alpha_convert(tmp_path: Path) -> None:
    Image.new("LA", (4, 4), (200, 10)).save(tmp_path / "la.png")
    Image.new("L", (4, 4), 77).save(tmp_path / "l.jpg")
    assert images.open_rgb(tmp_path / "la.png").getpixel((0, 0)) == (200, 200, 200)
    assert all(abs(v - 77) <= 2 for v in images.open_rgb(tmp_path / "l.jpg").getpixel((0, 0)))


def test_image_larger_than_the_pixel_limit_is_skipped_before_decoding(tmp_path: Path) -> None:
    pc.solid(pc.RED, (200, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageSkip, match=r"too large to decode safely \(200x100 pixels, limit 10,000\)"):
        images.open_rgb(tmp_path / "big.png", max_pixels=10_000)
    assert images.open_rgb(tmp_path / "big.png", max_pixels=20_000).size == (200, 100)


def test_pillow_bomb_warning_is_a_skip_not_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pc.solid(pc.RED, (200, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 15_000)  # warns above this, raises above twice this
    with pytest.raises(ImageSkip, match="too large to decode safely"):
        images.open_rgb(tmp_path / "big.png")


def test_unreadable_file_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pc.solid(pc.RED).save(tmp_path / "secret.png")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "open", denied, raising=False)
    with pytest.raises(ImageSkip, match="cannot read: Permission denied"):
        images.open_rgb(tmp_path / "secret.png")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any file")
def test_unreadable_by_permission_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "secret.png"
    pc.solid(pc.RED).save(p)
    p.chmod(0)
    with pytest.raises(ImageSkip, match="cannot read"):
        images.open_rgb(p)


def test_other_formats_named_like_images_are_refused(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "really.ico", format="ICO")
    os.rename(tmp_path / "really.ico", tmp_path / "fake.png")
    with pytest.raises(ImageSkip, match="not an image"):
        images.open_rgb(tmp_path / "fake.png")


def test_low_res_shrinks_to_the_native_size_then_upscales(tmp_path: Path) -> None:
    # a 1-pixel checkerboard: any 4x4 version of it is flat grey
    board = Image.new("L", (64, 64))
    board.putdata([255 * ((x + y) % 2) for y in range(64) for x in range(64)])
    board.convert("RGB").save(tmp_path / "board.png")
    sharp = images.prepare(tmp_path / "board.png", (64, 64))
    soft = images.prepare(tmp_path / "board.png", (64, 64), native_size=(4, 4))
    assert sharp.size == soft.size == (64, 64)
    assert sharp.getextrema()[0] == (0, 255)
    lo, hi = soft.getextrema()[0]
    assert hi - lo <= 8


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), pc.RED)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: the picture is really 20 wide, 40 high
    im.save(tmp_path / "rot.jpg", exif=exif)
    assert images.open_rgb(tmp_path / "rot.jpg").size == (20, 40)


# ---------------------------------------------------------------------------- labels


def test_labelled_folder_uses_subfolders_named_after_classes(corpus: Path) -> None:
    labels = images.folder_labels(corpus, pc.CLASSES)
    assert labels == ["blue", "green", "red"]
    got = {e.rel: images.true_label(e, labels) for e in images.find_images(corpus)}
    assert {r: t for r, (t, _) in pc.EXPECTED.items()} == {r: got[r] for r in pc.EXPECTED}


def test_folder_with_a_foreign_subfolder_or_none_is_unlabelled(tmp_path: Path) -> None:
    (tmp_path / "red").mkdir()
    assert images.folder_labels(tmp_path, pc.CLASSES) == ["red"]
    (tmp_path / "holiday").mkdir()
    assert images.folder_labels(tmp_path, pc.CLASSES) is None
    flat = tmp_path / "flat"
    flat.mkdir()
    assert images.folder_labels(flat, pc.CLASSES) is None


# ---------------------------------------------------------------------------- scores


def test_score_counts_top1_top5_confusion_and_misclassified() -> None:
    s = Score(pc.CLASSES)
    s.add("a", "red", "red", 0.9, 1)
    s.add("b", "red", "d", 0.6, 5)
    s.add("c", "blue", "red", 0.99, 6)
    s.add("d", "blue", "blue", 0.8, 1)
    assert s.accuracy == 0.5
    assert s.top5_accuracy == 0.75
    assert s.confusion() == {
        "labels": ["red", "blue", "d"],
        "matrix": [[1, 0, 1], [1, 1, 0], [0, 0, 0]],
    }
    assert [m["path"] for m in s.misclassified] == ["b", "c"]
    assert s.misclassified[1] == {"path": "c", "true_label": "blue", "predicted": "red", "probability": 0.99}


def test_empty_score_has_no_accuracy() -> None:
    s = Score(pc.CLASSES)
    assert s.accuracy is None and s.top5_accuracy is None
    assert s.confusion() == {"labels": [], "matrix": []}


def test_core_modules_do_not_import_tensorflow() -> None:
    code = (
        "import sys, tltui.core.images, tltui.client.predict, tltui.commands.predict; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'textual')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_fifo_named_like_an_image_is_skipped_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    assert [e.rel for e in images.find_images(tmp_path)] == ["pipe.png"]
    with pytest.raises(ImageSkip, match="not a regular file"):
        images.open_rgb(tmp_path / "pipe.png")


def test_bomb_reason_names_the_claimed_size(corpus: Path) -> None:
    with pytest.raises(ImageSkip, match=r"too large to decode safely \(2,500,000,000 pixels, limit 89,478,485\)"):
        images.open_rgb(corpus / "blue/z_bomb.png")


def _listed_in_reverse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``os.scandir`` list every folder in reverse order (file systems list in any order)."""
    real = os.scandir

    class Reversed:
        def __init__(self, path: str) -> None:
            with real(path) as it:
                self.entries = list(it)[::-1]

        def __enter__(self) -> list[os.DirEntry[str]]:
            return self.entries

        def __exit__(self, *exc: object) -> None:
            return None

        def __iter__(self) -> Iterator[os.DirEntry[str]]:
            return iter(self.entries)

    monkeypatch.setattr(images.os, "scandir", Reversed)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_symlinked_folder_never_hides_the_real_class_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reverse: bool
) -> None:
    for name, colour in (("red", pc.RED), ("green", pc.GREEN), ("blue", pc.BLUE)):
        (tmp_path / name).mkdir()
        pc.solid(colour).save(tmp_path / name / "a.png")
    (tmp_path / "blue/redlink").symlink_to("../red")  # sorts before red/, and is listed first either way
    (tmp_path / "green/zlink").symlink_to("../blue")
    (tmp_path / "red/loop").symlink_to("..")
    if reverse:
        _listed_in_reverse(monkeypatch)
    entries = images.find_images(tmp_path)
    labels = images.folder_labels(tmp_path, ["red", "green", "blue"])
    assert [(e.rel, images.true_label(e, labels)) for e in entries] == [
        ("blue/a.png", "blue"),
        ("green/a.png", "green"),
        ("red/a.png", "red"),
    ]


def test_find_images_skips_hidden_folders_at_any_depth(tmp_path: Path) -> None:
    for name in ("cat/a.png", "cat/.thumbnails/a.png", "cat/sub/.ipynb_checkpoints/b.png", "cat/sub/c.png"):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    assert [e.rel for e in images.find_images(tmp_path)] == ["cat/a.png", "cat/sub/c.png"]


def test_label_mismatch_names_the_subfolders_that_are_not_classes(tmp_path: Path) -> None:
    classes = ["red", "green", "blue"]
    for name in ("red", "green"):
        (tmp_path / name).mkdir()
    assert images.label_mismatch(tmp_path, classes) is None  # labelled
    (tmp_path / "Blue").mkdir()
    assert images.folder_labels(tmp_path, classes) is None
    assert images.label_mismatch(tmp_path, classes) == (
        "subfolder(s) Blue is not a class of the run (Blue: did you mean blue?): "
        "no accuracy or confusion matrix until every subfolder is named after a class"
    )
    for i in range(6):
        (tmp_path / f"x{i}").mkdir()
    note = images.label_mismatch(tmp_path, classes)
    assert note is not None and note.startswith("subfolder(s) Blue, x0, x1, x2, x3 and 2 more are not classes")
    other = tmp_path / "other"
    (other / "cats").mkdir(parents=True)
    assert images.label_mismatch(other, classes) is None  # no subfolder is a class: simply unlabelled
