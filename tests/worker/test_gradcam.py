"""Grad-CAM where the answer is known: a tiny classifier learns a class from a bright square in one
quadrant; the map of that class must light that quadrant. Then ``predict --cam`` end to end. Then, for
one backbone of every family, saved and loaded as ``predict`` loads it: the map explains the model's
own prediction (its logits are the model's, its class the model's top-1, its feature map that of the
backbone's real preprocessing)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tltui.core import catalog, presets

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

    from tltui.worker.compile import compile_model
    from tltui.worker.model import build_classifier

    preset = presets.from_dict(
        {
            "name": "cam",
            "data": {"source": "folder:/x", "image_size": [SIZE, SIZE]},
            "model": {"backbone": "tiny_cnn", "weights": "none"},
            "freeze": {"batchnorm": "trainable"},
            "train": {"learning_rate": 0.01},
        }
    )
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
    assert sorted(p.relative_to(cams).as_posix() for p in cams.rglob("*.png")) == sorted(
        Path(r.cam).relative_to(cams).as_posix() for r in rows
    )
    assert {Path(r.cam).relative_to(cams).as_posix() for r in rows} == {
        f"{CLASSES[y[i]]}/{i}.png.cam.png" for i in range(4)
    }
    overlay = np.asarray(Image.open(rows[0].cam))
    assert overlay.shape == (predict.CAM_MIN_SIDE, predict.CAM_MIN_SIDE, 3)  # enlarged: 16 px is too small to see
    small = np.asarray(Image.fromarray(overlay).resize((SIZE, SIZE), Image.Resampling.BOX))
    assert not np.array_equal(small, x[int(Path(rows[0].path).stem)])


def test_the_cam_server_loads_the_model_once_and_answers_each_request(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's Grad-CAM: one worker per run, a request per image (the walk: 18-24 s per image)."""
    import io

    from tltui.core.predict_records import PredictionRow, PredictStarted, Skipped, decode
    from tltui.worker import cam_server, predict

    x, _ = quadrant_images(2, seed=5)
    for i, img in enumerate(x):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    requests = "".join(
        json.dumps({"image": str(tmp_path / name), "rel": f"same/{name}", "out": str(tmp_path / "cams" / f"{n}.png")})
        + "\n"
        for n, name in enumerate(["0.png", "1.png", "bad.png"])
    )
    out = io.StringIO()
    loads: list[Path] = []
    real_load = predict.load_model
    monkeypatch.setattr(predict, "load_model", lambda path: loads.append(path) or real_load(path))
    cam_server.serve(trained, io.StringIO(requests + "garbage\n"), out)
    started, *answers = [decode(line) for line in out.getvalue().splitlines()]
    assert isinstance(started, PredictStarted) and len(loads) == 1
    assert [type(a) for a in answers] == [PredictionRow, PredictionRow, Skipped, Skipped]
    for i, row in enumerate(answers[:2]):
        assert row.cam == str(tmp_path / "cams" / f"{i}.png") and Path(row.cam).is_file()
        assert row.label in CLASSES and row.rel == f"same/{i}.png"
    assert "not a request" in answers[3].reason


def test_a_model_without_a_feature_map_says_why() -> None:
    import keras

    from tltui.worker import gradcam

    inp = keras.Input((8,))
    x = keras.layers.Dense(4, name="backbone")(inp)
    out = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    with pytest.raises(gradcam.NoFeatureMap, match="no convolutional feature map"):
        gradcam.split(keras.Model(inp, out))


def test_a_tf_hub_model_says_in_one_line_why_it_has_no_map(tmp_path: Path) -> None:
    import hub_models as hm

    from tltui.worker import gradcam, predict
    from tltui.worker.model import build_classifier

    module = hm.save_callable(tmp_path / "module")
    preset = presets.from_dict(
        {
            "name": "hub",
            "data": {"source": "folder:/x", "image_size": [16, 16]},
            "model": {"backbone": f"hub:{module}"},
        }
    )
    model, _ = build_classifier(preset, 2)
    model.save(tmp_path / "model.keras")
    loaded = predict.load_model(tmp_path / "model.keras")
    for call in (lambda: gradcam.split(loaded), lambda: gradcam.grad_cam(loaded, np.zeros((1, 16, 16, 3), "float32"))):
        with pytest.raises(gradcam.NoFeatureMap, match="TF Hub backbone .* no convolutional feature map") as e:
            call()
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- every family


def first_backbone_of_each_family() -> dict[str, str]:
    """Family -> its first backbone in the catalog (the smallest), and the test-only tiny_cnn."""
    first: dict[str, str] = {}
    for spec in [*catalog.BACKBONES.values(), *catalog.TEST_BACKBONES.values()]:
        first.setdefault(spec.family, spec.name)
    return first


