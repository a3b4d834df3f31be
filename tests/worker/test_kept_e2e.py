"""The result is the model: what tltui reports as a run's result (runs show, the end line, the registry)
is what plain Keras measures on ``model.keras``, for the validation files the run used and for the test
split. Real photos (scikit-image's), the real worker, runs whose last epochs get worse."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from bench.export import photo_folder
from tests.worker.test_train_e2e import run_in_process
from tltui.core import presets, runstate
from tltui.core.workspace import RunPaths

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("train_e2e")]

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png")


def photo_crops(root: Path, per_class: int = 12, size: int = 48) -> Path:
    """Three classes of real photos: random square crops of scikit-image's astronaut, cat and coffee."""
    try:
        return photo_folder(root, per_class, size, photos=PHOTOS)
    except RuntimeError as e:  # scikit-image (a test dependency, for its sample photos) is not installed
        pytest.skip(str(e))


def keras_metrics(run: Path, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``model.keras`` loaded by plain Keras (no tltui code) and evaluated."""
    import keras

    model = keras.saving.load_model(run / "model.keras")
    return model.evaluate(images.astype("float32"), labels, batch_size=16, return_dict=True, verbose=0)


def val_split(preset: presets.Preset) -> tuple[np.ndarray, np.ndarray]:
    """The run's validation images: the same files, split with the same seed."""
    import keras

    from tltui.worker import data

    keras.utils.set_random_seed(preset.train.seed)
    ds = data.load(preset)
    return np.asarray(ds.val.images), np.asarray(ds.val.labels)


def test_a_run_without_early_stopping_hands_over_its_best_epoch(tmp_path: Path, restore_signals) -> None:
    """SGD at 1.0 from scratch on real photos: val_acc goes up and down (best at epoch 2, equalled at
    epoch 4). ``model.keras`` holds epoch 2, the test of every reported number is plain Keras's evaluation
    of that file on the validation files; with ``restore_best = false`` it holds (and says) the last, also
    with early stopping on that never stopped (Keras 3 would restore its best epoch anyway)."""
    from tltui.commands.run import end_line
    from tltui.core.workspace import RunRecord

    folder = photo_crops(tmp_path / "photos")
    raw = {
        "name": "photos",
        "data": {
            "source": f"folder:{folder}",
            "image_size": [32, 32],
            "batch_size": 8,
            "augment": False,
            "validation_fraction": 0.25,
        },
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "freeze": {"batchnorm": "trainable"},
        "train": {"epochs": 6, "checkpoint_every": 0, "optimizer": "sgd", "learning_rate": 1.0},
    }
    preset = presets.from_dict(raw)
    xv, yv = val_split(preset)
    assert len(yv) == 9
    for restore_best, rule, patience in ((True, "best", 0), (False, "last", 0), (False, "last", 20)):
        run = tmp_path / f"run-{rule}-{patience}"
        overrides = {"train.restore_best": restore_best, "train.early_stopping_patience": patience}
        rc, events = run_in_process(run, presets.from_dict(raw, overrides=overrides))
        assert rc == 0, events[-1]
        state = runstate.load(RunPaths(run).events)
        accs = [h["val_acc"] for h in state.history_list()]
        best = 1 + int(np.argmax(accs))  # the first of equals
        assert best < len(accs) and accs[-1] < accs[best - 1]  # not vacuous: the last epoch is worse
        kept = state.kept()
        assert kept is not None and kept["final"] and kept["rule"] == rule
        assert kept["epoch"] == (best if restore_best else len(accs))
        assert state.finished is not None and state.finished.reason == ""  # early stopping never stopped
        measured = keras_metrics(run, xv, yv)
        assert measured["acc"] == pytest.approx(kept["val_acc"], abs=1e-4)
        assert measured["loss"] == pytest.approx(kept["val_loss"], rel=1e-4)
        rec = RunRecord(id="r0001", seq=1, name="photos", status="completed", created=0.0)
        assert end_line(rec, state).startswith(
            f"r0001 completed: model.keras = epoch {kept['epoch']} ({'the best val_acc of the run' if restore_best else 'the last epoch'})"
            f": val_acc {100 * measured['acc']:.1f}%"
        )


def test_a_phased_run_whose_fine_tuning_diverges_keeps_phase_1s_best(tmp_path: Path, restore_signals) -> None:
    """ml-correctness-2 F2: phase 2 (everything unfrozen, SGD at 3.0) diverges and its early stopping
    keeps its own best epoch, worse than phase 1's. The run hands over phase 1's best epoch (epoch 6 of 8,
    trained from cached features: the kept file holds the whole classifier), and every reader agrees with
    plain Keras on ``model.keras``; runs show lists the phases."""
    from tltui.commands.main import main
    from tltui.core.workspace import Workspace
    from tltui.runner import supervisor

    folder = photo_crops(tmp_path / "photos")
    raw = {
        "name": "phased",
        "data": {
            "source": f"folder:{folder}",
            "image_size": [32, 32],
            "batch_size": 8,
            "augment": False,
            "validation_fraction": 0.25,
        },
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "freeze": {"depth": "all"},
        "train": {"checkpoint_every": 0},
        "phases": [
            {"name": "head", "train": {"epochs": 8, "optimizer": "adam", "learning_rate": 0.1}},
            {
                "name": "fine-tune",
                "freeze": {"depth": 0},
                "train": {"epochs": 4, "optimizer": "sgd", "learning_rate": 3.0, "early_stopping_patience": 2},
            },
        ],
    }
    preset = presets.from_dict(raw)
    ws = Workspace(tmp_path / "ws")
    rec = ws.create_runs([("phased", presets.dumps(preset), {})], preset_name="phased", epochs=[12])[0]
    run = ws.run_paths(rec.id).dir
    rc, events = run_in_process(run, preset)
    assert rc == 0, events[-1]
    state = runstate.load(RunPaths(run).events)
    phase_of = {h["epoch"]: h["phase"] for h in state.history_list()}
    kept = state.kept()
    assert kept is not None and kept["rule"] == "best" and phase_of[kept["epoch"]] == 1 and kept["epoch"] < 8
    later = [h["val_acc"] for h in state.history_list() if h["epoch"] > kept["epoch"]]
    assert later and max(later) < kept["val_acc"]  # not vacuous: every later epoch is worse
    assert state.finished is not None and state.finished.model_epoch == kept["epoch"]
    xv, yv = val_split(preset)
    measured = keras_metrics(run, xv, yv)
    assert measured["acc"] == pytest.approx(kept["val_acc"], abs=1e-4)
    assert measured["loss"] == pytest.approx(kept["val_loss"], rel=1e-4)

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["--workspace", str(ws.root), "runs", "show", rec.id, "--json"]) == 0
    shown = json.loads(out.getvalue())
    assert shown["kept"] == kept and shown["best"]["epoch"] == kept["epoch"]
    assert [(p["index"], p["first_epoch"], p["feature_cache"]) for p in shown["phases"]] == [
        (1, 1, True),
        (2, 9, False),
    ]
    assert shown["phases"][1]["last_epoch"] == state.epochs_done and shown["phases"][0]["learning_rate"] == 0.1
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["--workspace", str(ws.root), "runs", "show", rec.id]) == 0
    lines = out.getvalue().splitlines()
    assert (
        f"result: model.keras = epoch {kept['epoch']} (the best val_acc of the run): "
        f"val_acc {100 * measured['acc']:.1f}%" in lines
    )
    (head,) = [ln for ln in lines if ln.startswith("  1/2 head: ")]
    assert (
        head.startswith("  1/2 head: epochs 1-8, adam lr 0.1, freeze all (BatchNorm frozen)")
        and "feature cache" in head
    )
    # the registry (the runs table, runs ls, queue ls) has the kept epoch's numbers
    supervisor.record_exit(ws, rec.id, 0)
    row = ws.get(rec.id)
    assert row.best_epoch == kept["epoch"] and row.best_val_acc == pytest.approx(measured["acc"], abs=1e-4)
    ws.close()


