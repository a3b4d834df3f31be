"""What the app's data layer says of a cluster run: the scheduler's state in the status cell, the job in the
run screen's header (tltui.core.status.shown, tltui.core.cluster_jobs)."""

from __future__ import annotations

from tltui.core import cluster_jobs
from tltui.core.cluster_jobs import ClusterJob
from tltui.core.status import RunStatus, SchedState
from tltui.core.workspace import Workspace
from tltui.tui import formatting as fmt
from tltui.tui import store as run_store


def test_a_pending_cluster_run_and_a_cancelling_local_one_say_so(ws: Workspace) -> None:
    (ray,) = ws.create_runs([("a", "", {})], preset_name="p", executor="ray")
    (local,) = ws.create_runs([("b", "", {})], preset_name="p", executor="local")
    ws.update(ray.id, status=RunStatus.RUNNING, queue_pos=None, sched_state=SchedState.PENDING, sched_reason="Priority")
    ws.update(local.id, status=RunStatus.RUNNING, queue_pos=None, cancel_requested=True)
    url = "http://head:8265/#/jobs/tltui-r0001-x"
    cluster_jobs.record(ws.run_paths(ray.id).dir, ClusterJob("ray", "tltui-r0001-x", 1.0, dashboard=url))
    store = run_store.RunStore(ws, clock=lambda: 100.0)
    store.refresh()
    row = store.row(ray.id)
    assert row.status == "running" and row.detail == "pending (Priority)" and row.gpus == "ray:?"
    assert fmt.status_style(row.status, row.detail) == "cyan"
    assert store.row(local.id).detail == "cancelling"
    assert store.snapshot(ray.id).cluster == f"ray job tltui-r0001-x · {url}"
    assert store.snapshot(local.id).cluster is None
