"""Runs as Slurm jobs, submitted through submitit (``[slurm]`` of ``<ws>/settings.toml``).

Each run is one job (``sbatch`` via :class:`submitit.AutoExecutor`) running the
usual worker on the run folder itself: a Slurm cluster shares its filesystem
(submitit needs that for its own files), so the worker writes
``events.jsonl`` where the TUI tails it and the runner follows it the same way
(:class:`SlurmJob` reads new lines every runner tick).

- Resources: ``partition``, ``time_limit`` (minutes), ``gpus`` (when a preset
  leaves ``train.gpus`` unset; default 0), ``cpus_per_task``, ``mem_gb``,
  ``account``, ``qos``, ``constraint``, ``additional`` (a table of extra
  ``#SBATCH`` options), ``setup`` (shell lines before the worker, e.g.
  ``module load cuda``), ``python`` (the interpreter on the nodes).
- Preemption and time limits: submitit signals the job (USR2) and calls
  :meth:`WorkerTask.checkpoint`, which stops the worker (SIGTERM: it saves its
  BackupAndRestore state) and requeues the same run with ``--resume``, so it
  goes on from the last completed epoch; at most ``max_requeues`` times.
- Status is asked of the scheduler at most every ``poll_interval`` seconds
  (default 30; sooner, once a second, only after the worker's ``finished``
  event). Node failures (``NODE_FAIL``, ``BOOT_FAIL``, an unrequeued
  ``PREEMPTED``...) make the run ``interrupted``; ``tltui resume`` continues it.
- ``cluster``: ``"slurm"`` (default); ``"local"`` runs the same submitit job as
  a local process (what the tests use, since there is no Slurm here).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tltui import protocol, runstate, supervisor
from tltui.executor import Executor, Job, JobStatus
from tltui.executors import missing_extra, settings_table
from tltui.protocol import Event, Finished
from tltui.workspace import RunRecord, Workspace, WorkspaceError, write_json

log = logging.getLogger("tltui.executors.slurm")

JOB_FILE = "slurm_job.json"
LOST_STATES = {"NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "DEADLINE", "REVOKED", "INTERRUPTED", "NO PROCESS AND NO RESULT"}
ALIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED",
                "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "UNKNOWN", "READY"}


def _submitit() -> Any:
    try:
        import submitit
    except ImportError as e:
        raise missing_extra("slurm", "slurm", e) from e
    return submitit


class WorkerTask:
    """What a Slurm job runs: the worker on the run folder; requeued with ``--resume`` on preemption."""

    def __init__(self, cmd: Sequence[str], run_dir: str, resume: bool) -> None:
        self.cmd = list(cmd)
        self.run_dir = run_dir
        self.resume = resume
        self._proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        return [*self.cmd, "train", self.run_dir, *(["--resume"] if self.resume else [])]

    def __call__(self) -> int:
        with open(Path(self.run_dir) / "worker.log", "ab") as out:  # the shared run folder, as for local runs
            self._proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            rc = self._proc.wait()
        if rc != 0:
            raise RuntimeError(f"worker exited with code {rc}")
        return rc

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on preemption/timeout: stop the worker cleanly, requeue it resuming."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            # not proc.wait(): the interrupted __call__ holds the Popen's wait lock; a zombie counts as gone
            deadline = time.monotonic() + 60
            while supervisor.is_alive(proc.pid, None) and time.monotonic() < deadline:
                time.sleep(0.1)
        submitit = _submitit()
        return submitit.helpers.DelayedSubmission(WorkerTask(self.cmd, self.run_dir, resume=True))

    def __getstate__(self) -> dict[str, Any]:
        return {"cmd": self.cmd, "run_dir": self.run_dir, "resume": self.resume}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["cmd"], state["run_dir"], state["resume"])  # type: ignore[misc]


class SlurmJob(Job):
    """A submitted job: events tailed from the shared ``events.jsonl``, status polled sparingly."""

    def __init__(self, ex: SlurmExecutor, run_id: str, job: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ex = ex
        self.run_id = run_id
        self.job = job
        self.pid = None
        self.clock = clock
        self.paths = ex.ws.run_paths(run_id)
        self.tail = protocol.EventTail(self.paths.events)
        self._finished_seen = False
        self._last_poll = float("-inf")
        self._final: JobStatus | None = None
        self.polls = 0

    def events(self) -> list[Event]:
        evs = self.tail.read_new()
        if any(isinstance(e, Finished) for e in evs):
            self._finished_seen = True
        return evs

    def _state(self) -> str:
        self.polls += 1
        try:
            state = self.job.state
            return str(state).split()[0].upper() if state else "UNKNOWN"
        except Exception as e:  # sacct/squeue hiccup: ask again next time
            log.warning("%s: job state of %s unavailable: %s", self.run_id, self.job.job_id, e)
            return "UNKNOWN"

    def status(self) -> JobStatus:
        if self._final is not None:
            return self._final
        now = self.clock()
        interval = min(1.0, self.ex.poll_interval) if self._finished_seen else self.ex.poll_interval
        if now - self._last_poll < interval:
            return JobStatus(alive=True)
        self._last_poll = now
        raw = self.job.get_info().get("jobState", "UNKNOWN") if self.ex.cluster == "local" else None
        state = str(raw).split()[0].upper() if raw else self._state()
        if raw is not None:
            self.polls += 1
            if raw == "NO PROCESS AND NO RESULT" and supervisor.is_alive(_int(self.job.job_id), None):
                state = "RUNNING"  # re-attached local job: its process is not our child
            else:
                state = {"FINISHED": "COMPLETED"}.get(state, state)
        if state in ALIVE_STATES:
            return JobStatus(alive=True)
        lost = state in LOST_STATES and not self._finished_seen
        rc: int | None = None
        if not lost:
            rc = 0
            with contextlib.suppress(Exception):
                exc = self.job.exception()
                if exc is not None:
                    rc = 1
                    with open(self.paths.log, "a", encoding="utf-8") as f:
                        f.write(f"slurm job {self.job.job_id} {state}: {str(exc).strip().splitlines()[-1]}\n")
            if state in ("FAILED", "OUT_OF_MEMORY", "TIMEOUT", "CANCELLED") and rc == 0:
                rc = 1
        self._final = JobStatus(alive=False, returncode=rc, lost=lost)
        return self._final

    def cancel(self, *, force: bool = False) -> None:
        if self.ex.cluster == "local":  # the test stand-in: signal the worker process itself
            pid = runstate.load(self.paths.events).pid
            if pid and supervisor.is_alive(pid, None):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
            return
        cmd = ["scancel", str(self.job.job_id)] if force else ["scancel", "--signal=TERM", "--full", str(self.job.job_id)]
        try:
            subprocess.run(cmd, check=False, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("%s: %s failed: %s", self.run_id, " ".join(cmd), e)


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        t = settings_table(ws, "slurm")
        self.settings = t
        self.cluster = str(os.environ.get("TLTUI_SLURM_CLUSTER") or t.get("cluster") or "slurm")
        if self.cluster not in ("slurm", "local", "debug"):
            raise WorkspaceError(f"{ws.root / 'settings.toml'}: [slurm] cluster must be \"slurm\" (or \"local\" for tests)")
        try:
            self.poll_interval = float(t.get("poll_interval", 30.0))
            self.time_limit = int(t.get("time_limit", 24 * 60))
            self.default_gpus = int(t.get("gpus", 0))
            self.max_requeues = int(t.get("max_requeues", 3))
        except (TypeError, ValueError) as e:
            raise WorkspaceError(f"{ws.root / 'settings.toml'}: [slurm]: a number is not a number ({e})") from e
        self.python = str(t.get("python") or sys.executable)

    def _worker_command(self) -> list[str]:
        if os.environ.get(supervisor.WORKER_CMD_ENV):
            return supervisor.worker_command()
        return [self.python, "-m", "tltui.worker"]

    def _folder(self, run_id: str) -> Path:
        return self.ws.run_paths(run_id).dir / "slurm"

    def parameters(self, run_id: str) -> dict[str, Any]:
        """submitit parameters for a run (generic names; ``slurm_*`` ones only reach Slurm)."""
        from tltui.runner import requested_gpus

        want = requested_gpus(self.ws, run_id)
        t = self.settings
        params: dict[str, Any] = {
            "name": f"tltui-{run_id}",
            "timeout_min": self.time_limit,
            "gpus_per_node": self.default_gpus if want is None else want,
            "cpus_per_task": int(t.get("cpus_per_task", 4)),
            "nodes": 1,
            "tasks_per_node": 1,
        }
        if "mem_gb" in t:
            params["mem_gb"] = float(t["mem_gb"])
        for key in ("partition", "account", "qos", "constraint"):
            if t.get(key):
                params[f"slurm_{key}"] = str(t[key])
        if t.get("additional"):
            params["slurm_additional_parameters"] = dict(t["additional"])
        if t.get("setup"):
            params["slurm_setup"] = [str(x) for x in t["setup"]]
        return params

    def _executor(self, run_id: str) -> Any:
        submitit = _submitit()
        ex = submitit.AutoExecutor(folder=self._folder(run_id), cluster=self.cluster,
                                   slurm_max_num_timeout=self.max_requeues)
        ex.update_parameters(**self.parameters(run_id))
        return ex

    def submit(self, run_id: str, *, gpus: Sequence[int], resume: bool) -> Job:
        paths = self.ws.run_paths(run_id)
        task = WorkerTask(self._worker_command(), str(paths.dir), resume)
        try:
            job = self._executor(run_id).submit(task)
        except WorkspaceError:
            raise
        except Exception as e:
            raise WorkspaceError(f"slurm submission failed: {e}") from e
        write_json(paths.dir / JOB_FILE, {"job_id": str(job.job_id), "cluster": self.cluster,
                                          "folder": str(self._folder(run_id)), "submitted": time.time()})
        with open(paths.log, "a", encoding="utf-8") as f:
            f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} slurm job {job.job_id} ({self.cluster}): "
                    f"{' '.join(task.argv())}\n")
        return SlurmJob(self, run_id, job)

    def adopt(self, rec: RunRecord) -> Job | None:
        try:
            info = json.loads((self.ws.run_paths(rec.id).dir / JOB_FILE).read_text())
        except (OSError, ValueError):
            return None
        submitit = _submitit()
        if info.get("cluster") in ("local", "debug"):
            from submitit.local.local import LocalJob

            if not supervisor.is_alive(_int(info.get("job_id")), None):
                return None
            job = LocalJob(info["folder"], info["job_id"])
        else:
            job = submitit.SlurmJob(info["folder"], info["job_id"])
        return SlurmJob(self, rec.id, job)

    def logs(self, run_id: str, lines: int = supervisor.LOG_TAIL_LINES) -> str:
        return super().logs(run_id, lines)
