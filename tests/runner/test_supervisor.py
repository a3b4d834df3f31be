"""Spawning a worker, telling a live pid from a reused one, and recording how a run ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tltui.core import protocol, runstate
from tltui.core.protocol import EpochEnd, Finished, Started
from tltui.core.workspace import Workspace
from tltui.runner import supervisor


def test_is_alive_checks_pid_and_start_time() -> None:
    me = os.getpid()
    start = supervisor.process_start_time(me)
    assert start is not None
    assert supervisor.is_alive(me, start) and supervisor.is_alive(me, None)
    assert not supervisor.is_alive(me, start + 10)  # the number was reused by another process
    assert not supervisor.is_alive(None, None)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert not supervisor.is_alive(p.pid, None)


def test_zombie_is_not_alive() -> None:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and supervisor.is_alive(p.pid, None):
        time.sleep(0.02)
    assert not supervisor.is_alive(p.pid, None)  # exited, not yet reaped
    p.wait()


def _events(ws: Workspace, rid: str, *evs: protocol.Event) -> None:
    with open(ws.run_paths(rid).events, "a") as f:
        for ev in evs:
            f.write(protocol.encode(ev))


def test_record_exit_reasons(ws: Workspace) -> None:
    a, b, c, d = ws.create_runs([(n, "", {}) for n in "abcd"], preset_name="p")
    for r in (a, b, c, d):
        supervisor.record_started(ws, r.id, os.getpid(), [])
        _events(
            ws,
            r.id,
            Started(1.0, epochs=5),
            EpochEnd(2.0, epoch=1, metrics={"val_acc": 0.5}),
            EpochEnd(3.0, epoch=2, metrics={"val_acc": 0.7}),
        )
    ws.run_paths(a.id).log.write_text("=== header\nTraceback\nMemoryError: boom\n")
    assert supervisor.record_exit(ws, a.id, -signal.SIGKILL) == "failed"
    rec = ws.get(a.id)
    assert rec.reason == "killed by SIGKILL after epoch 2; log: Traceback | MemoryError: boom"
    assert (rec.epoch, rec.best_val_acc, rec.best_epoch, rec.pid) == (2, 0.7, 2, None)
    _events(ws, b.id, Finished(4.0, status="completed", epochs_done=2))
    assert supervisor.record_exit(ws, b.id, 0) == "completed"
    assert supervisor.record_exit(ws, c.id, None, interrupted=True) == "interrupted"
    assert ws.get(c.id).reason.startswith("worker vanished after epoch 2")
    assert supervisor.record_exit(ws, d.id, -signal.SIGKILL, cancelled=True) == "cancelled"


def test_an_earlier_workers_finished_does_not_decide_how_this_one_ended(ws: Workspace) -> None:
    """A run paused at a rung, resumed: a new worker that ends before writing anything is not ``paused`` again
    because the last worker said so; one that wrote its own ``finished`` is as it says."""
    a, b, c = ws.create_runs([(n, "", {}) for n in "abc"], preset_name="p")
    for r in (a, b, c):
        _events(
            ws,
            r.id,
            Started(1.0, epochs=4),
            EpochEnd(2.0, epoch=1, metrics={"val_acc": 0.5}),
            Finished(3.0, status="paused", reason="paused at rung 1 (epoch 1)", epochs_done=1),
        )
        supervisor.record_started(ws, r.id, os.getpid(), [])
    since = {r.id: supervisor.events_size(ws.run_paths(r.id).events) for r in (a, b, c)}
    assert supervisor.record_exit(ws, a.id, -signal.SIGTERM, cancelled=True, since=since[a.id]) == "cancelled"
    assert ws.get(a.id).reason == "cancelled after epoch 1"
    ws.run_paths(b.id).log.write_text("ImportError: no module named foo\n")
    assert supervisor.record_exit(ws, b.id, 1, since=since[b.id]) == "failed"
    assert ws.get(b.id).reason == "worker exited with code 1 after epoch 1; log: ImportError: no module named foo"
    _events(ws, c.id, Started(4.0, epochs=4, initial_epoch=1), Finished(5.0, status="completed", epochs_done=4))
    assert supervisor.record_exit(ws, c.id, 0, since=since[c.id]) == "completed"


def test_record_started_names_this_process_as_owner(ws: Workspace) -> None:
    (r,) = ws.create_runs([("a", "", {})], preset_name="p", queued=False)
    supervisor.record_started(ws, r.id, os.getpid(), [1])
    rec = ws.get(r.id)
    assert (rec.status, rec.owner_pid, rec.gpus) == ("running", os.getpid(), [1])
    assert supervisor.is_alive(rec.owner_pid, rec.owner_start)


def test_spawn_worker_streams_events_and_sets_devices(ws: Workspace, fake_worker_env: list[str]) -> None:
    (r,) = ws.create_runs([("a", "[train]\nepochs = 2\n", {})], preset_name="p", queued=False)
    wp = supervisor.spawn_worker(ws, r.id, gpus=[], env={"TLTUI_FAKE_EPOCH_SECONDS": "0"})
    got: list[protocol.Event] = []
    deadline = time.monotonic() + 30
    while not wp.eof and time.monotonic() < deadline:
        got += wp.read_events()
        time.sleep(0.02)
    assert wp.proc.wait(timeout=30) == 0
    wp.close()
    assert isinstance(got[0], Started) and got[0].versions["CUDA_VISIBLE_DEVICES"] == "-1"
    assert isinstance(got[-1], Finished) and got[-1].status == "completed"
    assert got == protocol.read_events(ws.run_paths(r.id).events)  # the pipe carries what the file records
    assert runstate.load(ws.run_paths(r.id).events).epochs_done == 2
    assert "=== " in ws.run_paths(r.id).log.read_text()
