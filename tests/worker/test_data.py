"""The folder scan, split and image check: no TensorFlow, no training."""

from __future__ import annotations

from pathlib import Path

import pytest

from tltui.core import demo
from tltui.worker import data, decoded


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return demo.generate(tmp_path / "shapes", per_class=10, size=16, shapes=("circle", "ring", "square"))


def test_scan_folder_lists_classes_sorted_and_their_images(folder: Path) -> None:
    (folder / "circle" / "notes.txt").write_text("not an image")
    scan = data.scan_folder(folder)
    assert scan.classes == ["circle", "ring", "square"]
    assert len(scan.files) == 30
    assert {lab for _, lab in scan.files} == {0, 1, 2}
    assert all(p.endswith(".png") for p, _ in scan.files)
    assert scan.ignored == [str(folder / "circle" / "notes.txt")]  # reported, not silently dropped


def test_scan_folder_errors_name_the_folder(tmp_path: Path, folder: Path) -> None:
    with pytest.raises(data.DataError, match="does not exist"):
        data.scan_folder(tmp_path / "nope")
    (folder / "empty").mkdir()
    with pytest.raises(data.DataError, match="empty.*hold no images"):
        data.scan_folder(folder)
    lonely = tmp_path / "one"
    (lonely / "only").mkdir(parents=True)
    with pytest.raises(data.DataError, match="at least 2 class subfolders"):
        data.scan_folder(lonely)


def test_split_is_deterministic_stratified_and_disjoint(folder: Path) -> None:
    files = data.scan_folder(folder).files
    train, val = data.split_files(files, 0.2, seed=7)
    again = data.split_files(list(reversed(files)), 0.2, seed=7)
    assert (train, val) == (sorted(train), sorted(val)) or (train, val) == again
    assert again == (train, val)
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(files)
    assert [sum(1 for _, lab in val if lab == c) for c in range(3)] == [2, 2, 2]
    other = data.split_files(files, 0.2, seed=8)
    assert other[1] != val


def test_split_keeps_one_training_image_per_class(tmp_path: Path) -> None:
    files = [("a1", 0), ("a2", 0), ("b1", 1)]
    train, val = data.split_files(files, 0.9, seed=0)
    assert ("b1", 1) in train and ("a1", 0) in train or ("a2", 0) in train
    assert len(val) == 1


def test_limit_is_deterministic(folder: Path) -> None:
    files = data.scan_folder(folder).files
    assert data.limit(files, 5, seed=1) == data.limit(files, 5, seed=1)
    assert len(data.limit(files, 5, seed=1)) == 5
    assert data.limit(files, None, seed=1) == files


def test_decoding_reports_corrupt_files_by_name(folder: Path) -> None:
    bad = folder / "ring" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    good_png = (folder / "ring" / "ring_0000.png").read_bytes()
    truncated = folder / "square" / "truncated.png"
    truncated.write_bytes(good_png[: len(good_png) // 2])
    files = data.scan_folder(folder).files
    entry = decoded.get(folder.parent / "cache", files, (16, 16), native=lambda _: (16, 16), limit_bytes=1e9)
    assert sorted(p for p, _ in entry.bad) == sorted([str(bad), str(truncated)])
    assert all(why for _, why in entry.bad)
    rows = entry.meta["rows"]
    assert len(rows) == 30 and entry.images.shape == (32, 16, 16, 3)
    assert rows == sorted(rows) and [files[i][0] for i in rows] == [
        p for p, _ in files if p not in (str(bad), str(truncated))
    ]


def test_native_size_is_image_size_unless_all_images_share_a_smaller_size() -> None:
    assert data.native_size([(32, 32)] * 3, [224, 224]) == (32, 32)  # a CIFAR-like folder stays small
    assert data.native_size([(32, 32), (30, 40), (32, 48)], [224, 224]) == (224, 224)  # mixed: all sharp
    assert data.native_size([(500, 400)], [224, 224]) == (224, 224)
    assert data.native_size([(32, 300)], [224, 224]) == (224, 224)
    assert data.native_size([], [64, 48]) == (64, 48)


def test_missing_tfds_message_says_how_to_prepare_offline() -> None:
    from tltui.worker import tfds_fetch

    msg = tfds_fetch.not_prepared("cifar100", "/data/tfds")
    assert "\n" not in msg
    assert "tfds build cifar100" in msg and "/data/tfds" in msg and "data.data_dir" in msg
    assert "tltui data fetch tfds:cifar100" in msg and "data.download = true" in msg


@pytest.mark.parametrize("said", [10, 6, 14], ids=["exact", "undercounted", "overcounted"])
def test_a_tfds_split_is_read_into_one_array_whatever_its_metadata_says(said: int) -> None:
    """No list of batches plus their concatenation (two copies at the peak): one array filled as read."""
    import numpy as np
    import tensorflow as tf

    x = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(10, dtype=np.int32)))
    xs, ys = data._read_into_memory(ds, said, (2, 2, 3), None)
    np.testing.assert_array_equal(xs, x)
    assert ys.tolist() == list(range(10))


