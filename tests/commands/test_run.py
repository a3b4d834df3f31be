"""``tltui run`` end to end: the real worker on a tiny generated image folder.

One trained run (module fixture) serves most e2e assertions; Ctrl-C gets its own run.
The parent side (sweeps, crashes, the grace kill, the live display) runs against the
scripted fake worker (no TensorFlow).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tltui.commands.main import main
from tltui.core import demo, protocol
from tltui.core.protocol import METRIC_KEYS


def e2e(fn):
    """Runs the real TensorFlow worker: slow, one group so the trained run is shared."""
    return pytest.mark.e2e(pytest.mark.xdist_group("train_e2e")(fn))


ROOT = Path(__file__).resolve().parents[2]
THREE_CLASS_KEYS = tuple(k for k in METRIC_KEYS if "top5" not in k)  # top-5 only with >= 6 classes

TINY = """
name = "tiny"
[data]
source = "folder:shapes"
image_size = [16, 16]
batch_size = 8
validation_fraction = 0.25
[model]
backbone = "tiny_cnn"
weights = "none"
[train]
epochs = 3
checkpoint_every = 2
learning_rate = 0.01
"""


def make_tiny(base: Path) -> Path:
    folder = demo.generate(base / "shapes", per_class=12, size=16, shapes=("circle", "square", "cross"))
    (folder / "square" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    preset = base / "tiny.toml"
    preset.write_text(TINY)
    return preset


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("run")
    preset = make_tiny(base)
    ws = base / "ws"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["--workspace", str(ws), "run", str(preset), "--plain"])
    show = io.StringIO()
    with contextlib.redirect_stdout(show):
        assert main(["--workspace", str(ws), "runs", "show", "r0001", "--json"]) == 0
    return {"rc": rc, "out": out.getvalue(), "ws": ws, "show": json.loads(show.getvalue())}


@e2e
def test_run_completes_and_prints_one_line_per_epoch(trained: dict) -> None:
    assert trained["rc"] == 0, trained["out"]
    lines = [ln for ln in trained["out"].splitlines() if ln.startswith("r0001 epoch ")]
    assert [ln.split()[2] for ln in lines] == ["1/3", "2/3", "3/3"]
    assert "r0001 completed" in trained["out"]


@e2e
def test_runs_show_has_the_full_history(trained: dict) -> None:
    d = trained["show"]
    assert d["status"] == "completed" and d["reason"] is None
    assert [h["epoch"] for h in d["history"]] == [1, 2, 3]
    for h in d["history"]:
        assert set(THREE_CLASS_KEYS) <= set(h) and "top5_acc" not in h, h  # top-5 of 3 classes is always 1
        assert h["lr"] == pytest.approx(0.01)
        assert h["epoch_seconds"] > 0
    assert d["best"]["epoch"] in (1, 2, 3)
    # model.keras holds the best val_acc epoch (train.restore_best, the default), and says so
    assert d["kept"] == {**d["kept"], "epoch": d["best"]["epoch"], "rule": "best", "final": True}
    assert d["kept"]["val_acc"] == d["best"]["val_acc"]
    assert d["params"]["trainable_params"] > 0 and d["params"]["num_classes"] == 3
    assert d["model_path"] and Path(d["model_path"]).is_file()
    assert d["checkpoints"] == [str(Path(d["dir"]) / "checkpoints" / "epoch-0002.keras")]
    assert Path(d["tensorboard_dir"]).is_dir()


@e2e
def test_events_file_is_the_durable_record(trained: dict) -> None:
    run_dir = trained["ws"] / "runs" / "r0001"
    events = protocol.read_events(run_dir / "events.jsonl")
    types = [e.type for e in events]
    assert types[0] == "started" and types[-1] == "finished"
    ends = [e for e in events if e.type == "epoch_end"]
    assert [e.epoch for e in ends] == [1, 2, 3]
    assert all(set(e.metrics) == set(THREE_CLASS_KEYS) for e in ends)
    batches = [e for e in events if e.type == "batch"]
    assert batches and all(b.steps == b.step for b in batches if b.step == b.steps)
    assert {b.epoch for b in batches if b.step == b.steps} == {1, 2, 3}  # last step of every epoch
    fin = events[-1]
    assert fin.status == "completed" and fin.epochs_done == 3 and fin.model_path == str(run_dir / "model.keras")


@e2e
def test_corrupt_image_is_skipped_with_a_warning_naming_it(trained: dict) -> None:
    run_dir = trained["ws"] / "runs" / "r0001"
    warnings = [e for e in protocol.read_events(run_dir / "events.jsonl") if e.type == "log" and e.level == "warning"]
    assert any("zz_corrupt.png" in w.message for w in warnings)
    assert "zz_corrupt.png" in trained["out"]
    info = json.loads((run_dir / "data.json").read_text())
    assert info["native_size"] == [16, 16] and info["num_classes"] == 3
    assert info["train_examples"] + info["val_examples"] == 36
    assert json.loads((run_dir / "classes.json").read_text()) == ["circle", "cross", "square"]
    assert json.loads((run_dir / "freeze_map.json").read_text())


@e2e
def test_model_loads_with_plain_keras_in_a_fresh_process(trained: dict) -> None:
    path = trained["ws"] / "runs" / "r0001" / "model.keras"
    code = (
        "import sys, numpy as np, keras\n"
        "m = keras.models.load_model(sys.argv[1])\n"
        "p = m.predict(np.random.RandomState(0).uniform(0, 255, (2, 40, 24, 3)).astype('float32'), verbose=0)\n"
        "assert 'tltui' not in sys.modules\n"
        "print(p.shape, float(p.sum()))\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    shape, total = res.stdout.strip().rsplit(" ", 1)
    assert shape == "(2, 3)" and float(total) == pytest.approx(2.0, abs=1e-4)


@e2e
def test_ctrl_c_cancels_the_run_and_exits_130(tmp_path: Path) -> None:
    preset = make_tiny(tmp_path)
    ws = tmp_path / "ws"
    cmd = [
        sys.executable,
        "-m",
        "tltui",
        "--workspace",
        str(ws),
        "run",
        str(preset),
        "--plain",
        "--set",
        "train.epochs=500",
        "--set",
        "train.steps_per_epoch=20",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    events = ws / "runs" / "r0001" / "events.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if any(e.type == "epoch_end" for e in protocol.read_events(events)):
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    show = subprocess.run(
        [sys.executable, "-m", "tltui", "--workspace", str(ws), "runs", "show", "r0001", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    d = json.loads(show.stdout)
    assert d["status"] == "cancelled"
    assert "SIGTERM" in d["reason"]
    assert 1 <= len(d["history"]) < 500
    assert (ws / "runs" / "r0001" / "backup" / "training_metadata.json").is_file()  # resume can continue
    fin = protocol.read_events(events)[-1]
    assert fin.type == "finished" and fin.status == "cancelled"
    assert not os.path.exists(ws / "runs" / "r0001" / "model.keras")


# --------------------------------------------------------------------------- fast: the scripted fake worker


def _fake_preset(tmp_path: Path, sweep: str = "") -> Path:
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True, exist_ok=True)
        (tmp_path / "imgs" / c / "0.png").touch()  # preflight checks the names only (the fake worker reads none)
    p = tmp_path / "fake.toml"
    p.write_text(
        'name = "fake"\n[data]\nsource = "folder:imgs"\n[model]\nbackbone = "tiny_cnn"\nweights = "none"\n'
        "[train]\nepochs = 3\n" + sweep
    )
    return p


@pytest.mark.usefixtures("fake_worker_env")
class TestWithFakeWorker:
    def test_a_sweep_runs_one_after_another(self, tmp_path: Path, capsys) -> None:
        preset = _fake_preset(tmp_path, '[sweep]\n"freeze.depth" = [0, 1, 2]\n')
        ws = tmp_path / "ws"
        assert main(["--workspace", str(ws), "run", str(preset), "--plain"]) == 0
        out = capsys.readouterr().out
        assert out.count(" epoch 3/3 ") == 3 and "== summary" in out
        assert main(["--workspace", str(ws), "runs", "ls", "--json"]) == 0
        runs = json.loads(capsys.readouterr().out)["runs"]
        assert [r["status"] for r in runs] == ["completed"] * 3
        assert [r["epoch"] for r in runs] == [3, 3, 3]

    def test_a_crashed_worker_fails_its_run_and_the_exit_code(self, tmp_path: Path, monkeypatch, capsys) -> None:
        monkeypatch.setenv("TLTUI_FAKE_CRASH_AT", "2")
        ws = tmp_path / "ws"
        assert main(["--workspace", str(ws), "run", str(_fake_preset(tmp_path)), "--plain"]) == 1
        from tltui.core.workspace import Workspace

        rec = Workspace(ws).get("r0001")
        assert rec.status == "failed" and "exited with code 3" in rec.reason and rec.epoch == 1

    def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace(self, tmp_path: Path, monkeypatch) -> None:
        from tltui.commands.run import Display, StopSignals, train_one
        from tltui.core import presets as presets_mod
        from tltui.core.workspace import Workspace

        monkeypatch.setenv("TLTUI_FAKE_IGNORE_TERM", "1")
        monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "5")
        w = Workspace(tmp_path / "ws")
        p = presets_mod.load(_fake_preset(tmp_path))
        (rec,) = w.create_runs([("fake", presets_mod.dumps(p), {})], preset_name="fake", queued=False)
        stop = StopSignals()
        stop.count = 1  # as if Ctrl-C came right away
        out = io.StringIO()
        assert train_one(w, rec, Display(out=out), stop, grace=0.5) == "cancelled"  # returns: not left waiting
        assert "stopping the worker" in out.getvalue()
        # it ignored SIGTERM and never reported its end: it was killed after the grace, not waited for
        assert not any(e.type == "finished" for e in protocol.read_events(w.run_paths(rec.id).events))
        assert w.get(rec.id).status == "cancelled"

    def test_live_display_renders_progress(self, tmp_path: Path) -> None:
        from rich.console import Console

        from tltui.commands.run import LiveDisplay, run_preset
        from tltui.core import presets as presets_mod
        from tltui.core.workspace import Workspace

        buf = io.StringIO()
        display = LiveDisplay(Console(file=buf, force_terminal=True, width=120))
        w = Workspace(tmp_path / "ws")
        assert run_preset(w, presets_mod.load(_fake_preset(tmp_path)), plain=False, display=display) == 0
        text = buf.getvalue()
        assert "r0001 epochs" in text and "epoch 3/3" in text and "r0001 completed" in text


def test_the_live_display_shows_messages_as_plain_text(tmp_path: Path) -> None:
    """A worker's step message holds paths and names: Rich markup would eat "[...]" and raise on "[/x]"."""
    from rich.console import Console

    from tltui.commands.run import LiveDisplay
    from tltui.core import runstate
    from tltui.core.protocol import Phase
    from tltui.core.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    (rec,) = ws.create_runs([("s[seed=1]", 'name = "s"\n', {})], preset_name="s", epochs=[2])
    buf = io.StringIO()
    display = LiveDisplay(Console(file=buf, force_terminal=False, width=160))
    display.begin(rec, 1, 1)
    try:
        display.event(
            rec, Phase(t=0.0, name="data", message="reading /data/photos[/x] (12 files)"), runstate.RunState()
        )
        display.progress.refresh()
    finally:
        display.progress.stop()
    assert "reading /data/photos[/x] (12 files)" in buf.getvalue()
    ws.close()


