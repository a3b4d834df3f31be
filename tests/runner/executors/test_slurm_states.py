"""What squeue says of a Slurm job, as the runner sees it, without a scheduler: pending and why, the node,
a controller that does not answer, and a run whose worker completed while the controller is down."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import write_preset
from tltui.client import queue_ops
from tltui.core import protocol
from tltui.core.protocol import Finished
from tltui.core.status import SchedState
from tltui.core.workspace import Workspace
from tltui.runner.executors import slurm
from tltui.runner.executors.slurm import SlurmExecutor, SlurmJob

TIMEOUT = 30.0


class _Stub:
    job_id = "4242"


@pytest.fixture
def rid(ws: Workspace, tmp_path: Path) -> str:
    (ws.root / "settings.toml").write_text("[slurm]\npoll_interval = 30\n")
    return queue_ops.add(ws, write_preset(tmp_path), start_runner=False, executor="slurm")[0].id


def test_pending_with_squeues_reason_then_running_on_its_node(
    ws: Workspace, rid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = ["PENDING|BeginTime|", "RUNNING|None|node3"]
    monkeypatch.setattr(slurm, "_run", lambda argv: subprocess.CompletedProcess(argv, 0, answers[0] + "\n", ""))
    monkeypatch.setattr(slurm, "QUERY_WAIT", TIMEOUT)
    now = [1000.0]
    job = SlurmJob(SlurmExecutor(ws), rid, _Stub(), clock=lambda: now[0])
    st = job.status()
    assert st.alive and st.sched_state == SchedState.PENDING and st.reason == "BeginTime"
    now[0] += 0.5
    assert job.status() == st  # between polls: what the scheduler said last, not a bare "alive"
    answers.pop(0)
    now[0] += 60
    st = job.status()
    assert st.alive and st.sched_state is None and st.node == "node3"


@pytest.fixture
def silent_controller(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """squeue hangs, as it does for ~20 s when the controller is down."""
    gate = threading.Event()
    monkeypatch.setattr(SlurmJob, "_query", lambda self: gate.wait(TIMEOUT) and slurm.UNREACHABLE)
    monkeypatch.setattr(slurm, "QUERY_WAIT", 0.01)
    yield
    gate.set()


def test_a_silent_controller_shows_at_once_and_a_completed_worker_completes(
    ws: Workspace, rid: str, silent_controller: None
) -> None:
    now = [1000.0]
    job = SlurmJob(SlurmExecutor(ws), rid, _Stub(), clock=lambda: now[0])
    assert job.status() == slurm.JobStatus(alive=True)  # asked; no answer yet
    now[0] += slurm.SLOW_ANSWER
    st = job.status()
    assert st.alive and st.sched_state == SchedState.UNREACHABLE
    assert st.since is not None and st.since <= time.time() - slurm.SLOW_ANSWER + 1
    with open(ws.run_paths(rid).events, "a") as f:
        f.write(protocol.encode(Finished(time.time(), status="completed", epochs_done=2)))
    assert job.events()
    st = job.status()  # scheduler_grace (600 s) is not waited for: the worker said it completed
    assert not st.alive and st.returncode == 0 and not st.lost


def test_a_presets_cluster_slurm_table_overrides_the_workspace_for_its_runs(ws: Workspace, tmp_path: Path) -> None:
    submitit = pytest.importorskip("submitit")
    (ws.root / "settings.toml").write_text(
        '[slurm]\npartition = "cpu"\ntime_limit = 90\naccount = "lab"\n[slurm.additional]\nrequeue = false\n'
    )
    extra = '[cluster.slurm]\npartition = "gpu"\ntime_limit = 30\nmem_gb = 8\ngres = "gpu:a100:1"\n'
    rid = queue_ops.add(
        ws, write_preset(tmp_path, extra=extra), {"cluster.slurm.qos": "high"}, start_runner=False, executor="slurm"
    )[0].id
    p = SlurmExecutor(ws).parameters(rid)
    assert (p["slurm_partition"], p["timeout_min"], p["mem_gb"], p["slurm_qos"]) == ("gpu", 30, 8, "high")
    assert p["slurm_account"] == "lab"  # unset in the preset: the workspace's
    assert p["slurm_gres"] == "gpu:a100:1" and "gpus_per_node" not in p  # no second GPU request beside it
    assert p["slurm_additional_parameters"] == {}  # the workspace opted out of --requeue
    submitit.AutoExecutor(folder=tmp_path / "sub", cluster="local").update_parameters(**p)
