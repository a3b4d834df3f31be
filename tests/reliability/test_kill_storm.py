"""SIGKILL of a worker at random moments, again and again, then resume until done (scripted fake
worker, so it is fast): no completed epoch's event is lost, no run is left ``running``, and the
history ends with exactly the configured distinct epochs.

The real worker killed in the middle of a checkpoint write:
``test_worker_faults.py::test_kill_9_in_the_middle_of_a_checkpoint_write_then_resume``; a killed
queue runner whose workers are adopted: ``tests/runner/test_loop.py::test_runner_killed_*``.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tltui.core import protocol, runstate
from tltui.core.protocol import EpochEnd, Started
from tltui.core.workspace import Workspace
from tltui.runner import supervisor

EPOCHS = 8


@pytest.mark.parametrize("seed", [1, 2])
def test_random_kills_then_resume_complete_with_each_epoch_once(
    ws: Workspace, fake_worker_env: list[str], monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.15")
    rng = random.Random(seed)
    (rec,) = ws.create_runs(
        [("storm", f"[train]\nepochs = {EPOCHS}\ncheckpoint_every = 2\n", {})], preset_name="storm", queued=False
    )
    events = ws.run_paths(rec.id).events
    kills = 0
    for attempt in range(30):
        wp = supervisor.spawn_worker(ws, rec.id, resume=attempt > 0)
        supervisor.record_started(ws, rec.id, wp.pid)
        assert ws.get(rec.id).status == "running"
        if attempt < 6:
            time.sleep(rng.uniform(0.0, 0.5))
        before = runstate.load(events).epochs_done
        if attempt < 6 and wp.proc.poll() is None:
            os.killpg(wp.pid, signal.SIGKILL)
            kills += 1
        rc = wp.proc.wait(timeout=60)
        wp.close()
        status = supervisor.record_exit(ws, rec.id, rc)
        assert ws.get(rec.id).status == status != "running"
        after = runstate.load(events)
        assert after.epochs_done >= before  # what was on record before the kill still is
        assert ws.get(rec.id).epoch == after.epochs_done
        if status == "completed":
            break
        assert status == "failed" and "SIGKILL" in (ws.get(rec.id).reason or "")
    assert ws.get(rec.id).status == "completed" and kills >= 1
    evs = protocol.read_events(events)
    assert sorted(runstate.load(events).history) == list(range(1, EPOCHS + 1))
    # each attempt continued exactly after the last epoch on record: nothing skipped, nothing repeated
    done = 0
    for ev in evs:
        if isinstance(ev, Started):
            assert ev.initial_epoch == done
        elif isinstance(ev, EpochEnd):
            assert ev.epoch == done + 1
            done = ev.epoch
    assert done == EPOCHS