def test_runs_show_and_the_end_line_report_the_test_split_apart_from_validation(tmp_path: Path) -> None:
    """Scripted runs: the kept epoch's val_top5 (not the best of any epoch), the test split on its
    own line, and top-5 called n/a when there are too few classes for it to mean anything."""
    from tests.tui import fake_ws
    from tltui.commands.run import end_line
    from tltui.core import runstate
    from tltui.core.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ids = fake_ws.build(ws)
    rid = ids["completed"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--workspace", str(ws.root), "runs", "show", rid]) == 0
    m = fake_ws.metrics(10, 0.78)
    test_line = (
        f"test: test_acc {100 * (m['val_acc'] - 0.012):.1f}%, test_top5 {100 * (m['val_top5_acc'] - 0.01):.1f}% "
        "(test, 10000 images, weights of epoch 10)"
    )
    assert test_line in out.getvalue().splitlines()
    assert "n/a" not in out.getvalue()  # 100 classes

    state = runstate.load(ws.run_paths(rid).events)
    state.history[3]["val_top5_acc"] = 0.999  # a better top-5 at another epoch is not the kept epoch's
    line = end_line(ws.get(rid), state)
    assert line.startswith(
        f"{rid} completed: model.keras = epoch 10 (the best val_acc of the run): "
        f"val_acc {100 * m['val_acc']:.1f}%, val_top5 {100 * m['val_top5_acc']:.1f}%; test_acc "
    )
    assert line.endswith("(test, 10000 images, weights of epoch 10)")

    ws.run_paths(rid).classes.write_text(json.dumps(["a", "b", "c"]))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--workspace", str(ws.root), "runs", "show", rid]) == 0
    assert "top-5 n/a with 3 classes (it would be 100% by construction)" in out.getvalue().splitlines()
    ws.close()


def test_plain_output_prints_a_step_before_training_once_per_quarter() -> None:
    from tltui.commands.run import Display
    from tltui.core import runstate
    from tltui.core.protocol import Progress
    from tltui.core.workspace import RunRecord

    out = io.StringIO()
    display = Display(out=out)
    rec = RunRecord(id="r0001", seq=1, name="x", status="running", created=0.0)
    state = runstate.RunState()
    for done in range(0, 101, 5):
        display.event(
            rec,
            Progress(
                t=0.0, phase="download", done=done * 1e6, total=100e6, unit="bytes", message="downloading tfds:cifar100"
            ),
            state,
        )
    lines = out.getvalue().splitlines()
    assert [ln.split(": ")[1].split()[0] for ln in lines] == ["0%", "25%", "50%", "75%", "100%"]
    assert lines[1] == "r0001 downloading tfds:cifar100: 25% (25.0 / 100.0 MB)"
