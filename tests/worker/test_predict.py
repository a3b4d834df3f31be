"""The predict worker's pure parts: run files, top-k order, lazy batches (no TensorFlow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import predict_corpus as pc
import pytest

from tltui.core import images
from tltui.core.images import ImageEntry
from tltui.core.workspace import RunPaths
from tltui.worker import predict


def _run_dir(tmp_path: Path, data: dict | None, preset: str = pc.PRESET.format(h=48, w=40)) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    paths = RunPaths(d)
    paths.model.write_bytes(b"x")
    paths.classes.write_text(json.dumps(pc.CLASSES))
    paths.preset.write_text(preset)
    if data is not None:
        paths.data_info.write_text(json.dumps(data))
    return d


def test_read_run_takes_sizes_from_data_json(tmp_path: Path) -> None:
    info = predict.read_run(_run_dir(tmp_path, {"image_size": [64, 32], "native_size": [8, 4]}))
    assert info == {"classes": pc.CLASSES, "image_size": [64, 32], "native_size": [8, 4]}
    assert predict.input_size(info, low_res=False) == [64, 32]
    assert predict.input_size(info, low_res=True) == [8, 4]


@pytest.mark.parametrize(
    ("native", "size", "expected"),
    [
        ([32, 32], [224, 224], True),  # CIFAR upscaled inside the model: go through 32x32 as training did
        ([32, 48], [224, 224], True),
        ([224, 224], [224, 224], False),  # photos kept at the input size: nothing to shrink
        (None, [224, 224], False),  # a run from before data.json recorded it
        ([256, 256], [224, 224], False),  # larger than the input: the model shrinks it anyway
        ([32, 256], [224, 224], False),
    ],
)
def test_the_default_resolution_follows_training(native: list[int] | None, size: list[int], expected: bool) -> None:
    assert predict.low_res_by_default(native, size) is expected
    info = {"native_size": native, "image_size": size}
    assert predict.use_low_res(info, None) is expected
    assert predict.use_low_res(info, True) is True and predict.use_low_res(info, False) is False


def test_low_res_and_full_res_flags() -> None:
    base = ["run", "folder", "--out", "x"]
    assert predict.parse_args(base).low_res is None
    assert predict.parse_args([*base, "--low-res"]).low_res is True
    assert predict.parse_args([*base, "--full-res"]).low_res is False
    with pytest.raises(SystemExit):
        predict.parse_args([*base, "--low-res", "--full-res"])


def test_read_run_falls_back_to_the_preset_image_size(tmp_path: Path) -> None:
    info = predict.read_run(_run_dir(tmp_path, None))
    assert info["image_size"] == [48, 40] and info["native_size"] is None


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("model", "no model"),
        ("classes", "cannot read the class names"),
        ("classes_type", "expected a JSON list of class names"),
        ("size", r"image_size must be \[height, width\]"),
    ],
)
def test_read_run_errors_name_the_file(tmp_path: Path, breakage: str, message: str) -> None:
    d = _run_dir(tmp_path, {"image_size": [16, 16]})
    paths = RunPaths(d)
    if breakage == "model":
        paths.model.unlink()
    elif breakage == "classes":
        paths.classes.write_text("[")
    elif breakage == "classes_type":
        paths.classes.write_text('{"a": 1}')
    else:
        paths.data_info.write_text('{"image_size": [16]}')
    with pytest.raises(predict.JobError, match=message) as e:
        predict.read_run(d)
    assert str(d) in str(e.value)


def test_top_k_is_ordered_by_probability_not_class_index() -> None:
    probs = np.array([0.05, 0.30, 0.10, 0.30, 0.25, 0.0])
    row = predict.prediction(ImageEntry(Path("/p/red/x.png"), "red/x.png"), probs, pc.CLASSES, 5, ["red"])
    assert row.top_k == [("green", 0.30), ("d", 0.30), ("e", 0.25), ("blue", 0.10), ("red", 0.05)]
    assert (row.true_label, row.true_rank) == ("red", 5)
    loose = predict.prediction(ImageEntry(Path("/p/x.png"), "x.png"), probs, pc.CLASSES, 2, ["red"])
    assert loose.top_k == [("green", 0.30), ("d", 0.30)] and loose.true_rank is None


def test_batches_decode_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        pc.solid(pc.RED, (10, 10)).save(tmp_path / f"{i}.png")
    (tmp_path / "5.png").write_bytes(b"")
    entries = images.find_images(tmp_path)
    calls: list[str] = []
    real = images.prepare

    def counting(path, size, **kw):  # type: ignore[no-untyped-def]
        calls.append(Path(path).name)
        return real(path, size, **kw)

    monkeypatch.setattr(images, "prepare", counting)
    gen = predict._batches(entries, 2, [6, 4], images.DEFAULT_MAX_PIXELS)
    batch, skipped = next(gen)
    assert len(calls) == 2  # nothing beyond the first batch was decoded yet
    assert [e.rel for e, _ in batch] == ["0.png", "1.png"] and skipped == []
    assert batch[0][1].shape == (6, 4, 3) and batch[0][1].dtype == np.uint8
    rest = list(gen)
    assert [len(b) for b, _ in rest] == [2, 1]
    assert [(e.rel, why) for _, s in rest for e, why in s] == [("5.png", "empty file")]


def test_worker_module_does_not_import_tensorflow_until_the_model_loads() -> None:
    import subprocess

    code = (
        "import sys, tltui.worker.predict; sys.exit(1 if 'tensorflow' in sys.modules or 'keras' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_missing_folder_is_an_error_line(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    rc = predict.main([str(_run_dir(tmp_path, None)), str(tmp_path / "nope"), "--out", str(out)])
    assert rc == 2
    assert [json.loads(ln) for ln in out.read_text().splitlines()] == [
        {"type": "error", "message": f"{tmp_path / 'nope'}: no such folder"}
    ]


def test_empty_folder_reports_zero_without_loading_the_model(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    (tmp_path / "empty").mkdir()
    rc = predict.main([str(_run_dir(tmp_path, None)), str(tmp_path / "empty"), "--out", str(out)])
    assert rc == 0
    kinds = [json.loads(ln)["type"] for ln in out.read_text().splitlines()]
    assert kinds == ["start", "progress"]


def test_low_res_without_native_size_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    (tmp_path / "f").mkdir()
    rc = predict.main([str(_run_dir(tmp_path, None)), str(tmp_path / "f"), "--out", str(out), "--low-res"])
    assert rc == 2
    assert "no native_size" in json.loads(out.read_text())["message"]


def test_worker_stops_when_the_client_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    (tmp_path / "f").mkdir()
    pc.solid(pc.RED).save(tmp_path / "f/a.png")

    def never(path: Path) -> None:
        raise AssertionError("loaded the model for a client that is gone")

    monkeypatch.setattr(predict, "load_model", never)
    r, w = os.pipe()
    os.close(r)
    assert predict.main([str(_run_dir(tmp_path, None)), str(tmp_path / "f"), "--out-fd", str(w)]) == 0


def test_prefetch_keeps_order_and_reraises() -> None:
    assert list(predict.prefetch(iter(range(50)), depth=3)) == list(range(50))

    def boom():  # type: ignore[no-untyped-def]
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for x in predict.prefetch(boom()):
            got.append(x)
    assert got == [1]


def test_prefetch_stops_its_thread_when_abandoned() -> None:
    import threading

    produced = []

    def endless():  # type: ignore[no-untyped-def]
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    gen = predict.prefetch(endless(), depth=1)
    assert next(gen) == 0
    gen.close()
    for t in threading.enumerate():
        if t.name == "predict-decode":
            t.join(5)
            assert not t.is_alive()
    assert len(produced) < 10