def _scan_before_the_shared_traversal(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """The training scan as it was (rglob per class folder): an ordinary folder must give the same."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[tuple[str, int]] = []
    ignored: list[str] = []
    for label, name in enumerate(classes):
        for p in sorted((root / name).rglob("*")):
            if p.name.startswith(".") or not p.is_file():
                continue
            if p.suffix.lower() in data.IMAGE_EXTS:
                files.append((str(p), label))
            else:
                ignored.append(str(p))
    return files, ignored


def test_an_ordinary_folder_keeps_its_files_order_and_split(folder: Path) -> None:
    for name in ("circle/a-b.png", "circle/a/x.png", "circle/a b/y.JPG", "ring/Z.png", "ring/sub/deep/q.webp"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes((folder / "ring" / "ring_0000.png").read_bytes())
    (folder / "square" / "sub").mkdir()
    (folder / "square" / "sub" / "readme.md").write_text("x")
    (folder / "square" / ".DS_Store").write_text("x")
    scan = data.scan_folder(folder)
    files, ignored = _scan_before_the_shared_traversal(folder)
    assert (scan.files, scan.ignored) == (files, ignored)
    for seed in (0, 7):
        assert data.split_files(scan.files, 0.2, seed) == data.split_files(files, 0.2, seed)


def test_training_reads_the_files_predict_reads(tmp_path: Path, folder: Path) -> None:
    from tltui.core import images

    png = (folder / "ring" / "ring_0000.png").read_bytes()
    for name in ("circle/.thumbnails/t.png", "ring/.ipynb_checkpoints/c.png", "square/sub/.cache/x.png"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png)
    outside = tmp_path / "more_squares"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "s.png").write_bytes(png)
    (folder / "square" / "linked").symlink_to(outside)  # a symlinked subfolder is followed
    (folder / "circle" / "ringlink").symlink_to("../ring")  # never makes ring's images circles
    scan = data.scan_folder(folder)
    trained = [(Path(p).relative_to(folder).as_posix(), scan.classes[lab]) for p, lab in scan.files]
    predicted = [(e.rel, e.top_folder) for e in images.find_images(folder)]
    assert trained == predicted
    assert ("square/linked/deep/s.png", "square") in trained
    assert not any("/." in rel or "ringlink" in rel for rel, _ in trained)
    assert len(trained) == 31


def test_a_class_folder_that_links_to_another_class_is_named(folder: Path) -> None:
    (folder / "disc").symlink_to("circle")  # one folder, two labels: refused, not trained twice
    with pytest.raises(data.DataError, match=r"class folder\(s\) disc .*disc: a symlink to a folder already read"):
        data.scan_folder(folder)
    (folder / "disc").unlink()
    (folder.parent / "nothing").mkdir()
    (folder / "disc").symlink_to(folder.parent / "nothing")
    with pytest.raises(data.DataError, match=r"class folder\(s\) disc in .* hold no images \(\.bmp.*\.webp\); add"):
        data.scan_folder(folder)


def test_the_split_digest_follows_what_each_split_holds(tmp_path: Path, folder: Path) -> None:
    """A resume compares it with its backup's: a folder edited since says its split is not the earlier one."""
    from tltui.core import memory, presets

    def digest() -> str:
        preset = presets.from_dict(
            {
                "name": "d",
                "data": {"source": f"folder:{folder}", "image_size": [16, 16], "validation_fraction": 0.2},
                "model": {"backbone": "tiny_cnn", "weights": "none"},
            }
        )
        ds = data.load(preset, budget=memory.Budget(1e9, 1), decoded_cache=tmp_path / "cache")
        return str(ds.report["split_digest"])

    first = digest()
    assert digest() == first  # the same files: the same split
    (folder / "ring" / "ring_0099.png").write_bytes((folder / "ring" / "ring_0000.png").read_bytes())
    assert digest() != first
