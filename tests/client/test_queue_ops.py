"""Client-side queue operations and the ``tltui queue``/``cancel``/``resume`` commands (no runner needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tltui.client import live, queue_ops
from tltui.commands import main as cli
from tltui.core import protocol, runstate
from tltui.core.errors import PresetError
from tltui.core.protocol import EpochBegin, EpochEnd, Started
from tltui.core.workspace import Workspace, WorkspaceError


def write_preset(root: Path, body: str = "") -> Path:
    for c in ("cats", "dogs"):
        (root / "data" / c).mkdir(parents=True, exist_ok=True)
        (root / "data" / c / "0.png").touch()  # preflight checks the names only
    p = root / "q.toml"
    p.write_text(
        'name = "q"\n[data]\nsource = "folder:data"\nimage_size = [32, 32]\n'
        '[model]\nbackbone = "tiny_cnn"\nweights = "none"\n[train]\nepochs = 3\n' + body
    )
    return p


def run_cli(ws: Workspace, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["--workspace", str(ws.root), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_add_expands_the_sweep_with_resolved_presets(ws: Workspace, tmp_path: Path) -> None:
    p = write_preset(tmp_path, '[sweep]\n"freeze.depth" = [0, 1]\n')
    recs = queue_ops.add(ws, p, {"train.epochs": 4}, start_runner=False)
    assert [r.name for r in recs] == ["q[depth=0]", "q[depth=1]"]
    assert [r.overrides for r in recs] == [
        {"train.epochs": 4, "freeze.depth": 0},
        {"train.epochs": 4, "freeze.depth": 1},
    ]
    assert [r.epochs for r in recs] == [4, 4] and [r.id for r in ws.queue()] == [r.id for r in recs]
    resolved = tomllib.loads(ws.run_paths(recs[1].id).preset.read_text())
    assert resolved["freeze"]["depth"] == 1 and resolved["train"]["epochs"] == 4 and "sweep" not in resolved
    assert resolved["data"]["source"] == f"folder:{tmp_path / 'data'}"  # absolute: the worker runs elsewhere


def test_add_refuses_a_bad_preset_before_recording_anything(ws: Workspace, tmp_path: Path) -> None:
    p = write_preset(tmp_path)
    with pytest.raises(PresetError, match="train.epochs"):
        queue_ops.add(ws, p, {"train.epochs": 0}, start_runner=False)
    for c in ("cats", "dogs"):
        (tmp_path / "data" / c / "0.png").unlink()
        (tmp_path / "data" / c).rmdir()
    with pytest.raises(PresetError, match="needs at least 2 class subfolders, found 0"):
        queue_ops.add(ws, p, {}, start_runner=False)
    with pytest.raises(WorkspaceError, match="unknown executor 'kubernetes'"):
        queue_ops.add(ws, p, {}, start_runner=False, executor="kubernetes")
    assert ws.list_runs() == []


def test_add_and_check_refuse_a_bad_settings_file_with_its_line(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever the executor: the runner these runs go to would ignore the bad value."""
    p = write_preset(tmp_path)
    ws.settings_file.write_text("[runner]\ncpu_slot = 2\n")
    with pytest.raises(PresetError, match=r"settings.toml:2: runner.cpu_slot: unknown key; did you mean 'cpu_slots'"):
        queue_ops.add(ws, p, {}, start_runner=False, executor="local")
    code, out, err = run_cli(ws, "queue", "add", str(p), "--no-runner", capsys=capsys)
    assert code == 2 and out == "" and err.startswith(f"error: {ws.settings_file}:2: runner.cpu_slot: unknown key")
    assert len(err.splitlines()) == 1
    code, out, err = run_cli(ws, "check", str(p), capsys=capsys)
    assert (
        code == 2 and err.startswith(f"error: {ws.settings_file}:2: runner.cpu_slot: ") and len(err.splitlines()) == 1
    )
    assert ws.list_runs() == []
    ws.settings_file.write_text('[executor]\ndefault = "kubernetes"\n')
    with pytest.raises(PresetError, match=r"settings.toml:2: executor.default: 'kubernetes' is not one of local, ray"):
        queue_ops.add(ws, p, {}, start_runner=False)


