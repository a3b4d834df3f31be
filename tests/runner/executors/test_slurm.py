"""The Slurm executor. There is no Slurm here: jobs go through submitit's *local*
executor (same submitit job, pickled task, requeue machinery; a local process
instead of sbatch), with the scripted fake worker; status polling is checked
with a fake clock."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

submitit = pytest.importorskip("submitit")

from tests import helpers  # noqa: E402
from tests.helpers import (  # noqa: E402
    SWEEP2,  # noqa: E402
    epochs_in_file,
    finished,
    script,
    write_preset,
)
from tltui.client import queue_ops
from tltui.core import protocol, runstate  # noqa: E402
from tltui.core.protocol import EpochEnd, Finished, Started  # noqa: E402
from tltui.core.workspace import Workspace  # noqa: E402
from tltui.runner.executor import EXECUTORS  # noqa: E402
from tltui.runner.executors import slurm  # noqa: E402
from tltui.runner.executors.slurm import SlurmExecutor, SlurmJob, TimeLimit  # noqa: E402

TIMEOUT = 60.0


def wait_for(pred: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    return helpers.wait_for(pred, what, timeout, every=0.1)


@pytest.fixture
def sws(ws: Workspace, fake_worker_env: list[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.2")
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "20")
    (ws.root / "settings.toml").write_text(
        '[slurm]\ncluster = "local"\npoll_interval = 1.0\npartition = "gpu"\ntime_limit = 30\n'
    )
    yield ws
    queue_ops.stop_runner(ws)
    for r in ws.list_runs(["running"]):
        pid = runstate.load(ws.run_paths(r.id).events).pid
        if pid:
            with _quiet():
                os.kill(pid, signal.SIGKILL)


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], ProcessLookupError)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- without jobs


def test_registered_lazily_and_settings_become_sbatch_parameters(ws: Workspace, tmp_path: Path) -> None:
    assert "slurm" in EXECUTORS and EXECUTORS["slurm"] is SlurmExecutor
    (ws.root / "settings.toml").write_text(
        '[slurm]\npartition = "gpu"\ntime_limit = 90\ngpus = 1\naccount = "lab"\n'
        'setup = ["module load cuda"]\n[slurm.additional]\nexclusive = true\n'
    )
    rid = queue_ops.add(ws, write_preset(tmp_path, extra="gpus = 2\n"), start_runner=False, executor="slurm")[0].id
    ex = SlurmExecutor(ws)
    p = ex.parameters(rid)
    assert p["slurm_partition"] == "gpu" and p["timeout_min"] == 90 and p["gpus_per_node"] == 2
    assert p["slurm_account"] == "lab" and p["slurm_setup"] == ["module load cuda"]
    assert p["slurm_additional_parameters"] == {"exclusive": True, "requeue": True}  # --requeue unless opted out
    # submitit accepts them all (it rejects unknown names)
    auto = submitit.AutoExecutor(folder=tmp_path / "sub", cluster="local")
    auto.update_parameters(**p)


def test_a_bad_slurm_table_fails_the_executor_a_bad_other_table_does_not(ws: Workspace) -> None:
    """In the runner, a typo in [slurm] fails the Slurm runs (the reason names its line); one in [ui]
    is not theirs to fail on (queue add refuses it)."""
    from tltui.core.errors import PresetError

    ws.settings_file.write_text('[slurm]\ncpus_per_task = 0\n[ui]\nimages = "ascii"\n')
    with pytest.raises(PresetError) as e:
        SlurmExecutor(ws)
    assert e.value.lines() == [
        f"{ws.settings_file}:2: slurm.cpus_per_task: Input should be greater than or equal to 1 (got 0)"
    ]
    ws.settings_file.write_text('[slurm]\ncpus_per_task = 2\n[ui]\nimages = "ascii"\n')
    assert SlurmExecutor(ws).settings.cpus_per_task == 2


class _StubJob:
    def __init__(self, job_id: str = "4242") -> None:
        self.job_id = job_id
        self.calls = 0
        self.value = "RUNNING"

    @property
    def state(self) -> str:
        self.calls += 1
        return self.value

    def exception(self) -> None:
        return None


def test_status_polled_at_most_every_poll_interval(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ws.root / "settings.toml").write_text("[slurm]\npoll_interval = 30\n")
    rid = queue_ops.add(ws, write_preset(tmp_path), start_runner=False, executor="slurm")[0].id
    now = [1000.0]
    stub = _StubJob()
    monkeypatch.setattr(SlurmJob, "_query", lambda self: self.job.state)  # squeue, without a scheduler
    monkeypatch.setattr(SlurmJob, "_outcome", lambda self: None)
    # a poll waits for its answer, however slow the query thread is to run: each status() below sees it
    monkeypatch.setattr(slurm, "QUERY_WAIT", TIMEOUT)
    job = SlurmJob(SlurmExecutor(ws), rid, stub, clock=lambda: now[0])
    for _ in range(50):  # a runner ticks every 0.2 s
        assert job.status().alive
        now[0] += 0.5
    assert stub.calls == 1  # 25 s: one squeue/sacct
    now[0] += 5.0
    job.status()
    assert stub.calls == 2
    # once the worker said it finished, the end is picked up within a second
    with open(ws.run_paths(rid).events, "a") as f:
        f.write(protocol.encode(Finished(time.time(), status="completed", epochs_done=2)))
    assert job.events()
    stub.value = "COMPLETED"
    now[0] += 1.0
    st = job.status()
    assert not st.alive and st.returncode == 0 and not st.lost and stub.calls == 3
    # a node failure without a finished event is lost (the run becomes interrupted)
    job2 = SlurmJob(SlurmExecutor(ws), rid, _StubJob(), clock=lambda: now[0])
    job2.job.value = "NODE_FAIL"
    st2 = job2.status()
    assert not st2.alive and st2.lost


def test_an_earlier_workers_finished_is_not_the_new_jobs(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run paused at a rung, resumed as a new job that Slurm loses before its worker wrote anything: the job is
    lost (the run becomes interrupted), not ended as the last worker's ``finished: paused`` said."""
    rid = queue_ops.add(ws, write_preset(tmp_path), start_runner=False, executor="slurm")[0].id
    events = ws.run_paths(rid).events
    with open(events, "a") as f:
        f.write(protocol.encode(Started(1.0, epochs=2)))
        f.write(protocol.encode(Finished(2.0, status="paused", reason="paused at rung 1 (epoch 1)", epochs_done=1)))
    monkeypatch.setattr(SlurmJob, "_query", lambda self: self.job.state)
    monkeypatch.setattr(SlurmJob, "_outcome", lambda self: None)
    monkeypatch.setattr(slurm, "QUERY_WAIT", TIMEOUT)
    job = SlurmJob(SlurmExecutor(ws), rid, _StubJob(), since=events.stat().st_size)
    assert [e.type for e in job.events()] == ["started", "finished"]  # the run's history, for the runner's state
    job.job.value = "NODE_FAIL"
    st = job.status()
    assert not st.alive and st.lost


