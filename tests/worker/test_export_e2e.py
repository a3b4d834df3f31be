"""``tltui export`` end to end, in process: a small run trained on real photos (scikit-image's) is exported to
every format and quantization; each artifact is loaded back here with its own runtime (no tltui code) and
compared with plain Keras on the run's validation images; the figures the export stored are what this test
measures; int8 is calibrated on the run's own training images; a converter that cannot handle a backbone
and a drop over the threshold end as the issue says; ``tltui predict`` runs an export as it runs the run."""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.worker.test_kept_e2e import photo_crops
from tests.worker.test_train_e2e import run_in_process
from tltui.core import export_records, presets
from tltui.core.export_records import ExportResult
from tltui.core.workspace import Workspace

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("export")]

VARIANTS = [
    ("savedmodel", None),
    ("litert", None),
    ("litert", "float16"),
    ("litert", "dynamic"),
    ("litert", "int8"),
    ("onnx", None),
    ("onnx", "dynamic"),
    ("onnx", "int8"),
]
#: the largest probability difference from Keras a float artifact may show (float32 sums in another
#: order; float16 weights)
FLOAT_TOLERANCE = {None: 1e-4, "float16": 1e-2}
PER_CLASS = 20  # 3 classes: 45 training, 15 validation images


def photo_preset(source: str) -> presets.Preset:
    """tiny_cnn on 24x24 photo crops: fed at their native 24x24, upscaled to 32x32 inside the model."""
    raw = {
        "name": "photos",
        "data": {
            "source": source,
            "image_size": [32, 32],
            "batch_size": 8,
            "augment": False,
            "validation_fraction": 0.25,
        },
        "model": {"backbone": "tiny_cnn", "weights": "none", "bn_momentum": 0.5},
        "freeze": {"batchnorm": "trainable"},
        "train": {"epochs": 5, "checkpoint_every": 0, "optimizer": "adam", "learning_rate": 0.03},
    }
    return presets.from_dict(raw)


@pytest.fixture(scope="module")
def keep_signals() -> Iterator[None]:
    """The workers install SIGINT/SIGTERM handlers when they run in this process; put them back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def train_run(root: Path, preset: presets.Preset) -> Path:
    ws = Workspace(root / "ws")
    rec = ws.create_runs([(preset.name, presets.dumps(preset), {})], preset_name=preset.name, queued=False)[0]
    run = ws.run_paths(rec.id).dir
    rc, events = run_in_process(run, preset)
    assert rc == 0, events[-1]
    ws.update(rec.id, status="completed")
    ws.close()
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, keep_signals: None) -> dict[str, Any]:
    """A completed run on photos, its validation and training images and plain Keras's probabilities."""
    import keras

    from tltui.worker import data

    root = tmp_path_factory.mktemp("export")
    photos = photo_crops(root / "photos", per_class=PER_CLASS, size=24)
    preset = photo_preset(f"folder:{photos}")
    run = train_run(root, preset)
    keras.utils.set_random_seed(preset.train.seed)
    ds = data.load(preset)  # the same files, split with the same seed
    val, labels = np.asarray(ds.val.images), np.asarray(ds.val.labels)
    model = keras.saving.load_model(run / "model.keras", compile=False)
    probs = model.predict(val.astype("float32"), verbose=0)
    assert (probs.argmax(1) == labels).mean() >= 0.8  # a model that learned: its top-1 means something
    return {"run": run, "val": val, "labels": labels, "probs": probs, "train": np.asarray(ds.train.images)}


def export(run: Path, *args: str) -> tuple[int, list[Any]]:
    """``python -m tltui.worker export`` in this process; its exit code and records."""
    from tltui.worker import export as job

    records = run.parent / f"records-{hashlib.sha1(repr(args).encode()).hexdigest()[:8]}.jsonl"
    rc = job.main([str(run), *args, "--records", str(records)])
    return rc, [export_records.decode(line) for line in records.read_text().splitlines()]