def test_cancel_resume_move_refuse_what_makes_no_sense(ws: Workspace, tmp_path: Path) -> None:
    a, b = queue_ops.add(ws, write_preset(tmp_path, '[sweep]\n"train.seed" = [1, 2]\n'), {}, start_runner=False)
    with pytest.raises(WorkspaceError, match="only failed, cancelled, interrupted, paused runs can be resumed"):
        queue_ops.resume(ws, a.id, start_runner=False)
    with pytest.raises(WorkspaceError, match="positions start at 1"):
        queue_ops.move(ws, a.id, 0)
    queue_ops.cancel(ws, a.id)
    with pytest.raises(WorkspaceError, match="is cancelled"):
        queue_ops.cancel(ws, a.id)
    with pytest.raises(WorkspaceError, match="not queued"):
        queue_ops.move(ws, a.id, 1)
    with pytest.raises(WorkspaceError, match="no such run"):
        queue_ops.cancel(ws, "r9999")
    # a cancelled run that never started is queued again from the start, at the end of the queue
    rec = queue_ops.resume(ws, a.id, start_runner=False)
    assert rec.status == "queued" and not rec.resume and [r.id for r in ws.queue()] == [b.id, a.id]


def test_resume_of_a_started_run_asks_the_worker_to_continue(ws: Workspace, tmp_path: Path) -> None:
    (rec,) = queue_ops.add(ws, write_preset(tmp_path), {}, start_runner=False)
    ws.update(rec.id, status="failed", queue_pos=None, reason="boom")
    ws.run_paths(rec.id).events.write_text(
        protocol.encode(Started(1.0, epochs=3)) + protocol.encode(EpochEnd(2.0, epoch=1, metrics={"val_acc": 0.5}))
    )
    back = queue_ops.resume(ws, rec.id, start_runner=False)
    assert back.resume and back.status == "queued" and back.reason is None and back.queue_pos is not None


def test_pause_flag(ws: Workspace) -> None:
    assert not ws.is_paused()
    queue_ops.pause(ws)
    assert ws.is_paused()
    queue_ops.unpause(ws, start_runner=False)
    assert not ws.is_paused()


def test_live_progress_follows_the_events_file(ws: Workspace, tmp_path: Path) -> None:
    (rec,) = queue_ops.add(ws, write_preset(tmp_path), {}, start_runner=False)
    path = ws.run_paths(rec.id).events
    tracker = live.LiveRuns(ws)
    assert tracker.state(rec.id).epochs_done == 0
    with open(path, "a") as f:
        f.write(protocol.encode(Started(1.0, epochs=3, steps_per_epoch=10)))
        f.write(protocol.encode(EpochEnd(2.0, epoch=1, metrics={"val_acc": 0.4})))
        f.write(protocol.encode(EpochBegin(3.0, epoch=2)))
        f.write('{"type": "batch", "t": 4.0, "epoch": 2, "step": 5, "steps": 10, "metrics": {"loss": 1.0}}\n')
        f.write('{"type": "batch", "t": 5')  # a line being written right now
    prog = live.progress(tracker.poll([rec.id])[rec.id], rec)
    assert (prog["epoch"], prog["epochs"], prog["current_epoch"], prog["step"]) == (1, 3, 2, 5)
    assert prog["best_val_acc"] == 0.4 and prog["fraction"] == pytest.approx(0.5)
    assert tracker.poll([]) == {}


