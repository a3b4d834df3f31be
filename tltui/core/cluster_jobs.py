"""Where a cluster run runs: the scheduler jobs it has had, one JSON line each in ``RUN_DIR/cluster_jobs.jsonl``.

An executor that hands runs to a scheduler (Ray, Slurm) appends a line each time it submits one (the first
start, a ``tltui resume``, a time-limit requeue) and each time the scheduler restarts the same job (Slurm's
requeue or preemption); clients read the file to show the job id, its history and a link to the cluster's
dashboard (``runs show``, ``queue ls``, the run screen). Stdlib only; a torn or unreadable line is skipped.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "cluster_jobs.jsonl"


@dataclass(frozen=True)
class ClusterJob:
    """One scheduler job of a run. ``event``: ``submitted`` (a new job), ``restarted`` (the scheduler ran the same
    job again: a requeue), ``resumed`` (submitted for ``tltui resume``)."""

    executor: str
    job_id: str
    t: float
    event: str = "submitted"
    dashboard: str | None = None  # the cluster's web UI (Ray's dashboard), when it has one
    accounting: str | None = None  # how to ask the scheduler's own records, e.g. ``sacct -j 42``

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def record(run_dir: str | Path, job: ClusterJob) -> None:
    """Append ``job`` to the run's history, one line in one ``write``; after a line a crash cut short, on a line
    of its own (the torn one is skipped by :func:`history`)."""
    path = Path(run_dir) / FILE_NAME
    line = json.dumps(job.to_dict(), sort_keys=True) + "\n"
    with open(path, "a+b") as f:
        if f.tell() > 0:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode())


def history(run_dir: str | Path) -> list[ClusterJob]:
    """Every job the run has had, oldest first (``[]``: none, or not a cluster run)."""
    try:
        text = (Path(run_dir) / FILE_NAME).read_text("utf-8", "replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            d = json.loads(line)
            out.append(
                ClusterJob(
                    executor=str(d["executor"]),
                    job_id=str(d["job_id"]),
                    t=float(d["t"]),
                    event=str(d.get("event", "submitted")),
                    dashboard=d.get("dashboard"),
                    accounting=d.get("accounting"),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return out


def latest(run_dir: str | Path) -> ClusterJob | None:
    jobs = history(run_dir)
    return jobs[-1] if jobs else None


def summary(run_dir: str | Path, host: str | None = None) -> dict[str, Any] | None:
    """What ``runs show --json`` says of where a cluster run runs: the current job id, the node, the dashboard,
    and every job (``None`` for a run that never went to a cluster)."""
    jobs = history(run_dir)
    if not jobs:
        return None
    last = jobs[-1]
    return {
        "executor": last.executor,
        "job_id": last.job_id,
        "node": host,
        "dashboard": last.dashboard,
        "accounting": last.accounting,
        "jobs": [j.to_dict() for j in jobs],
    }


def describe(run_dir: str | Path, host: str | None = None) -> list[str]:
    """``runs show``'s lines about it: ``job: ray tltui-r0001-... on node7 (3 jobs: ...)``, the dashboard."""
    s = summary(run_dir, host)
    if s is None:
        return []
    where = f" on {host}" if host else ""
    lines = [f"job: {s['executor']} {s['job_id']}{where}"]
    if len(s["jobs"]) > 1:
        steps = ", ".join(
            f"{j['job_id']} {j.get('event', 'submitted')} {time.strftime('%m-%d %H:%M', time.localtime(j['t']))}"
            for j in s["jobs"]
        )
        lines.append(f"jobs: {steps}")
    if s["dashboard"]:
        lines.append(f"dashboard: {s['dashboard']}")
    if s["accounting"]:
        lines.append(f"accounting: {s['accounting']}")
    return lines