def test_the_time_limit_rule_and_what_it_says() -> None:
    """A job that reaches its limit requeues while the budget lasts, whether or not it completed an
    epoch; the run fails when the budget is spent or when no epoch completed since the last requeue.
    "again" only when the run was requeued before."""
    then = "then `tltui resume r0007` (checkpoints kept)"
    first = TimeLimit(minutes=10, max_requeues=2)
    assert first.reason(0, "r0007") is None  # before its first epoch ended: requeued all the same
    assert first.reason(3, "r0007") is None
    assert first.requeued(0) == TimeLimit(10, 2, requeues=1, epochs_at_requeue=0)
    assert first.requeued(0).reason(1, "r0007") is None  # progress since the requeue
    assert first.requeued(0).reason(0, "r0007") == (
        "Slurm time limit of 10 min reached again with no epoch completed since requeue 1 (max_requeues = 2), "
        f"before the first epoch ended: raise [slurm] time_limit, {then}"
    )
    assert first.requeued(3).reason(3, "r0007") == (
        "Slurm time limit of 10 min reached again with no epoch completed since requeue 1 (max_requeues = 2), "
        f"after epoch 3: raise [slurm] time_limit, {then}"
    )
    assert first.requeued(0).requeued(1).reason(4, "r0007") == (
        "Slurm time limit of 10 min reached again after 2 requeue(s) (max_requeues = 2), after epoch 4: "
        f"raise [slurm] time_limit or max_requeues, {then}"
    )
    assert first.requeued(0).requeued(0).reason(0, "r0007") == (
        "Slurm time limit of 10 min reached again after 2 requeue(s) (max_requeues = 2), before the first epoch "
        f"ended: raise [slurm] time_limit or max_requeues, {then}"
    )
    assert TimeLimit(10, 0).reason(2, "r0007") == (
        f"Slurm time limit of 10 min reached after epoch 2 (max_requeues = 0): raise [slurm] time_limit or "
        f"max_requeues, {then}"
    )
    # a USR2 counts as the time limit's warning as submitit judges it: any time in a limit up to
    # 10 min, else in its last 10 min (or 20 %); earlier it is a preemption, which does not count
    assert TimeLimit(10, 1).counts(0.0)
    assert not TimeLimit(60, 1).counts(60.0) and TimeLimit(60, 1).counts(50 * 60.0)