def result_of(records: list[Any]) -> ExportResult:
    (result,) = [r for r in records if isinstance(r, ExportResult)]
    return result


def run_artifact(fmt: str, path: Path, images: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The artifact's probabilities through its own runtime, called as its signature documents, and
    that signature as the runtime reports it."""
    if fmt == "savedmodel":
        import tensorflow as tf

        fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        spec = fn.structured_input_signature[1]["image"]
        sig = {"dtype": spec.dtype.name, "shape": spec.shape.as_list(), "outputs": list(fn.structured_outputs)}
        return fn(image=tf.constant(images))["probabilities"].numpy(), sig
    if fmt == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        detail = interpreter.get_input_details()[0]
        sig = {
            "dtype": np.dtype(detail["dtype"]).name,
            "shape": [None if d < 0 else int(d) for d in detail["shape_signature"]],
            "outputs": interpreter.get_signature_list()["serving_default"]["outputs"],
        }
        return interpreter.get_signature_runner("serving_default")(image=images)["probabilities"], sig
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    sig = {
        "dtype": inp.type,
        "shape": [d if isinstance(d, int) else None for d in inp.shape],
        "outputs": [o.name for o in session.get_outputs()],
        "input": inp.name,
    }
    return session.run(["probabilities"], {"image": images})[0], sig


@pytest.mark.parametrize(("fmt", "quantize"), VARIANTS, ids=[f"{f}-{q}" if q else f for f, q in VARIANTS])
def test_every_format_is_verified_against_keras_on_the_validation_images(
    trained: dict[str, Any], fmt: str, quantize: str | None, keep_signals: None
) -> None:
    run, val, labels, keras_probs = trained["run"], trained["val"], trained["labels"], trained["probs"]
    rc, records = export(run, "--format", fmt, *(["--quantize", quantize] if quantize else []))
    result = result_of(records)
    out = Path(result.out)
    variant = f"{fmt}-{quantize}" if quantize else fmt
    assert rc == 0 and result.passed, records
    assert out == run / "exports" / variant
    artifact = {"savedmodel": "saved_model", "litert": "model.tflite", "onnx": "model.onnx"}[fmt]
    names = {p.name for p in out.iterdir()}
    assert names == {artifact, "classes.json", "labels.txt", "export.json", "verification.json"} | {
        "MODEL_CARD.md",
        "model_card.json",
    }
    classes = json.loads((out / "classes.json").read_text())
    assert classes == ["astronaut", "chelsea", "coffee"]
    assert (out / "labels.txt").read_text().splitlines() == classes
    assert not list(out.parent.glob(".*"))  # no temporary folder left beside it

    # the documented signature, as the runtime itself reports it: uint8 [N, 24, 24, 3] at the native size
    probs, sig = run_artifact(fmt, out / artifact, val)
    assert sig["shape"] == [None, 24, 24, 3]
    assert sig["dtype"] in ("uint8", "tensor(uint8)")
    assert sig["outputs"] == ["probabilities"] and sig.get("input", "image") == "image"
    assert probs.shape == keras_probs.shape and probs.dtype == np.float32

    # what the export stored is what this test measures with the runtime and plain Keras
    (check,) = result.checks
    assert check.split == "validation" and check.images == len(labels) == 15
    assert check.keras_top1 == pytest.approx((keras_probs.argmax(1) == labels).mean())
    assert check.export_top1 == pytest.approx((probs.argmax(1) == labels).mean())
    assert check.agreement == pytest.approx((probs.argmax(1) == keras_probs.argmax(1)).mean())
    assert check.max_abs_diff == pytest.approx(float(np.abs(probs - keras_probs).max()), abs=1e-6)
    stored = json.loads((out / "verification.json").read_text())
    assert stored["passed"] is True and stored["checks"][0]["export_top1"] == check.export_top1
    if quantize in FLOAT_TOLERANCE:  # float formats: the Keras model's top-1 on every validation image
        assert (probs.argmax(1) == keras_probs.argmax(1)).all()
        assert check.max_abs_diff <= FLOAT_TOLERANCE[quantize]
    else:  # integer quantization: measured, within the threshold
        assert check.drop <= 1.0

    manifest = json.loads((out / "export.json").read_text())
    assert manifest["signature"]["inputs"]["image"] == {
        "dtype": "uint8",
        "shape": [None, 24, 24, 3],
        "layout": "NHWC, RGB, 0..255",
    }
    assert (manifest["format"], manifest["quantize"], manifest["input_size"], manifest["image_size"]) == (
        fmt,
        quantize,
        [24, 24],
        [32, 32],
    )
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith(f"# {run.name} photos: tiny_cnn as {variant}\n")
    assert f"tltui export {run.name} --format {fmt}" in card and "| validation | 15 |" in card
    doc = json.loads((out / "model_card.json").read_text())
    assert doc["data"]["train_examples"] == 45 and doc["data"]["classes"] == classes
    assert doc["training"]["phases"][0]["batchnorm"] == "trainable" and doc["training"]["kept"]["final"]
    assert doc["export"]["size_bytes"] == result.size_bytes > 0


def test_int8_is_calibrated_on_the_runs_own_training_images(
    trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch, keep_signals: None
) -> None:
    """The representative dataset is the run's training images (all 45 here: fewer than 300), drawn with
    its seed: the same ones every time, never random data."""
    from tltui.worker import export_formats

    seen: list[list[bytes]] = []
    real = export_formats.write

    def spy(fmt: str, quantize: str | None, model: Any, size: Any, folder: Path, calibration: Any = None) -> Path:
        seen.append([image.tobytes() for image in calibration()])
        return real(fmt, quantize, model, size, folder, calibration)

    monkeypatch.setattr(export_formats, "write", spy)
    for _ in range(2):
        rc, records = export(
            trained["run"], "--format", "onnx", "--quantize", "int8", "--out", str(trained["run"] / "x")
        )
        assert rc == 0
    assert result_of(records).calibration == {"split": "train", "images": 45, "seed": 42}
    train = {image.tobytes() for image in trained["train"]}
    assert len(seen[0]) == 45 and set(seen[0]) == train
    assert seen[0] == seen[1]  # drawn with the seed: the same order too


def test_a_drop_over_the_threshold_exits_1_and_keeps_the_export_marked(
    trained: dict[str, Any], keep_signals: None
) -> None:
    run = trained["run"]
    out = run / "strict"
    rc, records = export(run, "--format", "litert", "--max-drop=-1", "--out", str(out))
    result = result_of(records)
    assert rc == 1 and not result.passed and result.max_drop == -1
    assert (out / "model.tflite").is_file()
    assert json.loads((out / "verification.json").read_text())["passed"] is False
    assert json.loads((out / "export.json").read_text())["passed"] is False
    first = (out / "MODEL_CARD.md").read_text().splitlines()[0]
    assert first.startswith("**VERIFICATION FAILED: top-1 dropped 0.00 points on validation")
    assert (out / "VERIFICATION_FAILED").read_text().startswith("VERIFICATION FAILED")
    # exported again within the threshold, in place: the mark goes
    rc, _ = export(run, "--format", "litert", "--out", str(out))
    assert rc == 0 and not (out / "VERIFICATION_FAILED").exists()


def test_predict_runs_an_export_as_it_runs_the_run(trained: dict[str, Any], keep_signals: None) -> None:
    """``tltui predict EXPORT_DIR``: the worker reads the folder, feeds the artifact the run's native size
    and gives the run's own predictions (a float export), through the artifact's runtime."""
    from tltui.core.predict_records import PredictionRow, PredictStarted, decode
    from tltui.worker import predict

    run = trained["run"]
    export(run, "--format", "onnx")
    folder = Path(json.loads((run / "data.json").read_text())["source"].removeprefix("folder:"))

    def rows(target: Path, *extra: str) -> tuple[PredictStarted, dict[str, PredictionRow]]:
        out = run.parent / f"predict-{target.name}.jsonl"
        assert predict.main([str(target), str(folder), "--out", str(out), *extra]) == 0
        recs = [decode(line) for line in out.read_text().splitlines()]
        (start,) = [r for r in recs if isinstance(r, PredictStarted)]
        return start, {r.path: r for r in recs if isinstance(r, PredictionRow)}

    start_run, of_run = rows(run)
    start_export, of_export = rows(run / "exports" / "onnx")
    assert start_export.low_res and start_export.native_size == [24, 24] == start_run.native_size
    assert len(of_export) == 3 * PER_CLASS and of_export.keys() == of_run.keys()
    for path, row in of_export.items():
        assert row.label == of_run[path].label
        assert row.probability == pytest.approx(of_run[path].probability, abs=1e-4)
    out = run.parent / "cam.jsonl"
    assert predict.main([str(run / "exports" / "onnx"), str(folder), "--out", str(out), "--cam", str(run / "c")]) == 2
    assert "Grad-CAM needs the run's Keras model" in out.read_text()


# ---------------------------------------------------------------------------- a converter that cannot


def odd_module(path: Path) -> Path:
    """A TF Hub-style SavedModel whose features go through Digamma: no LiteRT kernel, no ONNX conversion."""
    import tensorflow as tf

    from tests import hub_models as hm

    class Odd(hm._Callable):
        def features(self, images: tf.Tensor) -> tf.Tensor:
            pooled = tf.reduce_mean(images, axis=[1, 2])
            return tf.math.digamma(1.5 + tf.sigmoid(tf.matmul(pooled, self.kernel) + self.bias))

    m = Odd(8)
    return hm._save_reusable(path, m, lambda images, training=False: m.features(images), None)


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory: pytest.TempPathFactory, keep_signals: None) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("odd")
    module = odd_module(root / "odd_module")
    rng = np.random.default_rng(1)
    for cls, channel in (("red", 0), ("blue", 2)):
        (root / "images" / cls).mkdir(parents=True)
        for i in range(6):
            px = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
            px[..., channel] = rng.integers(170, 255, (16, 16), dtype=np.uint8)
            Image.fromarray(px).save(root / "images" / cls / f"{i}.png")
    preset = presets.from_dict(
        {
            "name": "odd",
            "data": {"source": f"folder:{root / 'images'}", "image_size": [16, 16], "batch_size": 4, "augment": False},
            "model": {"backbone": f"hub:{module}", "hub_output_dim": 8},
            "freeze": {"depth": "all"},
            "train": {"epochs": 1, "checkpoint_every": 0},
        }
    )
    return train_run(root, preset)


@pytest.mark.parametrize(
    ("fmt", "reason"),
    [
        ("litert", "no LiteRT built-in kernel for Digamma"),
        ("onnx", "tf2onnx has no ONNX (opset 17) conversion for Digamma"),
    ],
)
def test_a_converter_that_cannot_handle_the_backbone_says_which_and_why_and_leaves_nothing(
    odd_run: Path, fmt: str, reason: str, keep_signals: None
) -> None:
    rc, records = export(odd_run, "--format", fmt)
    backbone = presets.load(odd_run / "preset.toml").model.backbone
    assert rc == 2
    assert records[-1] == f"{fmt}: cannot convert {backbone}: {reason}"
    assert not (odd_run / "exports").exists()  # no artifact, no temporary folder, no empty folder


def test_the_same_backbone_exports_where_the_converter_can(odd_run: Path, keep_signals: None) -> None:
    rc, records = export(odd_run, "--format", "savedmodel")
    result = result_of(records)
    assert rc == 0 and result.checks[0].agreement == 1.0 and result.checks[0].max_abs_diff < 1e-5
