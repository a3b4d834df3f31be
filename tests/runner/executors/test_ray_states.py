"""What a Ray job's states become for the runner, with a scripted job client (no cluster): pending and why,
an unreachable cluster at once, a job that never started, and failure reasons without Ray's copy of the log."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray.job_submission")

from ray.job_submission import JobStatus as RayStatus  # noqa: E402

from tests.helpers import wait_for, write_preset  # noqa: E402
from tltui.client import queue_ops  # noqa: E402
from tltui.core.status import SchedState  # noqa: E402
from tltui.core.workspace import Workspace  # noqa: E402
from tltui.runner.executors.ray import RayExecutor, RayJob  # noqa: E402


class ScriptedRay:
    """The part of ``JobSubmissionClient`` a ``RayJob`` uses; ``info`` or ``error`` is the next answer."""

    def __init__(self) -> None:
        self.info: Any = None
        self.error: Exception | None = None
        self.chunks: list[str] = []  # what the log stream brings
        self.logs = ""  # the whole log, at the end

    async def tail_job_logs(self, sid: str) -> AsyncIterator[str]:
        for chunk in self.chunks:
            yield chunk

    def get_job_info(self, sid: str) -> Any:
        if self.error is not None:
            raise self.error
        return self.info

    def get_job_logs(self, sid: str) -> str:
        return self.logs


def info(status: RayStatus, **kw: Any) -> Any:
    base = dict(
        message=None,
        error_type=None,
        driver_exit_code=None,
        entrypoint_num_cpus=1,
        entrypoint_num_gpus=1,
        entrypoint_memory=None,
        entrypoint_resources=None,
    )
    return types.SimpleNamespace(status=status, **{**base, **kw})


@pytest.fixture
def job(ws: Workspace, tmp_path: Path) -> Iterator[tuple[RayJob, ScriptedRay]]:
    rid = queue_ops.add(ws, write_preset(tmp_path), start_runner=False, executor="ray")[0].id
    ex = RayExecutor(ws)
    client = ScriptedRay()
    ex._client = client
    j = RayJob(ex, rid, "tltui-r0001-x")
    yield j, client
    j.close()


def poll(j: RayJob) -> Any:
    j._last_poll = float("-inf")  # ask now, whatever poll_interval says
    return j.status()


def test_pending_unreachable_and_running_again(job: tuple[RayJob, ScriptedRay]) -> None:
    j, client = job
    client.info = info(RayStatus.PENDING)
    st = poll(j)
    assert st.alive and st.sched_state == SchedState.PENDING and st.reason == "waiting for 1 CPU, 1 GPU"
    # the job server's JobDetails carries no entrypoint_*: what we submitted says it
    client.info = types.SimpleNamespace(status=RayStatus.PENDING)
    j.asked = {"entrypoint_num_cpus": 2, "entrypoint_num_gpus": 0, "entrypoint_memory": 2**31}
    assert poll(j).reason == "waiting for 2 CPU, 2 GiB"
    client.error = ConnectionError("Failed to connect")
    st = poll(j)
    assert st.alive and st.sched_state == SchedState.UNREACHABLE and st.since is not None
    since = st.since
    assert poll(j).since == since  # counted from when it stopped answering
    client.error = None
    client.info = info(RayStatus.RUNNING)
    st = poll(j)
    assert st.alive and st.sched_state is None


def test_a_job_that_never_started_says_so_not_exit_code_1(job: tuple[RayJob, ScriptedRay]) -> None:
    j, client = job
    client.info = info(
        RayStatus.FAILED,
        error_type="JOB_SUPERVISOR_ACTOR_START_TIMEOUT",
        message="Job supervisor actor failed to start within 900.0 seconds. This timeout can be configured.",
    )
    st = poll(j)
    assert not st.alive and st.cause is not None
    assert st.cause.startswith("never started on the Ray cluster (Job supervisor actor failed to start within 900")
    assert "it asked for 1 CPU, 1 GPU" in st.cause


def test_rays_copy_of_the_output_stays_out_of_the_log_and_the_reason(job: tuple[RayJob, ScriptedRay]) -> None:
    j, client = job
    client.info = info(
        RayStatus.FAILED,
        error_type="JOB_ENTRYPOINT_COMMAND_ERROR",
        driver_exit_code=137,
        message="Job entrypoint command failed with exit code 137, last available logs (truncated to 20,000 "
        'chars):\n@@tltui-event {"type": "batch"}\nKilled\n',
    )
    st = poll(j)
    assert not st.alive and st.returncode == -9 and st.cause is None  # killed by SIGKILL says it all
    log = j.paths.log.read_text()
    assert "@@tltui" not in log and "FAILED: Job entrypoint command failed with exit code 137" in log


def test_a_presets_cluster_ray_table_sets_what_its_jobs_reserve(ws: Workspace, tmp_path: Path) -> None:
    (ws.root / "settings.toml").write_text("[ray]\nnum_cpus = 2\n")
    extra = '[cluster.ray]\nmemory_gb = 1.5\nresources = { "accelerator_type:A100" = 1 }\n'
    plain, own = (
        queue_ops.add(ws, write_preset(tmp_path, extra=x), start_runner=False, executor="ray")[0].id
        for x in ("", extra)
    )
    ex = RayExecutor(ws)
    assert ex.resources(plain, 0) == {"entrypoint_num_cpus": 2, "entrypoint_num_gpus": 0}
    assert ex.resources(own, 1) == {
        "entrypoint_num_cpus": 2,
        "entrypoint_num_gpus": 1,
        "entrypoint_memory": int(1.5 * 2**30),
        "entrypoint_resources": {"accelerator_type:A100": 1.0},
    }


def test_the_jobs_output_reaches_worker_log_while_it_runs_and_once(ws: Workspace, tmp_path: Path) -> None:
    rid = queue_ops.add(ws, write_preset(tmp_path), start_runner=False, executor="ray")[0].id
    log = ws.run_paths(rid).log
    log.write_text("\n=== 2026-12-07 10:00:00 ray job tltui-x at http://127.0.0.1:8265: python -m ...\n")
    ex = RayExecutor(ws)
    client = ScriptedRay()
    client.chunks = ['loading data\n@@tltui-event {"type": "batch"}\nepoch 1 ', "done\n"]
    ex._client = client
    j = RayJob(ex, rid, "tltui-x")
    try:
        wait_for(lambda: "epoch 1 done" in log.read_text(), "the job's output in worker.log")
        assert "@@tltui" not in log.read_text()
        client.logs = 'loading data\n@@tltui-event {"type": "batch"}\nepoch 1 done\nsaved model\n'
        client.info = info(RayStatus.SUCCEEDED, driver_exit_code=0)
        assert poll(j).returncode == 0
    finally:
        j.close()
    lines = log.read_text().splitlines()
    assert lines.count("loading data") == 1 and lines.count("epoch 1 done") == 1 and "saved model" in lines
    assert lines[-2].startswith("=== ray job tltui-x ended on")


WRAPPER = """
import pathlib, subprocess, sys
fd = int(sys.argv[sys.argv.index("--events-fd") + 1])
rc = subprocess.call([sys.executable, {fake!r}, *sys.argv[1:]], pass_fds=(fd,))
pathlib.Path(sys.argv[2], "model.keras").write_bytes(bytes(range(256)) * 1000)  # 256 KB: several chunks
sys.exit(rc)
"""


def test_without_a_shared_folder_big_run_files_go_and_the_model_comes_back(ws: Workspace, tmp_path: Path) -> None:
    """Relay mode end to end without a cluster: run files over the environment variable's limit go as the job's
    working directory (what Ray uploads), and the files the worker wrote come back through the job's output into
    the client's run folder, byte for byte, once, however often the output is replayed."""
    import os
    import subprocess
    import sys

    from tests.runner.executors.test_ray_relay import FAKE
    from tltui.runner.executors import ray_relay

    rid = queue_ops.add(ws, write_preset(tmp_path, epochs=2), start_runner=False, executor="ray")[0].id
    run = ws.run_paths(rid).dir
    (run / "freeze_map.json").write_text("x" * 150_000)  # a big layer map: over the 96 KiB of an env variable
    with pytest.raises(ValueError):
        ray_relay.pack_files(run, with_events=False)
    stage = ray_relay.stage_files(run, tmp_path / "uploaded", with_events=False)
    wrapper = tmp_path / "worker.py"
    wrapper.write_text(WRAPPER.format(fake=str(FAKE)))
    cmd = [sys.executable, "-m", "tltui.runner.executors.ray_relay", "--run-dir", str(run), "--token", "t"]
    cmd += ["--shared", "no", "--", sys.executable, str(wrapper), "train", "{run_dir}", "--events-fd", "0"]
    env = {**os.environ, "TLTUI_FAKE_EPOCH_SECONDS": "0.02", ray_relay.SHIPPED_ENV: "1"}
    env[ray_relay.SCRATCH_ENV] = str(tmp_path / "node")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=stage, env=env)
    assert out.returncode == 0, out.stderr
    scratch = next((tmp_path / "node").iterdir())
    assert (scratch / "freeze_map.json").read_text() == "x" * 150_000  # shipped, whatever its size
    ex = RayExecutor(ws)
    client = ScriptedRay()
    client.chunks = [out.stdout, out.stdout]  # a re-attached stream replays it all
    client.logs = out.stdout
    ex._client = client
    j = RayJob(ex, rid, "tltui-x")
    try:
        wait_for(lambda: (run / "model.keras").exists(), "the model back in the client's run folder")
        client.info = info(RayStatus.SUCCEEDED, driver_exit_code=0)
        assert poll(j).returncode == 0
    finally:
        j.close()
    assert (run / "model.keras").read_bytes() == bytes(range(256)) * 1000
    assert not list(run.glob(".incoming-*"))
    assert (run / "freeze_map.json").read_text() == "x" * 150_000  # unchanged on the node: not sent back
    lines = [ln for ln in (run / "events.jsonl").read_text().splitlines() if ln.strip()]
    assert len(lines) == len(set(lines)) and any('"finished"' in ln for ln in lines)
