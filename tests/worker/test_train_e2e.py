"""The training worker end to end: kill -9 and resume, NaN loss, TFDS (mock and missing).

The worker runs as a subprocess where process death matters (kill/resume) and
in-process elsewhere (one TensorFlow import for the rest of the module).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tltui import demo, presets, protocol, runstate, supervisor
from tltui.protocol import METRIC_KEYS
from tltui.workspace import RunPaths, Workspace

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("train_e2e")]


def tiny_preset(source: str, **overrides: object) -> presets.Preset:
    raw = {
        "name": "tiny",
        "data": {"source": source, "image_size": [16, 16], "batch_size": 8, "validation_fraction": 0.25},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"epochs": 2, "checkpoint_every": 0, "learning_rate": 0.01},
    }
    return presets.from_dict(raw, overrides=overrides)


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    return demo.generate(tmp_path / "shapes", per_class=8, size=16, shapes=("circle", "square", "cross"))


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


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


def test_kill_9_after_epoch_2_then_resume_gives_4_distinct_epochs(ws: Workspace, shapes: Path) -> None:
    preset = tiny_preset(f"folder:{shapes}", **{"train.epochs": 4, "train.steps_per_epoch": 80})
    (rec,) = ws.create_runs([("tiny", presets.dumps(preset), {})], preset_name="tiny", queued=False)
    wp = supervisor.spawn_worker(ws, rec.id)
    supervisor.record_started(ws, rec.id, wp.pid)
    state = runstate.RunState()
    wait_for(ws, wp, state, lambda s: s.epochs_done >= 2)
    assert state.epochs_done == 2, supervisor.log_tail(ws.run_paths(rec.id).log)
    os.kill(wp.pid, signal.SIGKILL)
    rc = wp.proc.wait()
    wp.close()
    assert supervisor.record_exit(ws, rec.id, rc) == "failed"
    assert "SIGKILL" in ws.get(rec.id).reason

    wp = supervisor.spawn_worker(ws, rec.id, resume=True)
    state = runstate.RunState()
    wait_for(ws, wp, state, lambda s: s.finished is not None)
    rc = wp.proc.wait()
    wp.close()
    assert rc == 0
    assert supervisor.record_exit(ws, rec.id, rc) == "completed"
    events = protocol.read_events(ws.run_paths(rec.id).events)
    starts = [e for e in events if e.type == "started"]
    assert len(starts) == 2 and starts[1].initial_epoch in (1, 2)
    final = runstate.load(ws.run_paths(rec.id).events)
    assert [h["epoch"] for h in final.history_list()] == [1, 2, 3, 4]
    three_classes = {"loss", "acc", "val_loss", "val_acc"}  # no top-5 with 5 classes or fewer
    assert all(three_classes <= set(h) and "top5_acc" not in h for h in final.history_list())
    assert ws.get(rec.id).status == "completed"


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
    preset = tiny_preset("tfds:mnist", **{"data.data_dir": str(tmp_path / "empty_tfds")})
    rc, events = run_in_process(tmp_path / "run", preset)
    assert rc == 1
    fin = events[-1]
    assert fin.status == "failed"
    assert "\n" not in fin.reason
    assert "tfds build mnist" in fin.reason and str(tmp_path / "empty_tfds") in fin.reason


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
    from tltui.worker.train import TrainError, setup_devices

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(TrainError, match=r"CUDA_VISIBLE_DEVICES=0,1 but TensorFlow sees 0 GPU\(s\)"):
        setup_devices(tiny_preset(f"folder:{shapes}"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    with pytest.raises(TrainError, match="train.gpus = 2"):
        setup_devices(tiny_preset(f"folder:{shapes}", **{"train.gpus": 2}))
    names, _ = setup_devices(tiny_preset(f"folder:{shapes}"))
    assert names == ["CPU"]
