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
from tltui.core.protocol import Finished, Started  # noqa: E402
from tltui.core.workspace import Workspace  # noqa: E402
from tltui.runner.executor import EXECUTORS  # noqa: E402
from tltui.runner.executors.slurm import SlurmExecutor, SlurmJob  # noqa: E402

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
    assert p["slurm_additional_parameters"] == {"exclusive": True}
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
    assert e.value.lines() == [f"{ws.settings_file}:2: slurm.cpus_per_task: Input should be greater than or equal "
                               "to 1 (got 0)"]
    ws.settings_file.write_text('[slurm]\ncpus_per_task = 2\n[ui]\nimages = "ascii"\n')
    assert SlurmExecutor(ws).cpus_per_task == 2


class _StubJob:
    job_id = "4242"

    def __init__(self) -> None:
        self.calls = 0
        self.value = "RUNNING"

    @property
    def state(self) -> str:
        self.calls += 1
        return self.value

    def exception(self) -> None:
        return None


def test_status_polled_at_most_every_poll_interval(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (ws.root / "settings.toml").write_text("[slurm]\npoll_interval = 30\n")
    rid = queue_ops.add(ws, write_preset(tmp_path), start_runner=False, executor="slurm")[0].id
    now = [1000.0]
    stub = _StubJob()
    monkeypatch.setattr(SlurmJob, "_query", lambda self: self.job.state)  # squeue, without a scheduler
    monkeypatch.setattr(SlurmJob, "_outcome", lambda self: None)
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
    wait_for(lambda: sum(isinstance(e, Started) for e in protocol.read_events(ws.run_paths(rid).events)) == 2
             and 4 in epochs_in_file(ws, rid), "the requeued worker to finish")
    starts = [e for e in protocol.read_events(ws.run_paths(rid).events) if isinstance(e, Started)]
    assert starts[1].initial_epoch >= 2
    assert sorted(set(epochs_in_file(ws, rid))) == [1, 2, 3, 4]


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
            [sys.executable, "-m", "tltui", "--workspace", str(ws.root), "queue", "add", str(preset),
             "--no-runner", *extra], capture_output=True, text=True, timeout=60,
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
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode != 0 and "settings.toml" in out.stderr and "kubernetes" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