class _Sbatch:
    """submitit's executor without a scheduler: each job submitted is a stub whose state the test sets."""

    def __init__(self) -> None:
        self.tasks: list[Any] = []
        self.jobs: list[_StubJob] = []

    def submit(self, task: Any) -> _StubJob:
        self.tasks.append(task)
        self.jobs.append(_StubJob(str(100 + len(self.jobs))))
        return self.jobs[-1]


@pytest.mark.parametrize(
    ("epochs_per_job", "reason"),
    [
        pytest.param(
            [[], [1, 2], [3]],
            "Slurm time limit of 60 min reached again after 2 requeue(s) (max_requeues = 2), after epoch 3: "
            "raise [slurm] time_limit or max_requeues, then `tltui resume {rid}` (checkpoints kept)",
            id="progress-until-the-budget-is-spent",
        ),
        pytest.param(
            [[], []],
            "Slurm time limit of 60 min reached again with no epoch completed since requeue 1 (max_requeues = 2), "
            "before the first epoch ended: raise [slurm] time_limit, then `tltui resume {rid}` (checkpoints kept)",
            id="no-epoch-since-the-requeue",
        ),
    ],
)
def test_a_job_slurm_ends_at_its_time_limit_is_requeued_by_the_runner_while_the_rule_allows(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, epochs_per_job: list[list[int]], reason: str
) -> None:
    """A job can reach its limit without requeueing itself (Slurm's warning came before its srun step
    or its handler existed; Slurm ends it ``TIMEOUT``): the runner requeues the run as the job would
    have (a new job, resuming), whether or not an epoch completed, and fails it by the same rule."""
    (ws.root / "settings.toml").write_text("[slurm]\npoll_interval = 30\ntime_limit = 60\nmax_requeues = 2\n")
    rid = queue_ops.add(ws, write_preset(tmp_path), start_runner=False, executor="slurm")[0].id
    sbatch = _Sbatch()
    monkeypatch.setattr(SlurmExecutor, "_executor", lambda self, run_id: sbatch)
    monkeypatch.setattr(SlurmJob, "_query", lambda self: self.job.state)
    monkeypatch.setattr(SlurmJob, "_outcome", lambda self: None)
    monkeypatch.setattr(slurm, "QUERY_WAIT", TIMEOUT)
    paths = ws.run_paths(rid)
    now = [0.0]
    job = SlurmExecutor(ws).submit(rid, gpus=[], resume=False)
    assert isinstance(job, SlurmJob)
    job.clock = lambda: now[0]

    done = 0
    for n, epochs in enumerate(epochs_per_job):
        # the job's worker: its epochs, then stopped by Slurm's SIGTERM at the limit
        lines = [Started(time.time(), pid=1, initial_epoch=done)]
        lines += [EpochEnd(time.time(), epoch=e) for e in epochs]
        done = max([done, *epochs])
        lines.append(Finished(time.time(), status="cancelled", reason=f"stopped by SIGTERM after epoch {done}"))
        with open(paths.events, "a") as f:
            f.writelines(protocol.encode(e) for e in lines)
        sbatch.jobs[-1].value = "TIMEOUT"
        now[0] += 3600
        st = job.status()
        if n == len(epochs_per_job) - 1:
            break
        assert st.alive, runstate.load(paths.events).finished
        task = sbatch.tasks[-1]
        assert len(sbatch.tasks) == n + 2 and task.resume
        assert task.limit == TimeLimit(60, 2, requeues=n + 1, epochs_at_requeue=done)
        assert json.loads((paths.dir / "slurm_job.json").read_text())["job_id"] == job.job.job_id == str(101 + n)
        assert f"requeue {n + 1} of 2, resuming after epoch {done}" in paths.log.read_text()
    assert not st.alive and st.returncode == 1 and not st.lost
    fin = runstate.load(paths.events).finished
    assert fin is not None and fin.status == "failed" and fin.reason == reason.format(rid=rid)
    assert len(sbatch.tasks) == len(epochs_per_job)


# ---------------------------------------------------------------------------- submitit local jobs


