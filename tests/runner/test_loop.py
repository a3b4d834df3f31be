"""The detached queue runner with the scripted fake worker: order, slots, cancel, crashes, adoption, resume.

Each test starts real runner processes (``python -m tltui.runner.loop``) and fake
workers; every wait has a timeout so a bug fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import helpers
from tests.helpers import SWEEP2, finished, script, write_preset
from tltui.client import queue_ops
from tltui.core import protocol, runstate
from tltui.core.protocol import EpochEnd, Started
from tltui.core.workspace import RunRecord, Workspace
from tltui.runner import supervisor

TIMEOUT = 30.0


def wait_for(pred: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    return helpers.wait_for(pred, what, timeout, every=0.05)


def status(ws: Workspace, rid: str) -> str:
    return ws.get(rid).status


def epochs_done(ws: Workspace, rid: str) -> int:
    return runstate.load(ws.run_paths(rid).events).epochs_done


def events(ws: Workspace, rid: str) -> list[protocol.Event]:
    return protocol.read_events(ws.run_paths(rid).events)


@pytest.fixture
def env(fake_worker_env: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.1")
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "20")
    monkeypatch.delenv("TLTUI_FAKE_GPUS", raising=False)


@pytest.fixture
def qws(ws: Workspace, env: None) -> Iterator[Workspace]:
    """A workspace whose runner and workers are all gone after the test."""
    yield ws
    helpers.stop_runner_and_workers(ws)


def add(ws: Workspace, preset: Path, start_runner: bool = True, **overrides: Any) -> list[RunRecord]:
    return queue_ops.add(ws, preset, overrides, start_runner=start_runner)


# ---------------------------------------------------------------------------- order, pause, move


def test_queue_runs_in_order_after_move_and_pause(qws: Workspace, tmp_path: Path) -> None:
    ws = qws
    preset = write_preset(tmp_path, epochs=1)
    queue_ops.pause(ws)
    ids = [add(ws, preset)[0].id for _ in range(3)]
    queue_ops.move(ws, ids[2], 1)
    assert [r.id for r in ws.queue()] == [ids[2], ids[0], ids[1]]
    pid = queue_ops.ensure_runner(ws)
    time.sleep(1.0)  # a few runner ticks: a paused queue starts nothing
    assert [status(ws, r) for r in ids] == ["queued"] * 3
    queue_ops.unpause(ws)
    assert queue_ops.ensure_runner(ws) == pid
    wait_for(lambda: finished(ws, *ids), "all runs to finish")
    recs = sorted((ws.get(r) for r in ids), key=lambda r: r.started or 0)
    assert [r.id for r in recs] == [ids[2], ids[0], ids[1]]
    assert all(r.status == "completed" and r.epoch == 1 and r.best_val_acc for r in recs)
    # one CPU slot: each run started after the previous one ended
    assert recs[1].started >= recs[0].finished and recs[2].started >= recs[1].finished


def test_cli_with_a_relative_workspace_queues_and_the_runner_finds_the_run(
    env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make run` uses `--workspace .tltui-demo`: the detached runner (which runs in another
    directory) must open the same workspace, not a new one inside it."""
    preset = write_preset(tmp_path, epochs=1)
    monkeypatch.chdir(tmp_path)
    res = subprocess.run(
        [sys.executable, "-m", "tltui", "--workspace", "rel-ws", "queue", "add", str(preset)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    ws = Workspace(tmp_path / "rel-ws")
    try:
        rid = ws.list_runs()[0].id
        wait_for(lambda: finished(ws, rid), "the run to finish")
        assert ws.get(rid).status == "completed"
        assert not (tmp_path / "rel-ws" / "rel-ws").exists()
    finally:
        queue_ops.stop_runner(ws)
        ws.close()


# ---------------------------------------------------------------------------- GPU slots


def test_gpu_slots_with_fake_inventory(qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = qws
    monkeypatch.setenv("TLTUI_FAKE_GPUS", "2")
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.4")
    preset = write_preset(tmp_path, epochs=2)
    queue_ops.pause(ws)
    a = add(ws, preset, **{"train.gpus": 1})[0].id
    b = add(ws, preset, **{"train.gpus": 2})[0].id
    c = add(ws, preset, **{"train.gpus": 0})[0].id
    d = add(ws, preset)[0].id  # train.gpus unset: one GPU when there are GPUs
    too_many = add(ws, preset, **{"train.gpus": 3, "data.batch_size": 30})[0].id  # a batch 3 GPUs can share
    queue_ops.unpause(ws)
    wait_for(lambda: finished(ws, a, b, c, d, too_many), "all runs to finish")
    ra, rb, rc, rd, rx = (ws.get(r) for r in (a, b, c, d, too_many))
    assert (ra.gpus, rb.gpus, rc.gpus, rd.gpus) == ([0], [0, 1], [], [0])
    assert [r.status for r in (ra, rb, rc, rd)] == ["completed"] * 4
    # the CPU run did not wait for GPUs; the 1-GPU run behind the 2-GPU run did not jump it
    assert rc.started < ra.finished
    assert rd.started >= rb.started
    assert rb.started >= ra.finished
    assert rx.status == "failed" and "train.gpus = 3" in (rx.reason or "") and "2 GPUs" in (rx.reason or "")
    started = {r: next(e for e in events(ws, r) if isinstance(e, Started)) for r in (a, b, c)}
    assert started[a].versions["CUDA_VISIBLE_DEVICES"] == "0"
    assert started[b].versions["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert started[c].versions["CUDA_VISIBLE_DEVICES"] == "-1"


def test_gpu_busy_with_another_process_is_skipped(
    qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = qws
    monkeypatch.setenv("TLTUI_FAKE_GPUS", json.dumps([{"util": 95}, {"mem_used": 1 << 30}]))
    rid = add(ws, write_preset(tmp_path, epochs=1))[0].id
    wait_for(lambda: finished(ws, rid), "the run to finish")
    assert ws.get(rid).gpus == [1]


# ---------------------------------------------------------------------------- cancel


def test_cancel_queued_needs_no_runner(qws: Workspace, tmp_path: Path) -> None:
    ws = qws
    rid = add(ws, write_preset(tmp_path), start_runner=False)[0].id
    rec = queue_ops.cancel(ws, rid)
    assert rec.status == "cancelled" and rec.queue_pos is None
    assert ws.queue() == [] and queue_ops.runner_status(ws) is None


def test_cancel_running_keeps_checkpoints(qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = qws
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.3")
    rid, nxt = (r.id for r in add(ws, write_preset(tmp_path, epochs=50, extra=SWEEP2)))
    wait_for(lambda: epochs_done(ws, rid) >= 1, "epoch 1")
    assert queue_ops.cancel(ws, rid).cancel_requested
    wait_for(lambda: finished(ws, rid), "the cancelled run to end")
    rec = ws.get(rid)
    assert rec.status == "cancelled" and not rec.cancel_requested
    assert list(ws.run_paths(rid).checkpoints.glob("*.keras"))
    wait_for(lambda: status(ws, nxt) == "running", "the next run to start")
    queue_ops.cancel(ws, nxt)
    wait_for(lambda: finished(ws, nxt), "the second run to end")


def test_cancel_kills_a_worker_that_ignores_sigterm(
    qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = qws
    monkeypatch.setenv("TLTUI_RUNNER_CANCEL_GRACE", "0.5")
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.3")
    queue_ops.pause(ws)
    rid = add(ws, write_preset(tmp_path, epochs=50))[0].id
    script(ws, rid, ignore_term=True)
    queue_ops.unpause(ws)
    wait_for(lambda: epochs_done(ws, rid) >= 1, "epoch 1")
    queue_ops.cancel(ws, rid)
    wait_for(lambda: finished(ws, rid), "the run to be killed")
    rec = ws.get(rid)
    assert rec.status == "cancelled" and rec.reason and "cancelled after epoch" in rec.reason


# ---------------------------------------------------------------------------- crashes


def test_sigkill_of_worker_fails_the_run_and_the_queue_goes_on(
    qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = qws
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.3")
    first, second = (r.id for r in add(ws, write_preset(tmp_path, epochs=30, extra=SWEEP2)))
    wait_for(lambda: epochs_done(ws, first) >= 1, "epoch 1")
    os.kill(ws.get(first).pid, signal.SIGKILL)
    wait_for(lambda: finished(ws, first), "the killed run to be recorded")
    rec = ws.get(first)
    assert rec.status == "failed"
    assert "SIGKILL" in rec.reason and f"after epoch {rec.epoch}" in rec.reason and rec.epoch >= 1
    wait_for(lambda: status(ws, second) == "running", "the next run to start")


def test_crashing_worker_reports_exit_code_and_log_tail(qws: Workspace, tmp_path: Path) -> None:
    ws = qws
    queue_ops.pause(ws)
    rid = add(ws, write_preset(tmp_path, epochs=4))[0].id
    script(ws, rid, crash_at=2, exit_code=7)
    queue_ops.unpause(ws)
    wait_for(lambda: finished(ws, rid), "the crash to be recorded")
    rec = ws.get(rid)
    assert rec.status == "failed" and rec.epoch == 1
    assert "exited with code 7 after epoch 1" in rec.reason and "fake crash in epoch 2" in rec.reason


def test_runner_killed_new_runner_adopts_running_worker(
    qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = qws
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.3")
    rid = add(ws, write_preset(tmp_path, epochs=6))[0].id
    wait_for(lambda: epochs_done(ws, rid) >= 1, "epoch 1")
    old = queue_ops.runner_status(ws)["pid"]
    worker = ws.get(rid)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: queue_ops.runner_status(ws) is None, "the runner to die")
    assert supervisor.is_alive(worker.pid, worker.pid_start), "the worker must survive its runner"
    new = queue_ops.ensure_runner(ws)
    assert new != old
    wait_for(lambda: ws.get(rid).owner_pid == new, "the new runner to adopt the run")
    wait_for(lambda: finished(ws, rid), "the adopted run to finish")
    rec = ws.get(rid)
    assert rec.status == "completed" and rec.epoch == 6 and rec.best_val_acc is not None


def test_runner_sigterm_leaves_workers_and_sighup_is_ignored(
    qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = qws
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.3")
    rid = add(ws, write_preset(tmp_path, epochs=5))[0].id
    wait_for(lambda: status(ws, rid) == "running" and ws.get(rid).pid, "the run to start")
    pid = queue_ops.runner_status(ws)["pid"]
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.3)
    assert queue_ops.runner_status(ws)["pid"] == pid
    assert queue_ops.stop_runner(ws)
    assert queue_ops.runner_status(ws) is None
    worker = ws.get(rid)
    assert worker.status == "running" and supervisor.is_alive(worker.pid, worker.pid_start)
    queue_ops.ensure_runner(ws)
    wait_for(lambda: finished(ws, rid), "the adopted run to finish")
    assert ws.get(rid).status == "completed"


def test_worker_dead_while_no_runner_is_interrupted_then_resumes(
    qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = qws
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.3")
    rid = add(ws, write_preset(tmp_path, epochs=5))[0].id
    wait_for(lambda: epochs_done(ws, rid) >= 2, "epoch 2")
    os.kill(queue_ops.runner_status(ws)["pid"], signal.SIGKILL)
    wait_for(lambda: queue_ops.runner_status(ws) is None, "the runner to die")
    worker = ws.get(rid)
    os.killpg(worker.pid, signal.SIGKILL)
    wait_for(lambda: not supervisor.is_alive(worker.pid, worker.pid_start), "the worker to die")
    queue_ops.ensure_runner(ws)
    wait_for(lambda: finished(ws, rid), "the dead run to be recorded")
    rec = ws.get(rid)
    assert rec.status == "interrupted" and rec.epoch >= 2
    resumed = queue_ops.resume(ws, rid)
    assert resumed.resume and resumed.status in ("queued", "running")
    wait_for(lambda: finished(ws, rid), "the resumed run to finish")
    rec = ws.get(rid)
    assert rec.status == "completed" and rec.epoch == 5
    evs = events(ws, rid)
    starts = [e for e in evs if isinstance(e, Started)]
    assert len(starts) == 2 and starts[1].initial_epoch >= 2
    st = runstate.load(ws.run_paths(rid).events)
    assert sorted(st.history) == [1, 2, 3, 4, 5]
    # the resumed worker trained only the epochs that were missing
    assert [e.epoch for e in evs[evs.index(starts[1]) :] if isinstance(e, EpochEnd)] == list(
        range(starts[1].initial_epoch + 1, 6)
    )


def test_resume_after_crash_ends_with_configured_distinct_epochs(qws: Workspace, tmp_path: Path) -> None:
    ws = qws
    queue_ops.pause(ws)
    rid = add(ws, write_preset(tmp_path, epochs=4))[0].id
    script(ws, rid, crash_at=3)
    queue_ops.unpause(ws)
    wait_for(lambda: finished(ws, rid), "the crash")
    assert ws.get(rid).status == "failed"
    script(ws, rid)
    queue_ops.resume(ws, rid)
    wait_for(lambda: finished(ws, rid), "the resumed run")
    assert ws.get(rid).status == "completed"
    ends = [e.epoch for e in events(ws, rid) if isinstance(e, EpochEnd)]
    assert ends == [1, 2, 3, 4]


# ---------------------------------------------------------------------------- the runner process


def test_only_one_runner_per_workspace(qws: Workspace) -> None:
    ws = qws
    pid = queue_ops.ensure_runner(ws)
    second = subprocess.run(
        [sys.executable, "-m", "tltui.runner", "--workspace", str(ws.root), "--lock-wait", "0.2"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert second.returncode == 0 and "another queue runner" in second.stdout
    assert queue_ops.runner_status(ws)["pid"] == pid
    # many clients asking at once still get one runner
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from tltui.client import queue_ops; from tltui.core.workspace import Workspace;"
                " print(queue_ops.ensure_runner(Workspace(sys.argv[1])))",
                str(ws.root),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    assert {int(p.communicate(timeout=TIMEOUT)[0]) for p in procs} == {pid}


def test_runner_from_scratch_when_the_first_start_races(qws: Workspace) -> None:
    ws = qws
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from tltui.client import queue_ops; from tltui.core.workspace import Workspace;"
                " print(queue_ops.ensure_runner(Workspace(sys.argv[1])))",
                str(ws.root),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    pids = {int(p.communicate(timeout=TIMEOUT)[0]) for p in procs}
    assert len(pids) == 1 and queue_ops.runner_status(ws)["pid"] in pids


def test_runner_exits_when_idle(qws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = qws
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "0.5")
    queue_ops.ensure_runner(ws)
    wait_for(lambda: queue_ops.runner_status(ws) is None, "the idle runner to exit")
    assert not ws.runner_info.exists()
    assert "idle" in ws.runner_log.read_text()


def test_cancel_racing_starts_never_loses_or_repeats_a_run(
    qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = qws
    monkeypatch.setenv("TLTUI_RUNNER_CPU_SLOTS", "2")
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.05")
    recs = add(ws, write_preset(tmp_path, epochs=1, extra=f'[sweep]\n"train.seed" = {list(range(12))}\n'))
    for r in recs[::2]:
        queue_ops.cancel(ws, r.id)
    ids = [r.id for r in recs]
    wait_for(lambda: finished(ws, *ids), "every run to end")
    for rid in ids:
        starts = [e for e in events(ws, rid) if isinstance(e, Started)]
        assert len(starts) <= 1, f"{rid} started twice"
        rec = ws.get(rid)
        assert rec.status in ("completed", "cancelled")
        assert (rec.status == "completed") == bool(starts and epochs_done(ws, rid) == 1)
    assert all(ws.get(r.id).status == "completed" for r in recs[1::2])


def test_cancel_while_no_runner_watches_the_worker(
    qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = qws
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.3")
    rid = add(ws, write_preset(tmp_path, epochs=50))[0].id
    wait_for(lambda: epochs_done(ws, rid) >= 1, "epoch 1")
    os.kill(queue_ops.runner_status(ws)["pid"], signal.SIGKILL)
    wait_for(lambda: queue_ops.runner_status(ws) is None, "the runner to die")
    queue_ops.cancel(ws, rid)  # starts a runner, which adopts the worker and stops it
    wait_for(lambda: finished(ws, rid), "the cancel to land")
    assert ws.get(rid).status == "cancelled"


def test_cancel_of_a_foreground_run_signals_its_worker(qws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tltui run` supervises its own worker: cancel signals the worker directly, no runner involved."""
    ws = qws
    (rec,) = ws.create_runs([("fg", "[train]\nepochs = 50\n", {})], preset_name="fg", queued=False)
    wp = supervisor.spawn_worker(ws, rec.id, gpus=[], env={"TLTUI_FAKE_EPOCH_SECONDS": "0.3"})
    supervisor.record_started(ws, rec.id, wp.pid, [])
    wait_for(lambda: epochs_done(ws, rec.id) >= 1, "epoch 1")
    queue_ops.cancel(ws, rec.id)
    assert wp.proc.wait(timeout=TIMEOUT) == 0
    wp.close()
    assert supervisor.record_exit(ws, rec.id, 0) == "cancelled"
    assert queue_ops.runner_status(ws) is None


def test_adding_while_the_runner_retires_still_runs(
    qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner with a tiny idle timeout retires and comes back again and again while
    clients add runs: every run still completes."""
    ws = qws
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "0.05")
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0")
    preset = write_preset(tmp_path, epochs=1)
    ids = []
    for _ in range(6):
        ids += [r.id for r in add(ws, preset)]
        time.sleep(0.15)
    wait_for(lambda: finished(ws, *ids), "every run to finish")
    assert {ws.get(r).status for r in ids} == {"completed"}


def test_worker_reported_failure_keeps_its_reason(qws: Workspace, tmp_path: Path) -> None:
    ws = qws
    queue_ops.pause(ws)
    rid = add(ws, write_preset(tmp_path, epochs=4))[0].id
    script(ws, rid, nan_at=2)
    queue_ops.unpause(ws)
    wait_for(lambda: finished(ws, rid), "the NaN failure")
    rec = ws.get(rid)
    assert rec.status == "failed" and rec.reason == "loss became NaN in epoch 2: lower train.learning_rate"
    assert rec.epoch == 1


def test_a_worker_that_cannot_start_fails_its_run_and_the_queue_goes_on(
    qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = qws
    monkeypatch.setenv("TLTUI_WORKER_CMD", json.dumps([str(tmp_path / "no-such-python")]))
    ids = [r.id for r in add(ws, write_preset(tmp_path, epochs=1, extra=SWEEP2))]
    wait_for(lambda: finished(ws, *ids), "both runs to fail")
    for rid in ids:
        rec = ws.get(rid)
        assert rec.status == "failed" and "could not start the worker" in rec.reason and "no-such-python" in rec.reason
