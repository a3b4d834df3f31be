"""A sweep as one Slurm job array (``[cluster.slurm] array`` / ``array_limit``): which runs go together, the
ids their tasks answer to, and the array through submitit's local stand-in with the fake worker (the real
scheduler: ``test_slurm_real.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("submitit")

from tests import helpers  # noqa: E402
from tests.helpers import SWEEP2, epochs_in_file, finished, script, write_preset  # noqa: E402
from tltui.client import queue_ops  # noqa: E402
from tltui.core import cluster_jobs, protocol  # noqa: E402
from tltui.core.errors import PresetError  # noqa: E402
from tltui.core.protocol import Started  # noqa: E402
from tltui.core.workspace import Workspace  # noqa: E402
from tltui.runner.executors import slurm  # noqa: E402
from tltui.runner.executors.slurm import SlurmExecutor  # noqa: E402

ARRAY = "[cluster.slurm]\narray_limit = 1\n"


def _job(ws: Workspace, rid: str) -> dict:
    return json.loads((ws.run_paths(rid).dir / slurm.JOB_FILE).read_text())


def test_which_runs_go_as_one_array(ws: Workspace, tmp_path: Path) -> None:
    (ws.root / "settings.toml").write_text('[slurm]\ncluster = "local"\n')

    def add(extra: str, sets: dict | None = None) -> list:
        return queue_ops.add(ws, write_preset(tmp_path, extra=extra), sets, start_runner=False, executor="slurm")

    ex = SlurmExecutor(ws)
    a, b = add(SWEEP2 + ARRAY)
    assert ex.array_key(a) is not None and ex.array_key(a) == ex.array_key(b)
    c, d = add(SWEEP2 + ARRAY)  # the same sweep queued again: an array of its own
    assert ex.array_key(c) == ex.array_key(d) != ex.array_key(a)
    assert [ex.array_key(r) for r in add(SWEEP2)] == [None, None]  # opt-in: one job per run
    assert [ex.array_key(r) for r in add(SWEEP2 + ARRAY, {"cluster.slurm.array": False})] == [None, None]
    (single,) = add("[cluster.slurm]\narray = true\n")  # no sweep: no array
    assert ex.array_key(single) is None
    # runs that would ask Slurm for other resources are not one array
    e, f = add('[sweep]\n"train.gpus" = [0, 1]\n' + ARRAY)
    assert None is not ex.array_key(e) != ex.array_key(f)
    with pytest.raises(PresetError, match="array_limit"):
        add(SWEEP2 + "[cluster.slurm]\narray_limit = 0\n")


def test_a_task_knows_its_id_as_squeue_and_scancel_take_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert slurm._own_job_id() == "17"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "15")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert slurm._own_job_id() == "15_2"  # SLURM_JOB_ID of a task is another number


def test_a_sweep_as_one_array_and_a_resume_as_a_job_of_its_own(
    ws: Workspace, fake_worker_env: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.2")
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "20")
    (ws.root / "settings.toml").write_text('[slurm]\ncluster = "local"\npoll_interval = 1.0\n')
    a, b = (
        r.id for r in queue_ops.add(ws, write_preset(tmp_path, 3, SWEEP2 + ARRAY), start_runner=False, executor="slurm")
    )
    script(ws, a, epoch_seconds=1.0)
    try:
        queue_ops.ensure_runner(ws)
        helpers.wait_for(lambda: ws.get(a).epoch >= 1, "run a's first epoch", 60.0)
        for rid in (a, b):  # one submission of both, a task each
            info = _job(ws, rid)
            assert info["name"] == f"tltui-array-{a}" and "slurm-arrays" in info["folder"], info
        queue_ops.cancel(ws, a)
        helpers.wait_for(lambda: finished(ws, a, b), "a cancelled, b completed", 60.0)
        assert ws.get(a).status == "cancelled" and ws.get(b).status == "completed", ws.get(b).reason
        assert epochs_in_file(ws, b) == [1, 2, 3]
        queue_ops.resume(ws, a)
        helpers.wait_for(lambda: ws.get(a).status == "completed", "the resumed run", 60.0)
    finally:
        queue_ops.stop_runner(ws)
    assert _job(ws, a)["name"] == f"tltui-{a}"  # the resume: a job of its own, not an array
    assert sorted(set(epochs_in_file(ws, a))) == [1, 2, 3]
    assert [e.event for e in cluster_jobs.history(ws.run_paths(a).dir)] == ["submitted", "resumed"]
    for rid, n in ((a, 2), (b, 1)):
        assert len([e for e in protocol.read_events(ws.run_paths(rid).events) if isinstance(e, Started)]) == n