def test_sweep_runs_as_submitit_jobs(sws: Workspace, tmp_path: Path) -> None:
    ws = sws
    ids = [r.id for r in queue_ops.add(ws, write_preset(tmp_path, epochs=3, extra=SWEEP2), executor="slurm")]
    wait_for(lambda: finished(ws, *ids), "both runs")
    for rid in ids:
        rec = ws.get(rid)
        assert rec.status == "completed", rec.reason
        assert rec.executor == "slurm" and rec.epoch == 3
        assert epochs_in_file(ws, rid) == [1, 2, 3]
        info = json.loads((ws.run_paths(rid).dir / "slurm_job.json").read_text())
        assert info["cluster"] == "local" and info["job_id"]
        assert "slurm job" in ws.run_paths(rid).log.read_text()


def test_cancel_and_killed_worker_then_resume(sws: Workspace, tmp_path: Path) -> None:
    ws = sws
    a, b = (r.id for r in queue_ops.add(ws, write_preset(tmp_path, epochs=5, extra=SWEEP2), executor="slurm"))
    script(ws, a, epoch_seconds=1.0)
    script(ws, b, epoch_seconds=1.0)
    wait_for(lambda: ws.get(a).epoch >= 1 and ws.get(b).epoch >= 2, "epochs")
    queue_ops.cancel(ws, a)
    pid = runstate.load(ws.run_paths(b).events).pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: finished(ws, a, b), "cancel and crash recorded")
    assert ws.get(a).status == "cancelled"
    assert ws.get(b).status == "failed", ws.get(b).reason
    queue_ops.resume(ws, b)
    wait_for(lambda: ws.get(b).status == "completed", "the resumed run")
    assert sorted(set(epochs_in_file(ws, b))) == [1, 2, 3, 4, 5]
    starts = [ev for ev in protocol.read_events(ws.run_paths(b).events) if isinstance(ev, Started)]
    assert starts[-1].initial_epoch >= 2


def test_preemption_requeues_with_resume(sws: Workspace, tmp_path: Path) -> None:
    """submitit's preemption signal (USR2) on the job: the task stops the worker and
    requeues itself with --resume; the run goes on from its last epoch."""
    ws = sws
    rid = queue_ops.add(ws, write_preset(tmp_path, epochs=4), start_runner=False, executor="slurm")[0].id
    script(ws, rid, epoch_seconds=1.0)
    job = SlurmExecutor(ws).submit(rid, gpus=[], resume=False)
    assert isinstance(job, SlurmJob)
    wait_for(lambda: epochs_in_file(ws, rid)[:2] == [1, 2], "epoch 2")
    # what Slurm does before preempting: USR2 to the job's processes (here the submitit task
    # process, the fake worker's parent; submitit's handler calls WorkerTask.checkpoint)
    worker = runstate.load(ws.run_paths(rid).events).pid
    task_pid = int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(task_pid, signal.SIGUSR2)
    wait_for(
        lambda: (
            sum(isinstance(e, Started) for e in protocol.read_events(ws.run_paths(rid).events)) == 2
            and 4 in epochs_in_file(ws, rid)
        ),
        "the requeued worker to finish",
    )
    starts = [e for e in protocol.read_events(ws.run_paths(rid).events) if isinstance(e, Started)]
    assert starts[1].initial_epoch >= 2
    assert sorted(set(epochs_in_file(ws, rid))) == [1, 2, 3, 4]
    # early in a 30-min limit: a preemption, not the time limit; it does not count against max_requeues
    assert TimeLimit.load(ws.run_paths(rid).dir) == TimeLimit(30, 3)


def _started(ws: Workspace, rid: str) -> list[Started]:
    return [e for e in protocol.read_events(ws.run_paths(rid).events) if isinstance(e, Started)]


def _warn(ws: Workspace, rid: str) -> None:
    """The time limit's warning, as Slurm sends it (USR2) to the job's task, the current worker's parent."""
    worker = _started(ws, rid)[-1].pid
    task = int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(task, signal.SIGUSR2)


def _time_limited(ws: Workspace, max_requeues: int) -> None:
    # a 10-min limit: any USR2 is its warning (submitit's judgement), and submitit's local stand-in
    # sends its own only after 9.5 min; signal_delay 10: a worker that does not stop is killed after 5 s
    (ws.root / "settings.toml").write_text(
        '[slurm]\ncluster = "local"\npoll_interval = 1.0\ntime_limit = 10\nsignal_delay = 10\n'
        f"max_requeues = {max_requeues}\n"
    )