FAMILY_BACKBONES = first_backbone_of_each_family()
#: scikit-image's sample photos (a test dependency; its files only, no import).
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
#: Input sides that leave at least a 2x2 feature map (most backbones downsample 32x; InceptionV3
#: needs 107), or the backbone's least (Xception: 71, a 3x3 map).
CAM_SIZE, CAM_SIZES = 64, {"inception_v3": 107}


def test_every_family_but_tf_hub_has_a_backbone_in_the_check_below() -> None:
    assert set(FAMILY_BACKBONES) == set(catalog.FAMILIES) - {catalog.HUB_FAMILY}


def photos(size: int) -> np.ndarray:
    """Real colour photos (the RGB->BGR swap matters on them), float32 pixels 0..255 at ``size``; the
    quadrant images when scikit-image is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        images = list(quadrant_images(len(PHOTOS))[0])
    else:
        images = [np.asarray(Image.open(Path(spec.origin).parent / "data" / n).convert("RGB")) for n in PHOTOS]
    resized = [np.asarray(Image.fromarray(i).resize((size, size), Image.BILINEAR)) for i in images]
    return np.stack(resized).astype("float32")


@pytest.mark.parametrize("backbone", sorted(FAMILY_BACKBONES.values()))
def test_the_map_explains_the_models_own_prediction(backbone: str, tmp_path: Path) -> None:
    """Photos through an untrained classifier (weights "none") whose BatchNorm statistics are the
    photos' own, so that its features and logits are far from zero and from ties, as a trained one's.
    It fails for ResNet and VGG when the caffe preprocessing's RGB->BGR flip is skipped."""
    import keras
    import tensorflow as tf
    from keras.applications import imagenet_utils

    from tltui.worker import gradcam, predict
    from tltui.worker.model import build_classifier, set_bn_momentum

    spec = catalog.lookup(backbone)
    assert spec is not None
    size = max(CAM_SIZES.get(backbone, CAM_SIZE), spec.min_size)
    x = photos(size)
    preset = presets.from_dict(
        {
            "name": "cam",
            "data": {"source": "folder:/x", "image_size": [size, size]},
            "model": {"backbone": backbone, "weights": "none", "dropout": 0.2},
        }
    )
    keras.utils.set_random_seed(0)
    built, bb = build_classifier(preset, 10)
    set_bn_momentum(bb, 0.0)  # one pass in training mode sets the moving statistics to the photos' own
    built(x, training=True)
    built.save(tmp_path / "model.keras")
    model = predict.load_model(tmp_path / "model.keras")  # as predict --cam and the inference screen do
    probs = np.asarray(model.predict_on_batch(x))  # what predict shows (a traced graph)
    top2 = np.sort(probs, axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0] > 1e-4).all(), probs  # no near-tie: the top-1 is not a matter of rounding

    heat, chosen = gradcam.grad_cam(model, x)
    np.testing.assert_array_equal(chosen, probs.argmax(axis=1))
    # The backbone's map of the images as keras.applications' own preprocess_input makes them: with
    # global average pooling then a Dense layer, Grad-CAM is relu(A . W[:, c]) scaled to 1 (= CAM).
    pre = x.copy() if spec.preprocess == "none" else imagenet_utils.preprocess_input(x.copy(), mode=spec.preprocess)
    fmap = np.asarray(model.get_layer("backbone")(pre, training=False))
    kernel = model.get_layer("logits").get_weights()[0]
    cam = np.maximum(np.einsum("nhwk,kn->nhw", fmap, kernel[:, chosen]), 0)
    peak = cam.reshape(len(x), -1).max(axis=1).reshape(-1, 1, 1)
    expected = np.where(peak > 0, cam / np.where(peak > 0, peak, 1), 0)
    assert heat.shape == expected.shape and heat.shape[1] * heat.shape[2] > 1
    np.testing.assert_allclose(heat, expected, rtol=0, atol=1e-3)  # flip skipped: off by 0.1 (VGG16), 1 (ResNet50)

    features, head = gradcam.split(model)
    cam_probs = tf.nn.softmax(head(features(x, training=False), training=False)).numpy()
    np.testing.assert_allclose(cam_probs, np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-7)
    # The traced graph predict runs rounds differently from an eager call of the same operations
    # (fused kernels): by up to ~3e-5 on these models. Skipping caffe's RGB->BGR flip moved VGG16's
    # probabilities by ~5e-3 and ResNet50's by ~0.7.
    np.testing.assert_allclose(cam_probs, probs, rtol=1e-5, atol=2e-4)
