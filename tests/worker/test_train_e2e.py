"""The training worker end to end: kill -9 and resume, NaN loss, TFDS (mock and missing).

The worker runs as a subprocess where process death matters (kill/resume) and
in-process elsewhere (one TensorFlow import for the rest of the module).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tltui.core import presets, protocol, runstate
from tltui.core.protocol import METRIC_KEYS
from tltui.core.workspace import RunPaths, Workspace
from tltui.runner import supervisor

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("train_e2e")]


def tiny_preset(source: str, **overrides: object) -> presets.Preset:
    raw = {
        "name": "tiny",
        "data": {"source": source, "image_size": [16, 16], "batch_size": 8, "validation_fraction": 0.25},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"epochs": 2, "checkpoint_every": 0, "learning_rate": 0.01},
    }
    return presets.from_dict(raw, overrides=overrides)


def run_in_process(run_dir: Path, preset: presets.Preset) -> tuple[int, list[protocol.Event]]:
    from tltui.worker import train

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "preset.toml").write_text(presets.dumps(preset))
    rc = train.main([str(run_dir)])
    return rc, protocol.read_events(run_dir / "events.jsonl")


def wait_for(ws: Workspace, wp: supervisor.WorkerProc, state: runstate.RunState, done, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not wp.eof and not done(state):
        for ev in wp.read_events():
            state.apply(ev)
        time.sleep(0.02)


def run_worker(ws: Workspace, run_id: str, resume: bool = False, until=lambda s: False) -> supervisor.WorkerProc:
    wp = supervisor.spawn_worker(ws, run_id, resume=resume)
    supervisor.record_started(ws, run_id, wp.pid)
    wait_for(ws, wp, runstate.RunState(), until)
    return wp


def model_weights(path: Path) -> list:
    import keras

    return [v.numpy() for v in keras.saving.load_model(path, compile=False).weights]


def test_killed_and_resumed_run_equals_the_uninterrupted_one(ws: Workspace, shapes: Path) -> None:
    """kill -9 inside epoch 3, resume: history, early stopping, kept epoch and model.keras are
    bit-identical to the run that was never interrupted (shuffle, augmentation, Dropout and a
    ``steps_per_epoch`` stream that crosses epochs of the data, all keyed by seed and epoch)."""
    import numpy as np

    preset = tiny_preset(
        f"folder:{shapes}",
        **{
            "train.epochs": 6,
            "train.steps_per_epoch": 5,  # 18 training images, batches of 8: epochs straddle passes
            "train.learning_rate": 1e-6,  # val_acc cannot move: early stopping fires after epoch 3
            "train.early_stopping_patience": 2,
            "model.dropout": 0.5,
        },
    )
    assert preset.data.augment and preset.data.shuffle_buffer > 0
    text = presets.dumps(preset)
    plain, killed = ws.create_runs([("a", text, {}), ("b", text, {})], preset_name="tiny", queued=False)
    wp = run_worker(ws, plain.id)
    assert wp.proc.wait() == 0, supervisor.log_tail(ws.run_paths(plain.id).log)
    wp.close()

    paths = ws.run_paths(killed.id)
    (paths.dir / "fault.json").write_text('{"fault": "hang@epoch3,batch2"}')  # after epoch 2's backup
    wp = run_worker(ws, killed.id, until=lambda s: (paths.dir / "fault.hit").exists())
    assert (paths.dir / "fault.hit").exists(), supervisor.log_tail(paths.log)
    os.kill(wp.pid, signal.SIGKILL)
    wp.proc.wait()
    wp.close()
    assert supervisor.record_exit(ws, killed.id, -9) == "failed"
    (paths.dir / "fault.json").unlink()
    from tltui.worker.backup import BACKUP_META

    assert json.loads((paths.backup / BACKUP_META).read_text())["split"]  # what each split held: a resume compares
    wp = run_worker(ws, killed.id, resume=True)
    assert wp.proc.wait() == 0, supervisor.log_tail(paths.log)
    wp.close()

    a, b = runstate.load(ws.run_paths(plain.id).events), runstate.load(paths.events)
    starts = [e for e in protocol.read_events(paths.events) if e.type == "started"]
    assert [s.initial_epoch for s in starts] == [0, 2]
    worker_log = paths.log.read_text()
    assert "resuming after epoch 2" in worker_log and "changed since this run's last backup" not in worker_log
    assert [h["epoch"] for h in a.history_list()] == [1, 2, 3]  # stopped early: patience 2 after epoch 1

    def metrics(state: runstate.RunState) -> list[dict]:
        return [{k: v for k, v in h.items() if k not in ("t", "epoch_seconds")} for h in state.history_list()]

    assert metrics(b) == metrics(a)  # every metric, lr included, float for float
    losses = [h["loss"] for h in a.history_list()]
    assert len(set(losses)) == 3  # the epochs saw different batches / augmentations
    assert a.finished.reason == b.finished.reason == "stopped early after epoch 3: val_acc did not improve for 2 epochs"
    assert (
        (a.finished.model_epoch, a.finished.model_rule)
        == (b.finished.model_epoch, b.finished.model_rule)
        == (1, "best")
    )
    for x, y in zip(model_weights(ws.run_paths(plain.id).model), model_weights(paths.model), strict=True):
        np.testing.assert_array_equal(x, y)
    # the weights-moved record counts from the run's start, not the resume's
    moved = [json.loads((ws.run_paths(r).dir / "moved.json").read_text()) for r in (plain.id, killed.id)]
    assert moved[0] == moved[1] and moved[0]["epoch"] == 3


def test_nan_loss_fails_the_run_naming_epoch_and_batch(tmp_path: Path, shapes: Path, restore_signals) -> None:
    import numpy as np

    from tltui.worker.model import tiny_cnn

    backbone = tiny_cnn((16, 16, 3))
    backbone.set_weights([np.full_like(w, np.nan) for w in backbone.get_weights()])
    weights = tmp_path / "broken.weights.h5"
    backbone.save_weights(str(weights))
    preset = tiny_preset(f"folder:{shapes}", **{"model.weights": str(weights)})
    rc, events = run_in_process(tmp_path / "run", preset)
    assert rc == 1
    fin = events[-1]
    assert fin.type == "finished" and fin.status == "failed"
    assert fin.reason.startswith("loss became NaN at epoch 1 batch 1: lower the learning rate")
    assert not [e for e in events if e.type == "epoch_end"]


def test_missing_tfds_data_fails_with_one_clear_line(tmp_path: Path, restore_signals) -> None:
    preset = tiny_preset("tfds:mnist", **{"data.data_dir": str(tmp_path / "empty_tfds"), "data.download": False})
    rc, events = run_in_process(tmp_path / "run", preset)
    assert rc == 1
    fin = events[-1]
    assert fin.status == "failed"
    assert "\n" not in fin.reason
    assert "not prepared in " + str(tmp_path / "empty_tfds") + " (data.download = false)" in fin.reason
    assert "tltui data fetch tfds:mnist --data-dir DIR" in fin.reason and "tfds build mnist" in fin.reason
    assert not (tmp_path / "empty_tfds" / "downloads").exists()  # nothing was fetched


def test_tfds_mock_data_trains(tmp_path: Path, restore_signals) -> None:
    import json

    import tensorflow_datasets as tfds

    preset = tiny_preset("tfds:mnist", **{"data.data_dir": str(tmp_path / "tfds")})
    with tfds.testing.mock_data(num_examples=24):
        rc, events = run_in_process(tmp_path / "run", preset)
    assert rc == 0, events[-1]
    ends = [e for e in events if e.type == "epoch_end"]
    assert [e.epoch for e in ends] == [1, 2]
    assert all(set(e.metrics) == set(METRIC_KEYS) for e in ends)  # 10 classes: top-5 is reported
    (test,) = [e for e in events if e.type == "evaluated"]  # the test split, once, after training
    assert test.split == "test" and test.examples == 24 and set(test.metrics) == set(protocol.TEST_KEYS)
    paths = RunPaths(tmp_path / "run")
    info = json.loads(paths.data_info.read_text())
    assert info["native_size"] == [28, 28] and info["num_classes"] == 10
    assert len(json.loads(paths.classes.read_text())) == 10
    assert paths.model.is_file()


def test_gpus_named_but_not_visible_fail_fast(monkeypatch: pytest.MonkeyPatch, shapes: Path) -> None:
    from tltui.worker.devices import setup_devices
    from tltui.worker.errors import TrainError

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(TrainError, match=r"CUDA_VISIBLE_DEVICES=0,1 but TensorFlow sees 0 GPU\(s\)"):
        setup_devices(tiny_preset(f"folder:{shapes}"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    with pytest.raises(TrainError, match="train.gpus = 2"):
        setup_devices(tiny_preset(f"folder:{shapes}", **{"train.gpus": 2}))
    names, _ = setup_devices(tiny_preset(f"folder:{shapes}"))
    assert names == ["CPU"]


def test_a_run_is_epochs_x_steps_optimizer_steps_and_what_plain_keras_fit_gives(
    tmp_path: Path, shapes: Path, restore_signals
) -> None:
    """18 training images in batches of 8: 3 steps per epoch (the last one of 2 images), never a 4th;
    the cosine schedule is where Keras puts it, and the numbers are model.fit's on the same arrays;
    model.keras holds what plain Keras's ``ModelCheckpoint(monitor="val_acc", save_best_only=True)``
    keeps (train.restore_best)."""
    import keras
    import numpy as np

    from tltui.worker import data
    from tltui.worker.compile import compile_model
    from tltui.worker.model import build_classifier

    preset = tiny_preset(
        f"folder:{shapes}",
        **{"train.epochs": 3, "train.lr_schedule": "cosine", "data.augment": False, "data.shuffle_buffer": 0},
    )
    rc, events = run_in_process(tmp_path / "run", preset)
    assert rc == 0, events[-1]
    ends = [e for e in events if e.type == "epoch_end"]
    saved = keras.saving.load_model(RunPaths(tmp_path / "run").model)
    assert int(saved.optimizer.iterations.numpy()) == 3 * 3
    schedule = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=3 * 3)
    # the lr an epoch trained with: its last step's (epoch 3's is schedule(8) > 0, not the end value 0)
    assert [e.lr for e in ends] == pytest.approx([float(schedule(e * 3 - 1)) for e in (1, 2, 3)])

    keras.utils.set_random_seed(preset.train.seed)
    ds = data.load(preset)
    assert (ds.train_examples, ds.val_examples, ds.steps_per_epoch) == (18, 6, 3)
    x, y = np.asarray(ds.train.images, dtype="float32"), ds.train.labels
    xv, yv = np.asarray(ds.val.images, dtype="float32"), ds.val.labels
    plain, backbone = build_classifier(preset, 3)
    for layer in backbone.layers:  # freeze.batchnorm = "frozen" (the default): BatchNorm in inference mode
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    compile_model(plain, preset, 3, 3, lambda *a: None)
    best = tmp_path / "plain-best.weights.h5"
    keep = keras.callbacks.ModelCheckpoint(
        best, monitor="val_acc", mode="max", save_best_only=True, save_weights_only=True
    )
    history = plain.fit(
        x, y, batch_size=8, epochs=3, shuffle=False, validation_data=(xv, yv), verbose=0, callbacks=[keep]
    ).history
    assert int(plain.optimizer.iterations.numpy()) == 9
    for key in ("loss", "acc", "val_loss", "val_acc"):
        np.testing.assert_allclose([e.metrics[key] for e in ends], history[key], rtol=1e-5, err_msg=key)
    plain.load_weights(best)
    for a, b in zip(saved.weights, plain.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    kept_epoch = 1 + int(np.argmax(history["val_acc"]))  # the first of equals, as ModelCheckpoint keeps it
    assert events[-1].model_epoch == kept_epoch and events[-1].model_rule == "best"
