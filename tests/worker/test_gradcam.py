"""Grad-CAM where the answer is known: a tiny classifier learns a class from a bright square in one
quadrant; the map of that class must light that quadrant. Then ``predict --cam`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("gradcam")]

SIZE = 32
CLASSES = ["bottom_right", "top_left"]


def quadrant_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise, plus a 10x10 square somewhere in one quadrant: white in the top-left (class 1) or
    blue in the bottom-right (class 0). (Colour tells the classes apart after the global pooling;
    the quadrant is where Grad-CAM must look.)"""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(n, SIZE, SIZE, 3)).astype(np.uint8)
    y = np.arange(n) % 2
    for i in range(n):
        oy, ox = rng.integers(0, 6, size=2)
        base = 0 if y[i] == 1 else SIZE // 2
        x[i, base + oy : base + oy + 10, base + ox : base + ox + 10] = (230, 230, 230) if y[i] == 1 else (0, 0, 230)
    return x, y.astype(np.int32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed run's folder: model.keras (tiny_cnn backbone, the worker's own classifier), classes."""
    import keras

    from tltui.core import presets
    from tltui.worker.model import build_classifier
    from tltui.worker.train import compile_model

    preset = presets.from_dict({
        "name": "cam", "data": {"source": "folder:/x", "image_size": [SIZE, SIZE]},
        "model": {"backbone": "tiny_cnn", "weights": "none"}, "freeze": {"batchnorm": "trainable"},
        "train": {"learning_rate": 0.01},
    })
    keras.utils.set_random_seed(1)
    model, _ = build_classifier(preset, 2)
    compile_model(model, preset, 2, None, lambda *a: None)
    x, y = quadrant_images(128)
    model.fit(x.astype("float32"), y, epochs=25, batch_size=16, verbose=0)
    xt, yt = quadrant_images(32, seed=9)
    assert (model.predict(xt.astype("float32"), verbose=0).argmax(1) == yt).mean() >= 0.95
    run = tmp_path_factory.mktemp("run")
    model.save(run / "model.keras")
    (run / "classes.json").write_text(json.dumps(CLASSES))
    (run / "data.json").write_text(json.dumps({"image_size": [SIZE, SIZE], "native_size": [SIZE, SIZE]}))
    return run


def test_the_map_of_a_class_lights_the_quadrant_its_signal_is_in(trained: Path) -> None:
    import keras

    from tltui.worker import gradcam

    model = keras.saving.load_model(trained / "model.keras", compile=False)
    x, y = quadrant_images(16, seed=5)
    heat, chosen = gradcam.grad_cam(model, x.astype("float32"))
    np.testing.assert_array_equal(chosen, y)  # each map explains the predicted (= true) class
    for h, label in zip(heat, y, strict=True):
        assert h.max() == pytest.approx(1.0)
        mass = gradcam.quadrant_mass(h)
        hot = 0 if label == 1 else 3  # top-left, else bottom-right
        assert mass.argmax() == hot, (label, mass)
        assert mass[hot] > 0.5
    # asked for the other class, the map puts less of its heat on the square
    other, _ = gradcam.grad_cam(model, x.astype("float32"), classes=1 - y)
    for h, o, label in zip(heat, other, y, strict=True):
        hot = 0 if label == 1 else 3
        assert gradcam.quadrant_mass(o)[hot] < gradcam.quadrant_mass(h)[hot]


def test_predict_cam_writes_one_overlay_per_image(trained: Path, tmp_path: Path) -> None:
    from tltui.core.predict_records import decode
    from tltui.worker import predict

    folder = tmp_path / "photos"
    x, y = quadrant_images(4, seed=3)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        (folder / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / CLASSES[label] / f"{i}.png")
    out, cams = tmp_path / "out.jsonl", tmp_path / "cams"
    assert predict.main([str(trained), str(folder), "--out", str(out), "--cam", str(cams)]) == 0
    rows = [r for r in map(decode, out.read_text().splitlines()) if type(r).__name__ == "PredictionRow"]
    assert len(rows) == 4 and all(r.cam for r in rows)
    assert sorted(p.name for p in cams.iterdir()) == sorted(Path(r.cam).name for r in rows)
    assert {Path(r.cam).name for r in rows} == {f"{CLASSES[y[i]]}__{i}.png.cam.png" for i in range(4)}
    overlay = np.asarray(Image.open(rows[0].cam))
    assert overlay.shape == (SIZE, SIZE, 3) and not np.array_equal(overlay, x[int(Path(rows[0].path).stem)])


def test_a_model_without_a_feature_map_says_why() -> None:
    import keras

    from tltui.worker import gradcam

    inp = keras.Input((8,))
    x = keras.layers.Dense(4, name="backbone")(inp)
    out = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    with pytest.raises(gradcam.NoFeatureMap, match="no convolutional feature map"):
        gradcam.split(keras.Model(inp, out))
