"""The Ray executor against a real local Ray cluster (loopback, started here, one per module).

The queue runner submits each run as a Ray job whose entrypoint is the event
relay around the scripted fake worker; the tests check what users see: runs
complete, curves land in the local events.jsonl (once each), cancel, a killed
job fails and resumes, a runner restart re-attaches, a job the cluster lost is
``interrupted``.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray.job_submission")

from tests import helpers  # noqa: E402
from tests.helpers import (  # noqa: E402
    SWEEP2,  # noqa: E402
    epochs_in_file,
    finished,
    script,
    write_preset,
)
from tltui.client import queue_ops
from tltui.core import cluster_jobs, protocol, runstate  # noqa: E402
from tltui.core.protocol import Started  # noqa: E402
from tltui.core.workspace import Workspace  # noqa: E402
from tltui.runner import supervisor

pytestmark = pytest.mark.xdist_group("ray")

TIMEOUT = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A one-node Ray head on loopback (2 CPUs, small object store), with the job server; killed after."""
    ray_bin = Path(sys.executable).with_name("ray")
    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must stay short
    # every fixed-port component on a free port: two clusters on one box (parallel test runs)
    # otherwise fight over the agent's default ports and jobs get "No available agent"
    gcs, dash, *more = (_free_port() for _ in range(9))
    others = [
        f"--{name}={port}"
        for name, port in zip(
            (
                "ray-client-server-port",
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "metrics-export-port",
                "runtime-env-agent-port",
                "node-manager-port",
                "object-manager-port",
            ),
            more,
        )
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_IMPORT_WARNING": "1"}
    with open(Path(tmp) / "head.log", "wb") as out:
        proc = subprocess.Popen(
            [
                str(ray_bin),
                "start",
                "--head",
                "--block",
                "--num-cpus=2",
                "--num-gpus=0",
                f"--port={gcs}",
                "--node-ip-address=127.0.0.1",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dash}",
                "--include-dashboard=true",
                "--object-store-memory=80000000",
                f"--temp-dir={tmp}",
                "--disable-usage-stats",
                *others,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ray head did not start: " + (Path(tmp) / "head.log").read_text()[-2000:])
            time.sleep(0.5)
        _wait_accepts_jobs(address, time.monotonic() + 240)  # slow on a loaded 2-core box
        yield address
    finally:
        with _suppress():
            os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` and the processes it started
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with _suppress():
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _wait_accepts_jobs(address: str, deadline: float) -> None:
    """The job server answers before its agent is up ("No available agent"): run one trivial job."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    while True:
        try:
            sid = client.submit_job(entrypoint="true", entrypoint_num_cpus=0)
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    while client.get_job_status(sid) not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        if time.monotonic() > deadline:
            raise RuntimeError("the Ray test cluster does not run jobs")
        time.sleep(0.2)


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], ProcessLookupError)  # type: ignore[arg-type]


def wait_for(pred: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    return helpers.wait_for(pred, what, timeout, every=0.1)


@pytest.fixture
def rws(
    ws: Workspace, ray_cluster: str, fake_worker_env: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Workspace]:
    """A workspace whose settings point at the test cluster; runner stopped and jobs stopped after."""
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.2")
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "30")
    monkeypatch.setenv("TLTUI_RELAY_SCRATCH", str(tmp_path / "node-scratch"))
    (ws.root / "settings.toml").write_text(f'[ray]\naddress = "{ray_cluster}"\npoll_interval = 0.3\n')
    yield ws
    queue_ops.stop_runner(ws)
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(ray_cluster)
    for job in client.list_jobs():
        if not job.status.is_terminal():
            client.stop_job(job.submission_id)


def set_shared(ws: Workspace, value: str) -> None:
    text = (ws.root / "settings.toml").read_text()
    (ws.root / "settings.toml").write_text(text + f"shared_fs = {value}\n")


def test_sweep_runs_as_ray_jobs_and_curves_arrive(rws: Workspace, tmp_path: Path) -> None:
    ws = rws
    ids = [r.id for r in queue_ops.add(ws, write_preset(tmp_path, epochs=3, extra=SWEEP2), executor="ray")]
    assert len(ids) == 2 and all(ws.get(r).executor == "ray" for r in ids)
    wait_for(lambda: finished(ws, *ids), "both Ray runs to finish")
    for rid in ids:
        rec = ws.get(rid)
        assert rec.status == "completed", rec.reason
        assert rec.epoch == 3 and rec.best_val_acc
        assert rec.host == socket.gethostname()  # from the worker's started event on the node
        assert epochs_in_file(ws, rid) == [1, 2, 3]
        job = json.loads((ws.run_paths(rid).dir / "ray_job.json").read_text())
        assert job["submission_id"].startswith(f"tltui-{rid}-")
        log = ws.run_paths(rid).log.read_text()
        assert f"ray job {job['submission_id']}" in log and "(shared folder)" in log
        assert "SUCCEEDED" in log


def test_relay_mode_live_events_and_a_cancel_then_resume_write_each_event_once(rws: Workspace, tmp_path: Path) -> None:
    """A node without the run folder: the worker runs in node-local scratch; its events come back through Ray's
    log stream into the client's events.jsonl while it runs. Cancelled and resumed, the resume is a second Ray
    job of the same run in the same runner: the runner starts it cleanly (the first job's descriptor is released
    first), and only one follower appends relayed events, so ``events.jsonl`` holds every line once (two followers
    used to write each resumed epoch twice)."""
    ws = rws
    set_shared(ws, "false")
    warned: list[str] = []  # the test cluster has no GPU: asking for one is said at once
    queue_ops.add(ws, write_preset(tmp_path), {"train.gpus": 1}, executor="ray", start_runner=False, warn=warned.append)
    assert any("has no GPU" in w and "pending" in w for w in warned), warned
    queue_ops.cancel(ws, ws.queue()[0].id)
    rid = queue_ops.add(ws, write_preset(tmp_path, epochs=4), executor="ray")[0].id
    script(ws, rid, epoch_seconds=0.7)  # shipped to the node with the preset
    wait_for(lambda: epochs_in_file(ws, rid)[:1] == [1], "the first epoch_end relayed")
    assert ws.get(rid).status == "running"  # live, not after the fact
    shown = cluster_jobs.summary(ws.run_paths(rid).dir, ws.get(rid).host)
    assert shown is not None and shown["dashboard"].startswith(json_address(ws) + "/#/jobs/tltui-")
    queue_ops.cancel(ws, rid)
    wait_for(lambda: finished(ws, rid), "the cancel to land")
    assert ws.get(rid).status == "cancelled", ws.get(rid).reason
    # run files over the 96 KiB of an environment variable: the resume ships them as the job's working_dir
    (ws.run_paths(rid).dir / "freeze_map.json").write_text("x" * 150_000)
    queue_ops.resume(ws, rid)
    wait_for(lambda: finished(ws, rid), "the resumed run to finish")
    rec = ws.get(rid)
    assert rec.status == "completed", rec.reason
    lines = [ln for ln in ws.run_paths(rid).events.read_text().splitlines() if ln.strip()]
    assert [ln for ln, n in collections.Counter(lines).items() if n > 1] == []
    assert epochs_in_file(ws, rid) == [1, 2, 3, 4]  # each exactly once
    assert "runner step failed" not in ws.runner_log.read_text()
    jobs = cluster_jobs.history(ws.run_paths(rid).dir)
    assert [j.event for j in jobs] == ["submitted", "resumed"] and jobs[0].job_id != jobs[1].job_id
    assert "(relay folder)" in ws.run_paths(rid).log.read_text()
    scratch = list((tmp_path / "node-scratch").iterdir())
    assert len(scratch) == 1 and (scratch[0] / "events.jsonl").exists()
    assert (scratch[0] / "freeze_map.json").stat().st_size == 150_000
    assert not (ws.run_paths(rid).dir / "backup").exists()  # the worker never wrote the client's folder
    assert not (ws.run_paths(rid).dir / ".ship").exists()  # the staged copy went with the submission


def test_cancel_stops_the_ray_job(rws: Workspace, tmp_path: Path) -> None:
    ws = rws
    rid = queue_ops.add(ws, write_preset(tmp_path, epochs=30), executor="ray")[0].id
    script(ws, rid, epoch_seconds=1.0)
    wait_for(lambda: ws.get(rid).epoch >= 1, "the first epoch")
    queue_ops.cancel(ws, rid)
    wait_for(lambda: finished(ws, rid), "the cancel to land")
    rec = ws.get(rid)
    assert rec.status == "cancelled" and rec.epoch < 30
    from ray.job_submission import JobStatus, JobSubmissionClient

    sid = json.loads((ws.run_paths(rid).dir / "ray_job.json").read_text())["submission_id"]
    assert JobSubmissionClient(json_address(ws)).get_job_status(sid) in (JobStatus.STOPPED, JobStatus.SUCCEEDED)


def json_address(ws: Workspace) -> str:
    return (ws.root / "settings.toml").read_text().split('"')[1]


def test_killed_worker_fails_and_resumes_with_distinct_epochs(rws: Workspace, tmp_path: Path) -> None:
    ws = rws
    rid = queue_ops.add(ws, write_preset(tmp_path, epochs=5), executor="ray")[0].id
    script(ws, rid, epoch_seconds=0.8)
    wait_for(lambda: ws.get(rid).epoch >= 2, "epoch 2")
    pid = runstate.load(ws.run_paths(rid).events).pid
    assert pid and supervisor.is_alive(pid, None)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: finished(ws, rid), "the killed run to be recorded")
    rec = ws.get(rid)
    assert rec.status == "failed" and "SIGKILL" in (rec.reason or ""), rec.reason
    queue_ops.resume(ws, rid)
    wait_for(lambda: ws.get(rid).status == "completed", "the resumed run to complete")
    assert sorted(set(epochs_in_file(ws, rid))) == [1, 2, 3, 4, 5]
    starts = [ev for ev in protocol.read_events(ws.run_paths(rid).events) if isinstance(ev, Started)]
    assert len(starts) == 2 and starts[1].initial_epoch >= 2


def test_new_runner_reattaches_relay_job_without_duplicates(rws: Workspace, tmp_path: Path) -> None:
    ws = rws
    set_shared(ws, "false")
    rid = queue_ops.add(ws, write_preset(tmp_path, epochs=5), executor="ray")[0].id
    script(ws, rid, epoch_seconds=0.7)
    wait_for(lambda: epochs_in_file(ws, rid)[:1] == [1], "epoch 1 relayed")
    assert queue_ops.stop_runner(ws)  # the job goes on on the cluster; nobody relays its events
    time.sleep(2.0)
    queue_ops.ensure_runner(ws)  # a new runner re-attaches: the log replays from its start
    wait_for(lambda: finished(ws, rid), "the re-attached run to finish")
    rec = ws.get(rid)
    assert rec.status == "completed", rec.reason
    assert epochs_in_file(ws, rid) == [1, 2, 3, 4, 5]


def test_job_the_cluster_lost_is_interrupted_and_resumes(rws: Workspace, tmp_path: Path) -> None:
    ws = rws
    rid = queue_ops.add(ws, write_preset(tmp_path, epochs=3), executor="ray")[0].id
    script(ws, rid, epoch_seconds=3.0)
    wait_for(lambda: ws.get(rid).epoch >= 1, "epoch 1")
    assert queue_ops.stop_runner(ws)
    pid = runstate.load(ws.run_paths(rid).events).pid
    os.kill(pid, signal.SIGKILL)  # it dies unwatched, leaving no `finished` event
    job_file = ws.run_paths(rid).dir / "ray_job.json"
    real = json.loads(job_file.read_text())
    # as if the head lost the job with its node: the id the run names is unknown to the cluster
    job_file.write_text(json.dumps({**real, "submission_id": "tltui-gone-0"}))
    queue_ops.ensure_runner(ws)
    wait_for(lambda: finished(ws, rid), "the lost run to be marked")
    assert ws.get(rid).status == "interrupted"
    queue_ops.resume(ws, rid)
    wait_for(lambda: finished(ws, rid), "the resumed run")
    assert ws.get(rid).status == "completed", ws.get(rid).reason
    assert sorted(set(epochs_in_file(ws, rid))) == [1, 2, 3]


@pytest.mark.e2e
def test_real_worker_sweep_on_ray_via_cli(rws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tltui queue add --executor ray` with the real TensorFlow worker on a tiny generated folder."""
    from tltui.core import demo

    ws = rws
    monkeypatch.delenv("TLTUI_WORKER_CMD", raising=False)
    demo.generate(tmp_path / "data", per_class=16, size=32, shapes=("circle", "square"))
    preset = tmp_path / "sweep.toml"
    preset.write_text(
        'name = "e2e"\n[data]\nsource = "folder:data"\nimage_size = [32, 32]\nbatch_size = 8\naugment = false\n'
        '[model]\nbackbone = "tiny_cnn"\nweights = "none"\n[freeze]\ndepth = 0\n'
        '[train]\nepochs = 2\ncheckpoint_every = 1\n[sweep]\n"train.seed" = [1, 2]\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "tltui", "--workspace", str(ws.root), "queue", "add", str(preset), "--executor", "ray"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    ids = out.stdout.split()
    assert len(ids) == 2 and all(ws.get(r).executor == "ray" for r in ids)
    wait_for(lambda: finished(ws, *ids), "both real runs on Ray", timeout=400)
    for rid in ids:
        rec = ws.get(rid)
        assert rec.status == "completed", rec.reason
        assert epochs_in_file(ws, rid) == [1, 2] and rec.best_val_acc is not None
