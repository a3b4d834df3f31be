"""Worker errors with the REAL training worker on tiny data, injected with ``tltui.worker.faults``:
out of memory, a lost GPU, an input pipeline failing mid-epoch, an infinite loss, a full disk
while checkpointing. Each run ends ``failed`` with one line that says what to do; completed
epochs and earlier checkpoints survive; the queue goes on to the next run.

Most run in-process (one TensorFlow import for the module); the queue test and the
kill-mid-checkpoint test start real worker processes.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import helpers
from tltui.client import queue_ops
from tltui.core import demo, presets, protocol, run_summary, runstate
from tltui.core.workspace import Workspace
from tltui.runner import supervisor

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("reliability_e2e")]

TIMEOUT = 240.0


def tiny_preset(source: str, **overrides: object) -> presets.Preset:
    raw = {
        "name": "tiny",
        "data": {
            "source": source,
            "image_size": [16, 16],
            "batch_size": 8,
            "validation_fraction": 0.25,
            "augment": False,
        },
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"epochs": 2, "checkpoint_every": 0, "learning_rate": 0.01, "feature_cache": "off"},
    }
    return presets.from_dict(raw, overrides=overrides)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faultdata")
    folder = demo.generate(root / "shapes", per_class=8, size=16, shapes=("circle", "square", "cross"))
    # a corrupt image in the training folder: skipped with a warning, never an epoch killed by it
    (folder / "circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png at all")
    return folder


@pytest.fixture
def isolated_worker_state():
    """In-process runs install signal handlers and may patch the checkpoint writer: undo both."""
    from tltui.worker import checkpoint as cb

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    save_atomic, write_checkpoint = cb.save_atomic, cb.write_checkpoint
    yield
    cb.save_atomic, cb.write_checkpoint = save_atomic, write_checkpoint
    for s, h in saved.items():
        signal.signal(s, h)


def run_in_process(run_dir: Path, preset: presets.Preset, fault: str) -> tuple[int, list[protocol.Event]]:
    from tltui.worker import train

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "preset.toml").write_text(presets.dumps(preset))
    (run_dir / "fault.json").write_text(json.dumps({"fault": fault}))
    rc = train.main([str(run_dir)])
    return rc, protocol.read_events(run_dir / "events.jsonl")


CASES = [
    # fault, epochs completed before it, the start of the one-line reason, words that must be in it
    ("oom@epoch2,batch1", 1, "out of memory at batch size 8: try 4 (data.batch_size)", []),
    ("gpu_lost@epoch1,batch2", 0, "the GPU failed in epoch 1 (CUDA_ERROR_LAUNCH_FAILED", ["nvidia-smi", "resume"]),
    (
        "dataset@epoch2,batch2",
        1,
        "reading the training data failed in epoch 2 (",
        ["injected read error", "data.source"],
    ),
    ("inf@epoch1,batch2", 0, "loss became infinite at epoch 1 batch 2: lower the learning rate", []),
]


@pytest.mark.parametrize(("fault", "done", "start", "words"), CASES, ids=[c[0].split("@")[0] for c in CASES])
def test_worker_error_fails_the_run_with_one_actionable_line(
    tmp_path: Path, shapes: Path, isolated_worker_state: None, fault: str, done: int, start: str, words: list[str]
) -> None:
    preset = tiny_preset(f"folder:{shapes}", **{"train.epochs": 3})
    rc, events = run_in_process(tmp_path / "run", preset, fault)
    assert rc == 1
    fin = events[-1]
    assert fin.type == "finished" and fin.status == "failed", fin
    assert "\n" not in fin.reason and len(fin.reason) < 300
    assert fin.reason.startswith(start), fin.reason
    assert all(w in fin.reason for w in words), fin.reason
    assert "Traceback" not in fin.reason
    # the completed epochs are all on record, nothing of the failed one
    assert [e.epoch for e in events if e.type == "epoch_end"] == list(range(1, done + 1))
    assert fin.epochs_done == done
    warnings = [e.message for e in events if e.type == "log" and e.level == "warning"]
    assert any("skipping 1 unreadable image(s)" in w and "broken.png" in w for w in warnings), warnings


def test_faults_module_is_inert_without_a_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tltui.worker import faults

    monkeypatch.delenv(faults.ENV, raising=False)
    ds = object()
    assert faults.active(tmp_path) is None
    assert faults.wrap_dataset(tmp_path, ds) is ds
    assert faults.callbacks(tmp_path) == []
    monkeypatch.setenv(faults.ENV, "oom@epoch3,batch4")
    assert faults.active(tmp_path) == faults.Fault("oom", epoch=3, batch=4)
    (tmp_path / faults.FILE).write_text('{"fault": "enospc@checkpoint2"}')  # the run's file wins
    assert faults.active(tmp_path) == faults.Fault("enospc", checkpoint=2, at_checkpoint=True)
    with pytest.raises(ValueError, match="cannot read"):
        faults.parse("meltdown@now")


# ---------------------------------------------------------------------------- through the queue


def wait_for(pred: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    return helpers.wait_for(pred, what, timeout, every=0.05)


@pytest.fixture
def real_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TLTUI_WORKER_CMD", raising=False)
    monkeypatch.delenv("TLTUI_FAULT", raising=False)
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "30")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")


def _cleanup(ws: Workspace) -> None:
    helpers.stop_runner_and_workers(ws)


def test_full_disk_at_a_checkpoint_fails_the_run_keeps_the_previous_checkpoint_and_the_queue_goes_on(
    ws: Workspace, tmp_path: Path, shapes: Path, real_worker: None
) -> None:
    import zipfile

    preset = tmp_path / "q.toml"
    preset.write_text(
        presets.dumps(tiny_preset(f"folder:{shapes}", **{"train.epochs": 3, "train.checkpoint_every": 1}))
    )
    try:
        queue_ops.pause(ws)
        (full,) = queue_ops.add(ws, preset, {}, start_runner=False)
        (nxt,) = queue_ops.add(ws, preset, {}, start_runner=False)
        (ws.run_paths(full.id).dir / "fault.json").write_text('{"fault": "enospc@checkpoint2"}')
        queue_ops.unpause(ws)
        queue_ops.ensure_runner(ws)
        wait_for(lambda: ws.get(nxt.id).status in ("completed", "failed"), "the second run to finish")
        a, b = ws.get(full.id), ws.get(nxt.id)
    finally:
        _cleanup(ws)
    paths = ws.run_paths(full.id)
    ckpt2 = paths.checkpoints / "epoch-0002.keras"
    assert a.status == "failed", a.reason
    assert a.reason.startswith(f"disk full while writing the checkpoint at {ckpt2}: free space on that disk"), a.reason
    assert "\n" not in a.reason and "resume" in a.reason
    # the previous checkpoint is whole, the torn one is gone (no half-written file left behind)
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == ["epoch-0001.keras"]
    with zipfile.ZipFile(paths.checkpoints / "epoch-0001.keras") as z:
        assert z.testzip() is None
    events = protocol.read_events(paths.events)
    # checkpoints are written in the background while the next epoch trains: the failure stops the run at
    # the first step after it (normally early in epoch 3), at the latest at the end of epoch 3
    assert [e.epoch for e in events if e.type == "epoch_end"] in ([1, 2], [1, 2, 3])
    assert [e.epoch for e in events if e.type == "checkpoint"] == [1]
    # the queue went on: the next run completed, all its checkpoints there
    assert b.status == "completed", b.reason
    assert b.started >= a.finished
    assert sorted(p.name for p in ws.run_paths(nxt.id).checkpoints.iterdir()) == [
        "epoch-0001.keras",
        "epoch-0002.keras",
        "epoch-0003.keras",
    ]


def test_kill_9_in_the_middle_of_a_checkpoint_write_then_resume(
    ws: Workspace, tmp_path: Path, shapes: Path, real_worker: None
) -> None:
    """SIGKILL while ``epoch-0002.keras`` is half written (in the background; the fault holds training
    at the start of epoch 3): no stuck run, no torn checkpoint under its real name, epochs 1-2 kept;
    resume writes the lost checkpoint 2 from the restored state and ends with exactly epochs 1..3, each
    on record once."""
    from tltui.worker import faults

    preset = tiny_preset(f"folder:{shapes}", **{"train.epochs": 3, "train.checkpoint_every": 1})
    (rec,) = ws.create_runs([("tiny", presets.dumps(preset), {})], preset_name="tiny", queued=False)
    paths = ws.run_paths(rec.id)
    (paths.dir / faults.FILE).write_text('{"fault": "hang@checkpoint2"}')
    wp = supervisor.spawn_worker(ws, rec.id)
    supervisor.record_started(ws, rec.id, wp.pid)
    try:
        wait_for(lambda: (paths.dir / faults.HIT).exists() or wp.proc.poll() is not None, "the checkpoint write")
        assert wp.proc.poll() is None, supervisor.log_tail(paths.log)
        torn = list(paths.checkpoints.glob(".*tmp*"))
        assert torn, "the half-written temporary file is there at the kill"
        os.killpg(wp.pid, signal.SIGKILL)
        rc = wp.proc.wait()
    finally:
        wp.close()
    assert supervisor.record_exit(ws, rec.id, rc) == "failed"
    assert ws.get(rec.id).status == "failed" and "SIGKILL" in ws.get(rec.id).reason
    assert runstate.load(paths.events).epochs_done == 2
    assert not (paths.checkpoints / "epoch-0002.keras").exists()

    (paths.dir / faults.FILE).unlink()
    wp = supervisor.spawn_worker(ws, rec.id, resume=True)
    supervisor.record_started(ws, rec.id, wp.pid)
    try:
        rc = wp.proc.wait(timeout=TIMEOUT)
        for _ in wp.read_events():
            pass
    finally:
        wp.close()
    assert rc == 0, supervisor.log_tail(paths.log)
    assert supervisor.record_exit(ws, rec.id, rc) == "completed"
    events = protocol.read_events(paths.events)
    starts = [e for e in events if e.type == "started"]
    assert len(starts) == 2 and starts[1].initial_epoch == 2, starts
    assert [e.epoch for e in events if e.type == "epoch_end"] == [1, 2, 3]
    assert sorted(h["epoch"] for h in runstate.load(paths.events).history_list()) == [1, 2, 3]
    # the workers' summary (the killed one's, continued by the resume) reads as the whole log does
    assert json.loads(paths.summary.read_bytes())["offset"] == paths.events.stat().st_size
    full = runstate.fold(paths.events)
    assert run_summary.state_to_doc(runstate.load(paths.events)) == run_summary.state_to_doc(full)
    assert full.elapsed() is not None and full.kept() is not None
    # the torn temporary file of the killed write is gone, so `runs show` cannot list it
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == [
        "epoch-0001.keras",
        "epoch-0002.keras",
        "epoch-0003.keras",
    ]
    assert [e.epoch for e in events if e.type == "checkpoint"] == [1, 2, 3]
    assert paths.model.is_file()
    assert ws.get(rec.id).status == "completed"