def test_a_time_limit_before_the_first_epoch_ended_requeues_and_again_without_one_fails(
    sws: Workspace, tmp_path: Path
) -> None:
    """Signalled in its first epoch (a slow start on a busy cluster), the job requeues all the same,
    using its budget; signalled again with no epoch completed since, the run fails, saying so."""
    ws = sws
    _time_limited(ws, max_requeues=3)
    preset = write_preset(tmp_path, epochs=5, extra="steps_per_epoch = 1000\n")
    (rec,) = queue_ops.add(ws, preset, executor="slurm", start_runner=False)
    rid = rec.id
    script(ws, rid, epoch_seconds=1000.0)  # 1-s steps: it stops within a second of SIGTERM, no epoch ends
    queue_ops.ensure_runner(ws)
    wait_for(lambda: _started(ws, rid), "the first worker")
    _warn(ws, rid)
    wait_for(lambda: len(_started(ws, rid)) == 2, "the requeued job's worker")
    _warn(ws, rid)
    wait_for(lambda: finished(ws, rid), "the run to end")
    rec = ws.get(rid)
    assert rec.status == "failed" and rec.reason == (
        "Slurm time limit of 10 min reached again with no epoch completed since requeue 1 (max_requeues = 3), "
        f"before the first epoch ended: raise [slurm] time_limit, then `tltui resume {rid}` (checkpoints kept)"
    )
    assert [s.initial_epoch for s in _started(ws, rid)] == [0, 0]
    assert "time limit: requeue 1 of 3, resuming after epoch 0" in ws.run_paths(rid).log.read_text()
    ends = [e for e in protocol.read_events(ws.run_paths(rid).events) if isinstance(e, Finished)]
    assert [e.status for e in ends] == ["cancelled", "cancelled", "failed"]  # each worker stopped by its SIGTERM


def test_a_time_limit_after_an_epoch_resumes_after_it_and_the_spent_budget_fails_the_run(
    sws: Workspace, tmp_path: Path
) -> None:
    ws = sws
    _time_limited(ws, max_requeues=1)
    (rec,) = queue_ops.add(ws, write_preset(tmp_path, epochs=100000), executor="slurm", start_runner=False)
    rid = rec.id
    script(ws, rid, epoch_seconds=0.4)
    queue_ops.ensure_runner(ws)
    wait_for(lambda: epochs_in_file(ws, rid), "an epoch")
    _warn(ws, rid)
    wait_for(lambda: len(_started(ws, rid)) == 2, "the requeued job's worker")
    resumed = _started(ws, rid)[1].initial_epoch
    assert resumed >= 1  # after the epochs the first job completed
    wait_for(lambda: max(epochs_in_file(ws, rid)) > resumed, "an epoch of the requeued job")
    _warn(ws, rid)
    wait_for(lambda: finished(ws, rid), "the run to end")
    rec = ws.get(rid)
    assert rec.status == "failed" and rec.epoch > resumed
    assert rec.reason == (
        f"Slurm time limit of 10 min reached again after 1 requeue(s) (max_requeues = 1), after epoch {rec.epoch}: "
        f"raise [slurm] time_limit or max_requeues, then `tltui resume {rid}` (checkpoints kept)"
    )
    assert sorted(set(epochs_in_file(ws, rid))) == list(range(1, rec.epoch + 1))


def test_core_never_imports_cluster_engines() -> None:
    """The core, the local executor and even the cluster executor modules import ray/submitit lazily."""
    import subprocess
    import sys

    code = (
        "import sys, tltui.runner.executor, tltui.runner.loop, tltui.client.queue_ops, tltui.commands.queue, tltui.runner.executors.ray_relay, "
        "tltui.runner.executors.ray, tltui.runner.executors.slurm\n"
        "from tltui.runner.executor import EXECUTORS\n"
        "assert sorted(EXECUTORS) == ['local', 'ray', 'slurm']\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'submitit', 'tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_cli_executor_flag_and_workspace_default(ws: Workspace, tmp_path: Path) -> None:
    import subprocess
    import sys

    preset = write_preset(tmp_path)

    def add(*extra: str) -> list[str]:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "tltui",
                "--workspace",
                str(ws.root),
                "queue",
                "add",
                str(preset),
                "--no-runner",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert ws.get(add()[0]).executor == "local"
    (ws.root / "settings.toml").write_text('[executor]\ndefault = "slurm"\n')
    assert ws.get(add()[0]).executor == "slurm"
    assert ws.get(add("--executor", "ray")[0]).executor == "ray"
    (ws.root / "settings.toml").write_text('[executor]\ndefault = "kubernetes"\n')
    out = subprocess.run(
        [sys.executable, "-m", "tltui", "--workspace", str(ws.root), "queue", "add", str(preset), "--no-runner"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "settings.toml" in out.stderr and "kubernetes" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