def test_the_test_split_is_evaluated_on_model_keras(tmp_path: Path, restore_signals) -> None:
    """A TFDS run (mock data) with a test split: the test metrics the run reports are plain Keras's on
    ``model.keras``, at the kept epoch."""
    import keras
    import tensorflow_datasets as tfds

    from tltui.worker import data

    preset = presets.from_dict(
        {
            "name": "t",
            "data": {
                "source": "tfds:mnist",
                "image_size": [32, 32],
                "batch_size": 8,
                "data_dir": str(tmp_path / "tfds"),
            },
            "model": {"backbone": "tiny_cnn", "weights": "none"},
            "freeze": {"batchnorm": "trainable"},
            "train": {"epochs": 4, "checkpoint_every": 0, "learning_rate": 0.05},
        }
    )
    with tfds.testing.mock_data(num_examples=32):
        rc, events = run_in_process(tmp_path / "run", preset)
        assert rc == 0, events[-1]
        keras.utils.set_random_seed(preset.train.seed)
        ds = data.load(preset)
        xt, yt = np.asarray(ds.test.images), np.asarray(ds.test.labels)
    state = runstate.load(RunPaths(tmp_path / "run").events)
    kept = state.kept()
    assert kept is not None and state.test is not None and state.test["weights_epoch"] == kept["epoch"]
    measured = keras_metrics(tmp_path / "run", xt, yt)
    assert state.test["test_acc"] == pytest.approx(measured["acc"], abs=1e-4)
    assert state.test["test_loss"] == pytest.approx(measured["loss"], rel=1e-4)
