"""A cluster run's job history (``cluster_jobs.jsonl``) and what ``runs show`` / ``queue ls`` make of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tltui.commands import main as cli
from tltui.core import cluster_jobs
from tltui.core.cluster_jobs import ClusterJob
from tltui.core.status import RunStatus
from tltui.core.workspace import Workspace


def test_history_survives_a_torn_line_and_says_where_the_run_is(tmp_path: Path) -> None:
    cluster_jobs.record(tmp_path, ClusterJob("slurm", "41", 1.0, accounting="sacct -j 41"))
    cluster_jobs.record(tmp_path, ClusterJob("slurm", "41", 2.0, "restarted", accounting="sacct -j 41"))
    with open(tmp_path / cluster_jobs.FILE_NAME, "a") as f:
        f.write('{"executor": "slurm", "job_')  # a write cut short
    assert [(j.job_id, j.event) for j in cluster_jobs.history(tmp_path)] == [("41", "submitted"), ("41", "restarted")]
    cluster_jobs.record(tmp_path, ClusterJob("slurm", "42", 3.0, "resumed", accounting="sacct -j 42"))
    s = cluster_jobs.summary(tmp_path, "node3")
    assert s is not None and (s["job_id"], s["node"], s["accounting"]) == ("42", "node3", "sacct -j 42")
    lines = cluster_jobs.describe(tmp_path, "node3")
    assert lines[0] == "job: slurm 42 on node3" and lines[1].startswith("jobs: 41 submitted")
    assert "42 resumed" in lines[1] and lines[2] == "accounting: sacct -j 42"
    assert cluster_jobs.summary(tmp_path / "nowhere") is None and cluster_jobs.describe(tmp_path / "nowhere") == []


def test_runs_show_and_queue_ls_name_the_job_and_the_dashboard(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    (rec,) = ws.create_runs([("a", "", {})], preset_name="p", executor="ray")
    ws.update(rec.id, status=RunStatus.RUNNING, queue_pos=None, host="node7", cancel_requested=True)
    url = "http://head:8265/#/jobs/tltui-r0001-x"
    cluster_jobs.record(ws.run_paths(rec.id).dir, ClusterJob("ray", "tltui-r0001-x", 1.0, dashboard=url))
    assert cli.main(["--workspace", str(ws.root), "runs", "show", rec.id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "cancelling" and shown["cluster"]["dashboard"] == url
    assert shown["cluster"]["job_id"] == "tltui-r0001-x" and shown["cluster"]["node"] == "node7"
    assert cli.main(["--workspace", str(ws.root), "runs", "show", rec.id]) == 0
    text = capsys.readouterr().out
    assert "[cancelling]" in text and "job: ray tltui-r0001-x on node7" in text and f"dashboard: {url}" in text
    assert cli.main(["--workspace", str(ws.root), "queue", "ls"]) == 0
    head, row = capsys.readouterr().out.splitlines()[:2]
    assert "JOB" in head and row.split()[:4] == [rec.id, "cancelling", "ray:node7", "tltui-r0001-x"]
