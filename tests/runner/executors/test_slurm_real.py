"""The Slurm executor against a real scheduler: a one-node cluster (``tests/slurm_cluster.py``)
runs the real TensorFlow worker on tiny data through ``sbatch``.

Skipped, saying why, where Slurm is not installed or not root; ``TLTUI_REQUIRE_SLURM=1``
(set by ``.ci/run``, which installs it) makes that a failure instead.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import helpers
from tests.slurm_cluster import ClusterError, SlurmCluster, missing
from tltui.client import queue_ops
from tltui.core import cluster_jobs, demo, protocol, runstate
from tltui.core.protocol import Started
from tltui.core.workspace import Workspace

pytest.importorskip("submitit")

pytestmark = [pytest.mark.slurm, pytest.mark.e2e, pytest.mark.xdist_group("slurm")]

TIMEOUT = 240.0
POLL = 2.0  # [slurm] poll_interval of these tests
GRACE = 4.0  # [slurm] scheduler_grace

wait_for = functools.partial(helpers.wait_for, timeout=TIMEOUT, every=0.1)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    why = missing()
    if why:
        if os.environ.get("TLTUI_REQUIRE_SLURM") == "1":
            pytest.fail(f"TLTUI_REQUIRE_SLURM=1 but {why}")
        pytest.skip(why)
    c = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
    except ClusterError as e:
        c.stop()
        if os.environ.get("TLTUI_REQUIRE_SLURM") == "1":
            pytest.fail(f"the one-node Slurm cluster did not start: {e}")
        pytest.skip(f"the one-node Slurm cluster did not start: {e}")
    yield c
    c.stop()


@pytest.fixture
def sws(ws: Workspace, cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A workspace whose runs go to the cluster; ``squeue`` calls are logged (the poll interval)."""
    cluster.wait_idle()
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    monkeypatch.delenv("TLTUI_WORKER_CMD", raising=False)
    monkeypatch.delenv("TLTUI_SLURM_CLUSTER", raising=False)
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "30")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    shim = tmp_path / "bin"
    shim.mkdir()
    real = subprocess.run(["which", "squeue"], capture_output=True, text=True).stdout.strip()
    (shim / "squeue").write_text(
        f'#!/bin/sh\necho "$(date +%s.%N) $*" >> {tmp_path / "squeue.log"}\nexec {real} "$@"\n'
    )
    (shim / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    (ws.root / "settings.toml").write_text(
        f"[slurm]\npoll_interval = {POLL}\ncpus_per_task = 1\ntime_limit = 10\nscheduler_grace = {GRACE}\n"
    )
    yield ws
    queue_ops.stop_runner(ws)
    with_jobs = cluster.run("squeue", "-h", "-o", "%i").split()
    if with_jobs:
        cluster.run("scancel", *with_jobs)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo.generate(
        tmp_path_factory.mktemp("data") / "shapes", per_class=8, size=16, shapes=("circle", "square", "cross")
    )


def preset(root: Path, shapes: Path, epochs: int, sweep: str = "", name: str = "q") -> Path:
    p = root / f"{name}.toml"
    p.write_text(
        f'name = "{name}"\n[data]\nsource = "folder:{shapes}"\nimage_size = [16, 16]\nbatch_size = 8\n'
        f'validation_fraction = 0.25\n[model]\nbackbone = "tiny_cnn"\nweights = "none"\ndropout = 0.5\n'
        f"[train]\nepochs = {epochs}\nsteps_per_epoch = 5\ncheckpoint_every = 0\nlearning_rate = 0.01\n{sweep}"
    )
    return p


def fault(ws: Workspace, rid: str, spec: str) -> None:
    (ws.run_paths(rid).dir / "fault.json").write_text(json.dumps({"fault": spec}))


def job_id(ws: Workspace, rid: str) -> str:
    return json.loads((ws.run_paths(rid).dir / "slurm_job.json").read_text())["job_id"]


def starts(ws: Workspace, rid: str) -> list[int]:
    return [e.initial_epoch for e in protocol.read_events(ws.run_paths(rid).events) if isinstance(e, Started)]


def metrics(ws: Workspace, rid: str) -> list[dict]:
    hist = runstate.load(ws.run_paths(rid).events).history_list()
    return [{k: v for k, v in h.items() if k not in ("t", "epoch_seconds")} for h in hist]


def model_weights(path: Path) -> list:
    import keras

    return [v.numpy() for v in keras.saving.load_model(path, compile=False).weights]


def tltui(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "tltui", "--workspace", str(ws.root), *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out


def squeue_polls(log: Path, jid: str) -> list[float]:
    return [float(line.split()[0]) for line in log.read_text().splitlines() if f"--jobs={jid}" in line]


def test_sweep_through_sbatch_live_and_a_requeued_job_resumes_exactly(
    sws: Workspace, cluster: SlurmCluster, shapes: Path, tmp_path: Path
) -> None:
    """Two runs, two sbatch jobs, the real worker. One is requeued by the scheduler (`scontrol
    requeue`: its processes are killed, its script restarts) in epoch 3: it continues from epoch 2,
    and its history and weights are those of the other run, which nobody interrupted (the sweep's
    axis, early-stopping patience beyond the epochs, does not change the training)."""
    import numpy as np

    ws = sws
    sweep = '[sweep]\n"train.early_stopping_patience" = [10, 11]\n'
    a, b = (r.id for r in queue_ops.add(ws, preset(tmp_path, shapes, 4, sweep), executor="slurm", start_runner=False))
    fault(ws, a, "hang@epoch3,batch2")  # waits after epoch 2's backup
    queue_ops.ensure_runner(ws)

    hit = ws.run_paths(a).dir / "fault.hit"
    wait_for(hit.exists, "run a to reach epoch 3")
    # both went through sbatch: the scheduler runs them, and it says so
    jobs = {rid: job_id(ws, rid) for rid in (a, b)}
    names = dict(line.split() for line in cluster.run("squeue", "-h", "-t", "all", "-o", "%i %j").splitlines())
    assert names[jobs[a]] == f"tltui-{a}" and names[jobs[b]] == f"tltui-{b}"
    # curves arrive live: the registry has a's epochs while its job is still running (hung in epoch 3)
    wait_for(lambda: ws.get(a).epoch == 2, "the runner to record run a's epoch 2")
    assert ws.get(a).status == "running" and [h["epoch"] for h in metrics(ws, a)] == [1, 2]
    assert cluster.run("squeue", "-h", "-j", jobs[a], "-o", "%T").strip() == "RUNNING"

    (ws.run_paths(a).dir / "fault.json").unlink()
    cluster.run("scontrol", "requeue", jobs[a])
    wait_for(lambda: helpers.finished(ws, a, b), "both runs to finish")
    for rid in (a, b):
        assert ws.get(rid).status == "completed", (ws.get(rid).reason, ws.run_paths(rid).log.read_text()[-2000:])
        assert ws.get(rid).epoch == 4
    assert job_id(ws, a) == jobs[a]  # the same job, restarted by Slurm
    assert "SLURM_RESTART_COUNT=1" in ws.run_paths(a).log.read_text()
    # what `runs show` says of where it ran: the job, its restart by Slurm, the node
    history = cluster_jobs.history(ws.run_paths(a).dir)
    assert [(j.job_id, j.event) for j in history] == [(jobs[a], "submitted"), (jobs[a], "restarted")]
    assert ws.get(a).host and history[-1].accounting == f"sacct -j {jobs[a]}"
    assert starts(ws, b) == [0] and starts(ws, a) == [0, 2]
    assert metrics(ws, a) == metrics(ws, b)  # every metric, float for float
    assert len({h["loss"] for h in metrics(ws, a)}) == 4
    for x, y in zip(model_weights(ws.run_paths(a).model), model_weights(ws.run_paths(b).model), strict=True):
        np.testing.assert_array_equal(x, y)

    # the scheduler was asked about each job no more often than poll_interval (once a second
    # after the worker's `finished` event)
    fin_b = runstate.load(ws.run_paths(b).events).finished
    polls = squeue_polls(tmp_path / "squeue.log", jobs[b])
    assert len(polls) >= 2
    gaps = [(t1, t1 - t0) for t0, t1 in zip(polls, polls[1:])]
    assert all(g >= 0.9 for _, g in gaps), gaps
    assert all(g >= POLL - 0.1 for t, g in gaps if t < fin_b.t), gaps


def test_cancel_is_scancel_and_a_lost_scheduler_interrupts_then_resume_continues(
    sws: Workspace, cluster: SlurmCluster, shapes: Path, tmp_path: Path
) -> None:
    ws = sws
    (long,) = queue_ops.add(ws, preset(tmp_path, shapes, 200, name="long"), executor="slurm", start_runner=False)
    (short,) = queue_ops.add(ws, preset(tmp_path, shapes, 4, name="short"), executor="slurm", start_runner=False)
    fault(ws, short.id, "hang@epoch3,batch2")
    queue_ops.ensure_runner(ws)

    # `tltui cancel`: scancel --signal=TERM; the worker saves and ends cancelled, the job ends
    wait_for(lambda: ws.get(long.id).epoch >= 1, "the long run's first epoch")
    jid = job_id(ws, long.id)
    tltui(ws, "cancel", long.id)
    wait_for(lambda: helpers.finished(ws, long.id), "the cancel")
    rec = ws.get(long.id)
    assert rec.status == "cancelled" and "stopped by SIGTERM" in rec.reason, rec.reason
    wait_for(
        lambda: cluster.run("squeue", "-h", "-t", "all", "-j", jid, "-o", "%T").strip() == "COMPLETED",
        "the cancelled job to end",
    )

    # the scheduler goes away (daemons stopped, the node's job processes killed): interrupted
    wait_for((ws.run_paths(short.id).dir / "fault.hit").exists, "the short run to reach epoch 3")
    old = job_id(ws, short.id)
    cluster.stop_daemons()
    cluster.kill_jobs()
    wait_for(lambda: helpers.finished(ws, short.id), "the run to be given up")
    rec = ws.get(short.id)
    assert rec.status == "interrupted" and rec.epoch == 2, (rec.status, rec.reason)
    assert "no answer from the scheduler" in ws.run_paths(short.id).log.read_text()

    # back: `tltui resume` submits it again and it continues from epoch 2 (the old job, if the
    # controller still counts it as running, is cancelled first)
    cluster.start(idle=False)
    (ws.run_paths(short.id).dir / "fault.json").unlink()
    tltui(ws, "resume", short.id)
    wait_for(lambda: helpers.finished(ws, short.id), "the resumed run")
    rec = ws.get(short.id)
    assert rec.status == "completed", (rec.reason, ws.run_paths(short.id).log.read_text()[-2000:])
    assert job_id(ws, short.id) != old
    assert starts(ws, short.id) == [0, 2]
    assert [h["epoch"] for h in metrics(ws, short.id)] == [1, 2, 3, 4]


def test_time_limit_requeues_with_or_without_an_epoch_then_fails_with_the_budget_spent(
    sws: Workspace, cluster: SlurmCluster, shapes: Path, tmp_path: Path
) -> None:
    """The time limit's warning stops the worker and the job requeues itself, resuming: first in its
    first epoch (nothing to resume from: the budget is used all the same), then after an epoch (it
    resumes after it); the third time (max_requeues = 2) the run fails, saying how it ended.

    The warning is USR2 to the job's steps, what Slurm sends `signal_delay` s before the limit; the
    test sends it (`scancel --signal=USR2`) once the job is where it wants it, so that nothing
    depends on how fast this machine starts TensorFlow. The 10-min limit is far off (submitit, and
    tltui, count any USR2 in a limit that short as the limit's warning)."""
    ws = sws
    (ws.root / "settings.toml").write_text(
        f"[slurm]\npoll_interval = {POLL}\ncpus_per_task = 1\ntime_limit = 10\nsignal_delay = 10\nmax_requeues = 2\n"
    )
    (rec,) = queue_ops.add(ws, preset(tmp_path, shapes, 100000, name="slow"), executor="slurm", start_runner=False)
    rid = rec.id
    run = ws.run_paths(rid).dir
    hit = run / "fault.hit"
    fault(ws, rid, "hang@epoch1,batch1")  # the first worker hangs in its first epoch
    queue_ops.ensure_runner(ws)
    wait_for(hit.exists, "the first worker to hang in its first epoch")
    jid = job_id(ws, rid)

    def warn() -> None:
        cluster.run("scancel", "--signal=USR2", jid)

    fault(ws, rid, "hang@epoch2,batch1")  # the next one, after an epoch
    hit.unlink()
    warn()  # the hung worker does not stop: killed after signal_delay / 2; requeue 1, from the start
    wait_for(hit.exists, "the requeued job's worker to hang after its first epoch")
    (run / "fault.json").unlink()
    warn()  # requeue 2, after epoch 1
    wait_for(
        lambda: len(starts(ws, rid)) == 3 and max(helpers.epochs_in_file(ws, rid)) > 1,
        "the third job's worker to complete an epoch",
    )
    warn()  # the budget is spent
    wait_for(lambda: helpers.finished(ws, rid), "the time limit to end the run")

    rec = ws.get(rid)
    assert rec.status == "failed", (rec.status, rec.reason)
    assert rec.reason == (
        f"Slurm time limit of 10 min reached again after 2 requeue(s) (max_requeues = 2), after epoch {rec.epoch}: "
        f"raise [slurm] time_limit or max_requeues, then `tltui resume {rid}` (checkpoints kept)"
    )
    assert starts(ws, rid) == [0, 0, 1]  # nothing to resume from after the first job; after epoch 1 after the second
    assert job_id(ws, rid) == jid  # one job, requeued by itself
    log = ws.run_paths(rid).log.read_text()
    assert "time limit: requeue 1 of 2, resuming after epoch 0" in log
    assert "time limit: requeue 2 of 2, resuming after epoch 1" in log
    # the last worker was stopped by the job's SIGTERM (the warning itself does not kill it)
    ends = [e for e in protocol.read_events(ws.run_paths(rid).events) if isinstance(e, protocol.Finished)]
    assert [e.status for e in ends] == ["cancelled", "failed"] and "stopped by SIGTERM" in ends[0].reason, ends
    assert sorted(set(helpers.epochs_in_file(ws, rid))) == list(range(1, rec.epoch + 1))  # no hole


def test_a_job_waiting_on_a_drained_node_is_pending_with_the_reason_and_its_cancel_says_so(
    sws: Workspace, cluster: SlurmCluster, tmp_path: Path, fake_worker_env: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the only node is drained, the run is `pending (REASON)` with squeue's reason and no node (not
    `running`); a cancel says the job never started, and so does the run's reason. Asking this GPU-less cluster
    for a GPU is warned of. (The scripted fake worker: it never runs.)"""
    from tltui.commands.control import cancel_message
    from tltui.core.status import shown
    from tltui.runner.executors.slurm import SlurmExecutor

    ws = sws
    monkeypatch.setenv("TLTUI_WORKER_CMD", json.dumps(fake_worker_env))  # sws runs the real worker
    assert any("no node has a GPU" in w for w in SlurmExecutor(ws).capacity_warnings(1))
    cluster.run("scontrol", "update", "nodename=localhost", "state=drain", "reason=tltui-test")
    try:
        rid = queue_ops.add(ws, helpers.write_preset(tmp_path, epochs=2), executor="slurm")[0].id
        wait_for(lambda: ws.get(rid).sched_state == "pending" and ws.get(rid).sched_reason, "squeue's pending reason")
        rec = ws.get(rid)
        assert shown(rec) == f"pending ({rec.sched_reason})" and rec.host is None, shown(rec)
        message = cancel_message(queue_ops.cancel(ws, rid))
        assert "waiting in the scheduler's queue" in message and "checkpoint" not in message, message
        wait_for(lambda: helpers.finished(ws, rid), "the pending job's cancel to land")
        assert ws.get(rid).status == "cancelled" and "never started" in (ws.get(rid).reason or "")
    finally:
        cluster.run("scontrol", "update", "nodename=localhost", "state=resume")


def test_a_sweep_as_one_job_array_with_a_limit_of_one(
    sws: Workspace, cluster: SlurmCluster, shapes: Path, tmp_path: Path
) -> None:
    """``[cluster.slurm] array_limit = 1``: the sweep is one ``sbatch --array=0-2%1``; the later tasks wait
    `pending (JobArrayTaskLimit)` while the first runs; a cancel takes its own task only (``scancel
    ARRAYJOBID_2``); the others complete, each epoch once."""
    ws = sws
    sweep = '[sweep]\n"train.early_stopping_patience" = [10, 11, 12]\n[cluster.slurm]\narray_limit = 1\n'
    a, b, c = (
        r.id for r in queue_ops.add(ws, preset(tmp_path, shapes, 2, sweep), executor="slurm", start_runner=False)
    )
    queue_ops.ensure_runner(ws)
    wait_for(lambda: all(ws.get(r).sched_reason == "JobArrayTaskLimit" for r in (b, c)), "the later tasks to wait")
    assert ws.get(b).sched_state == "pending" and ws.get(a).status == "running"
    array = job_id(ws, a).split("_")[0]
    assert [job_id(ws, r) for r in (a, b, c)] == [f"{array}_0", f"{array}_1", f"{array}_2"]
    assert cluster.run("squeue", "-h", "-r", "-j", job_id(ws, b), "-o", "%i %j").split() == [
        f"{array}_1",
        f"tltui-array-{a}",
    ]
    queue_ops.cancel(ws, c)
    wait_for(lambda: helpers.finished(ws, c), "the pending task's cancel")
    assert ws.get(c).status == "cancelled"
    wait_for(lambda: helpers.finished(ws, a, b), "the other runs to finish")
    for rid in (a, b):
        assert ws.get(rid).status == "completed", (ws.get(rid).reason, ws.run_paths(rid).log.read_text()[-2000:])
        assert starts(ws, rid) == [0] and [h["epoch"] for h in metrics(ws, rid)] == [1, 2]
        assert [(j.job_id, j.event) for j in cluster_jobs.history(ws.run_paths(rid).dir)] == [
            (job_id(ws, rid), "submitted")
        ]
    assert starts(ws, c) == []
