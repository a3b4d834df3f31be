"""Training folders decode as inference decodes: every format Pillow reads, upright, converted alike;
every file is used or reported. Plus an end to end run on real photos an installed package ships
(scikit-image's sample images), trained on and predicted on the very same files."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tltui.core import images, presets
from tltui.core.workspace import RunPaths

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("train_e2e")]


def _gradient(w: int, h: int) -> Image.Image:
    """Left half red, right half blue, a vertical ramp: orientation and channels are visible."""
    a = np.zeros((h, w, 3), dtype=np.uint8)
    a[:, : w // 2, 0] = 220
    a[:, w // 2 :, 2] = 220
    a[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    return Image.fromarray(a)


def mixed_folder(root: Path) -> dict[str, Path]:
    """Two classes, twelve images in eight formats and seven modes, one corrupt file, one text file."""
    a, b = root / "a", root / "b"
    a.mkdir(parents=True)
    b.mkdir()
    made: dict[str, Path] = {}

    def save(im: Image.Image, path: Path, **kw: object) -> None:
        im.save(path, **kw)
        made[path.name] = path

    save(_gradient(30, 20), a / "rgb.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: "rotate 90 degrees clockwise to view"
    save(_gradient(40, 20), a / "sideways.jpg", exif=exif.tobytes(), quality=95)
    save(_gradient(24, 24), a / "photo.webp", quality=90)
    sixteen = (np.linspace(0, 65535, 24 * 18, dtype=np.uint16).reshape(18, 24)).astype(np.uint16)
    save(Image.fromarray(sixteen), a / "sixteen.tif")
    save(_gradient(32, 16), a / "bitmap.bmp")
    save(_gradient(20, 20).convert("P", palette=Image.Palette.ADAPTIVE, colors=16), a / "palette.gif")
    save(_gradient(28, 21).convert("CMYK"), b / "cmyk.jpg", quality=95)
    save(_gradient(22, 22).convert("P", palette=Image.Palette.ADAPTIVE, colors=8), b / "palette.png")
    rgba = _gradient(26, 20).convert("RGBA")
    rgba.putalpha(128)
    save(rgba, b / "alpha.png")
    save(_gradient(20, 20).convert("LA"), b / "gray_alpha.png")
    save(_gradient(36, 24), b / "plain.tiff")
    save(_gradient(18, 30), b / "tall.webp", lossless=True)
    (b / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (a / "notes.txt").write_text("labels were checked by hand")
    return made


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(arr, dtype=np.uint8).tobytes()).hexdigest()


def test_every_format_predict_reads_is_trained_on_decoded_the_same_way(tmp_path: Path) -> None:
    from tltui.worker import data

    made = mixed_folder(tmp_path / "mixed")
    preset = presets.from_dict(
        {
            "name": "mixed",
            "data": {"source": f"folder:{tmp_path / 'mixed'}", "image_size": [16, 16], "validation_fraction": 0.25},
            "model": {"backbone": "tiny_cnn", "weights": "none"},
        }
    )
    ds = data.load(preset)
    report = ds.report
    assert report["files_found"] == 13  # twelve images and the corrupt one; notes.txt is not an image
    assert [s["path"] for s in report["skipped"]] == [str(tmp_path / "mixed" / "b" / "broken.jpg")]
    assert report["ignored_files"] == [str(tmp_path / "mixed" / "a" / "notes.txt")]
    assert ds.train_examples + ds.val_examples == report["files_found"] - len(report["skipped"]) - report["not_used"]
    assert ds.native_size == (16, 16)  # mixed sizes: everything at image_size, as predict does

    trained = {
        (int(label), _digest(img))
        for split in (ds.train, ds.val)
        for img, label in zip(np.asarray(split.images), split.labels, strict=True)
    }
    expected = {
        (0 if path.parent.name == "a" else 1, _digest(np.asarray(images.prepare(path, (16, 16)))))
        for path in made.values()
    }
    assert trained == expected  # the very arrays predict feeds the model, image for image

    upright = np.asarray(images.prepare(made["sideways.jpg"], (16, 16)), dtype=int)
    assert upright[:8, :, 0].mean() > 150 > upright[8:, :, 0].mean()  # EXIF applied: red on top now


SKIMAGE_CLASSES = {
    "texture": ["brick.png", "grass.png", "gravel.png", "camera.png"],
    "colour_photo": ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"],
    "other": ["hubble_deep_field.jpg", "retina.jpg", "motorcycle_left.png", "color.png"],
}


def skimage_folder(root: Path) -> Path:
    spec = importlib.util.find_spec("skimage")  # its files only: no import of scikit-image itself
    if spec is None or spec.origin is None:
        pytest.skip("scikit-image (a test dependency, for its sample photos) is not installed")
    source = Path(spec.origin).parent / "data"
    for cls, names in SKIMAGE_CLASSES.items():
        (root / cls).mkdir(parents=True)
        for name in names:
            shutil.copy(source / name, root / cls / name)
    return root


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_real_photos_train_and_predict_on_the_same_pixels(tmp_path: Path, restore_signals) -> None:
    """scikit-image's sample photos (PNG and JPEG, RGB and grayscale, 303x384 to 1134x1024):
    the worker trains on them, and ``predict`` on the same files gives what the saved model gives
    on the very arrays it trained on."""
    import keras

    from tltui.worker import data, predict, train

    folder = skimage_folder(tmp_path / "photos")
    preset = presets.from_dict(
        {
            "name": "photos",
            "data": {"source": f"folder:{folder}", "image_size": [32, 32], "batch_size": 4},
            "model": {"backbone": "tiny_cnn", "weights": "none"},
            "train": {"epochs": 2, "checkpoint_every": 0, "learning_rate": 0.01},
        }
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "preset.toml").write_text(presets.dumps(preset))
    assert train.main([str(run_dir)]) == 0, (run_dir / "worker.log").read_text()[-2000:]
    paths = RunPaths(run_dir)
    info = json.loads(paths.data_info.read_text())
    assert info["files_found"] == 12 and info["skipped"] == [] and info["not_used"] == 0
    assert info["train_examples"] + info["val_examples"] == 12

    out = tmp_path / "predictions.jsonl"
    assert predict.main([str(run_dir), str(folder), "--out", str(out), "--top-k", "3"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    preds = {Path(r["path"]).name: r for r in rows if r.get("type") == "prediction"}
    assert len(preds) == 12
    classes = json.loads(paths.classes.read_text())
    assert classes == sorted(SKIMAGE_CLASSES)

    model = keras.saving.load_model(paths.model, compile=False)
    ds = data.load(preset)
    train_files, val_files = data.split_files(data.scan_folder(folder).files, 0.2, preset.train.seed)
    for split, files in ((ds.train, train_files), (ds.val, val_files)):
        probs = np.asarray(model.predict_on_batch(np.asarray(split.images, dtype="float32")))
        assert [label for _, label in files] == split.labels.tolist()
        for p, (path, _) in zip(probs, files, strict=True):
            top = preds[Path(path).name]["top_k"]
            np.testing.assert_allclose([q for _, q in top], np.sort(p)[::-1][:3], rtol=1e-5, atol=1e-7)
            assert top[0][0] == classes[int(np.argmax(p))]