def test_cli_add_ls_move_cancel(ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_preset(tmp_path, '[sweep]\n"train.seed" = [1, 2, 3]\n')
    code, out, _ = run_cli(ws, "queue", "add", str(p), "--set", "train.epochs=2", "--no-runner", capsys=capsys)
    ids = out.split()
    assert code == 0 and ids == ["r0001", "r0002", "r0003"]
    assert run_cli(ws, "queue", "move", "3", "--to", "1", capsys=capsys)[1].strip() == "r0003: now at position 1"
    assert run_cli(ws, "cancel", "r0001", capsys=capsys)[1].startswith("r0001: cancelled")
    code, out, _ = run_cli(ws, "queue", "ls", "--json", capsys=capsys)
    data = json.loads(out)
    assert [(r["position"], r["id"], r["epochs"]) for r in data["runs"]] == [(1, "r0003", 2), (2, "r0002", 2)]
    assert data["paused"] is False and data["runner"] is None
    code, out, _ = run_cli(ws, "queue", "ls", capsys=capsys)
    assert "r0003" in out.splitlines()[1] and "0/2" in out and "no queue runner" in out
    run_cli(ws, "queue", "pause", capsys=capsys)
    assert "queue paused" in run_cli(ws, "queue", "ls", capsys=capsys)[1]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["cancel", "r0042"], "r0042: no such run"),
        (["resume", "banana"], "not a run id"),
        (["queue", "move", "r0001", "--to", "1"], "no such run"),
        (["queue", "add", "/nonexistent/p.toml"], "no such preset file"),
    ],
)
def test_cli_errors_are_one_line_exit_2(
    ws: Workspace, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = run_cli(ws, *argv, capsys=capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


_ADDER = """
import json, sys
from tltui.client import queue_ops
from tltui.core.workspace import Workspace
ws = Workspace(sys.argv[1])
ids = []
for _ in range(25):
    ids += [r.id for r in queue_ops.add(ws, sys.argv[2], {}, start_runner=False)]
print(json.dumps(ids))
"""

_CANCELLER = """
import json, sys, time
from tltui.client import queue_ops
from tltui.core.workspace import Workspace, WorkspaceError
ws = Workspace(sys.argv[1])
cancelled, seen = [], 0
deadline = time.monotonic() + 60
while seen < 500 and time.monotonic() < deadline:
    queue = ws.queue()
    for r in queue[:3]:
        try:
            queue_ops.cancel(ws, r.id)
            cancelled.append(r.id)
        except WorkspaceError:
            pass
    seen = len(ws.list_runs())
print(json.dumps(cancelled))
"""


def test_three_processes_add_cancel_and_list_500_runs_at_once(ws: Workspace, tmp_path: Path) -> None:
    p = write_preset(tmp_path, f'[sweep]\n"train.seed" = {list(range(10))}\n')
    _ = ws.conn  # the registry exists before the race starts
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(ws.root), str(p)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for code in (_ADDER, _ADDER, _CANCELLER)
    ]
    outs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err
    added = json.loads(outs[0][0]) + json.loads(outs[1][0])
    cancelled = json.loads(outs[2][0])
    runs = ws.list_runs()
    assert len(added) == 500 == len(set(added)) == len(runs)
    assert sorted(added) == [r.id for r in runs] and len({r.seq for r in runs}) == 500
    assert len(cancelled) == len(set(cancelled)) > 0
    assert {r.id for r in runs if r.status == "cancelled"} == set(cancelled)
    queued = ws.queue()
    assert {r.id for r in queued} == set(added) - set(cancelled)
    assert len({r.queue_pos for r in queued}) == len(queued)
    assert all(ws.run_paths(r.id).preset.is_file() for r in runs)
    assert runstate.load(ws.run_paths(runs[0].id).events).epochs_done == 0


def test_needs_runner(ws: Workspace, tmp_path: Path) -> None:
    import os

    from tltui.runner import supervisor

    assert not queue_ops.needs_runner(ws)
    (rec,) = queue_ops.add(ws, write_preset(tmp_path), {}, start_runner=False)
    assert queue_ops.needs_runner(ws)
    queue_ops.pause(ws)
    assert not queue_ops.needs_runner(ws)
    supervisor.record_started(ws, rec.id, os.getpid(), [])  # this process supervises it
    assert not queue_ops.needs_runner(ws)
    ws.update(rec.id, owner_pid=None)  # its supervisor is gone
    assert queue_ops.needs_runner(ws)


def test_a_copied_workspace_does_not_take_the_originals_runner_for_its_own(ws: Workspace, tmp_path: Path) -> None:
    """``cp -r ws ws2`` while ws's runner is alive: ws2's runner.json names a live pid, but no runner holds ws2's
    lock; ws2 gets a runner of its own (else a run resumed there would wait for ever)."""
    import shutil

    theirs = queue_ops.ensure_runner(ws)
    try:
        copy = Workspace(shutil.copytree(ws.root, tmp_path / "ws2"))
        assert json.loads(copy.runner_info.read_text())["pid"] == theirs  # a live pid, of another workspace
        assert queue_ops.runner_status(copy) is None
        ours = queue_ops.ensure_runner(copy)
        try:
            assert ours != theirs
            assert queue_ops.runner_status(copy)["workspace"] == str(copy.root)  # type: ignore[index]
            assert queue_ops.runner_status(ws)["pid"] == theirs  # type: ignore[index]
        finally:
            queue_ops.stop_runner(copy)
            copy.close()
    finally:
        queue_ops.stop_runner(ws)
