"""The runner with a scripted cluster executor, in this process: what a cluster job's lifecycle does to
the runner's own bookkeeping (its selector) and to what the registry says. No scheduler, no worker."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers import write_preset
from tltui.client import queue_ops
from tltui.commands.control import cancel_message
from tltui.commands.queue import queue_rows
from tltui.core.protocol import Event
from tltui.core.settings import RunnerSettings
from tltui.core.status import SchedState, shown
from tltui.core.workspace import RunRecord, Workspace
from tltui.runner.executor import Executor, Job, JobStatus
from tltui.runner.loop import Runner


class ScriptedJob(Job):
    """Like a Ray job: a pipe that wakes the runner, and ``fileno()`` is ``None`` once the job is final."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.pid = None
        self.r, self.w = os.pipe()
        self.now = JobStatus(alive=True)
        self.final = False
        self.closed = False
        self.cancels: list[bool] = []

    def fileno(self) -> int | None:
        return None if self.final or self.closed else self.r

    def events(self) -> list[Event]:
        return []

    def status(self) -> JobStatus:
        self.final = not self.now.alive
        return self.now

    def cancel(self, *, force: bool = False) -> None:
        self.cancels.append(force)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.r)
            os.close(self.w)


class ScriptedCluster(Executor):
    name = "ray"  # a registered cluster name: the runner submits its runs at once
    places_devices = True

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.settings = None
        self.jobs: dict[str, ScriptedJob] = {}

    def submit(self, run_id: str, *, gpus: Sequence[int], resume: bool) -> Job:
        self.jobs[run_id] = ScriptedJob(run_id)
        return self.jobs[run_id]

    def adopt(self, rec: RunRecord) -> Job | None:
        return None


@pytest.fixture
def runner(ws: Workspace) -> Iterator[Runner]:
    r = Runner(ws, RunnerSettings())
    r.executors["ray"] = ScriptedCluster(ws)
    yield r
    r.notifier.close()
    for t in r.jobs.values():
        t.job.close()
    r.sel.close()
    os.close(r._wake_r)
    os.close(r._wake_w)


def cluster(r: Runner) -> ScriptedCluster:
    ex = r.executors["ray"]
    assert isinstance(ex, ScriptedCluster)
    return ex


def queue(ws: Workspace, tmp_path: Path) -> str:
    return queue_ops.add(ws, write_preset(tmp_path), start_runner=False, executor="ray")[0].id


def tick(r: Runner) -> None:
    r._woken = True
    r.wait(0)
    r.step()


def test_a_cluster_job_after_one_that_ended_starts_cleanly(runner: Runner, ws: Workspace, tmp_path: Path) -> None:
    """The first job's descriptor is unregistered before it is closed, though the job no longer names it:
    the next job gets the same number and the runner selects on it (it used to raise "already registered"
    and leave the new job to a second follower)."""
    first = queue(ws, tmp_path)
    tick(runner)
    job = cluster(runner).jobs[first]
    fd = job.r
    job.now = JobStatus(alive=False, returncode=0)
    tick(runner)
    assert first not in runner.jobs and job.closed
    second = queue(ws, tmp_path)
    tick(runner)  # raised KeyError: 'N (FD N) is already registered'
    again = cluster(runner).jobs[second]
    assert again.r == fd  # the number was reused: the case that broke
    assert runner.jobs[second].job is again and runner.sel.get_key(fd).data == second
    again.now = JobStatus(alive=False, returncode=0)
    tick(runner)
    assert not runner.jobs and again.closed
    assert [k.data for k in runner.sel.get_map().values()] == [None]  # only the runner's own wake-up pipe


def test_pending_then_running_on_a_node_is_what_the_registry_says(
    runner: Runner, ws: Workspace, tmp_path: Path
) -> None:
    """A job waiting in the scheduler's queue is `pending (REASON)` with no host (not `running` on the runner's
    machine); once it runs, `running` on the node the scheduler names."""
    rid = queue(ws, tmp_path)
    tick(runner)
    job = cluster(runner).jobs[rid]
    job.now = JobStatus(alive=True, sched_state=SchedState.PENDING, reason="Resources")
    tick(runner)
    rec = ws.get(rid)
    assert rec.status == "running" and rec.host is None
    assert shown(rec) == "pending (Resources)"
    assert queue_rows(ws)[0]["state"] == "pending (Resources)"
    job.now = JobStatus(alive=True, node="node7")
    tick(runner)
    rec = ws.get(rid)
    assert shown(rec) == "running" and rec.host == "node7"


def test_an_unreachable_cluster_shows_at_once_and_counts_from_when_it_stopped_answering(
    runner: Runner, ws: Workspace, tmp_path: Path
) -> None:
    rid = queue(ws, tmp_path)
    tick(runner)
    since = time.time() - 12
    cluster(runner).jobs[rid].now = JobStatus(alive=True, sched_state=SchedState.UNREACHABLE, since=since)
    tick(runner)
    assert shown(ws.get(rid), now=since + 30) == "cluster unreachable (30 s)"
    cluster(runner).jobs[rid].now = JobStatus(alive=True)  # it answers again
    tick(runner)
    assert shown(ws.get(rid)) == "running"


def test_cancel_of_a_pending_job_says_so_and_shows_cancelling_until_confirmed(
    runner: Runner, ws: Workspace, tmp_path: Path
) -> None:
    rid = queue(ws, tmp_path)
    tick(runner)
    job = cluster(runner).jobs[rid]
    job.now = JobStatus(alive=True, sched_state=SchedState.PENDING, reason="Priority")
    tick(runner)
    rec = queue_ops.cancel(ws, rid)
    message = cancel_message(rec)
    assert "waiting in the scheduler's queue (Priority)" in message and "checkpoint" not in message
    tick(runner)
    assert job.cancels == [False]
    assert shown(ws.get(rid)) == "cancelling (pending)"  # the scheduler has not confirmed yet
    job.now = JobStatus(alive=False, returncode=-15)
    tick(runner)
    rec = ws.get(rid)
    assert rec.status == "cancelled" and "never started" in (rec.reason or "")


def test_a_failure_reason_starts_with_what_happened_and_leaves_noise_out(
    runner: Runner, ws: Workspace, tmp_path: Path
) -> None:
    rid = queue(ws, tmp_path)
    tick(runner)
    ws.run_paths(rid).log.write_text(
        "/x/keras/src/trainers/epoch_iterator.py:74: UserWarning: `shuffle=True` was passed\n"
        "  self._warn_shuffle()\n"
        '@@tltui-event {"type": "batch"}\n'
        "epoch 3 done\n"
        "ray: cluster unreachable for 120 s (Ray at http://head:8265; [ray] lost_after)\n"
    )
    cluster(runner).jobs[rid].now = JobStatus(alive=False, lost=True, cause="cluster unreachable for 120 s")
    tick(runner)
    rec = ws.get(rid)
    assert rec.status == "interrupted"
    assert (rec.reason or "").startswith("cluster unreachable for 120 s before the first epoch ended; log: epoch 3")
    assert "@@tltui" not in (rec.reason or "") and "Warning" not in (rec.reason or "")


def test_a_local_run_asked_to_stop_shows_cancelling() -> None:
    rec = RunRecord(id="r0001", seq=1, name="a", status="running", created=0.0, cancel_requested=True)
    assert shown(rec) == "cancelling"
    assert shown(replace(rec, status="cancelled")) == "cancelled"
    assert shown(replace(rec, cancel_requested=False)) == "running"
