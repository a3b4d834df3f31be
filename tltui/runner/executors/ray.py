"""Runs as Ray jobs: ``JobSubmissionClient.submit_job`` to the cluster in ``[ray] address``.

Each run is one Ray job whose entrypoint is :mod:`tltui.runner.executors.ray_relay` wrapping
the usual worker command (``python -m tltui.worker train RUN_DIR
--events-fd N [--resume]``), with ``entrypoint_num_gpus = train.gpus`` (0 when
unset) and ``entrypoint_num_cpus = [ray] num_cpus``.

How events reach the client, whatever the node's filesystem: the relay echoes
every event to the job's stdout with a prefix, and :class:`RayJob` follows the
job's log stream (``tail_job_logs``, a websocket, so no re-reading of the whole
log) in a thread. When the node does not share the run folder ("relay" mode,
detected per job with a token file the client writes just before submitting),
the client appends the events to its own ``events.jsonl`` (deduplicated by
line, so a re-attached tail that replays the log from the start adds
nothing); when it does ("shared" mode), the worker writes that file itself and
the stream only feeds the runner. Either way the TUI tails a local file and
sees an event as soon as the log stream brings it (a few hundred ms).

Status, cancel and logs are Ray's (``get_job_info``, ``stop_job``,
``get_job_logs``). A job Ray holds PENDING is ``pending`` with what it waits
for, and a cluster that stops answering is ``cluster unreachable`` at once
(:class:`tltui.runner.executor.JobStatus` ``sched_state``); a job Ray no longer
knows, whose supervisor died with its node, or a cluster unreachable for ``[ray]
lost_after`` seconds, makes the run ``interrupted``; ``tltui resume`` submits a
new job (any node) with ``--resume``. The job's output (without event lines)
reaches the run's ``worker.log`` as it arrives, so failure reasons read the same
as local runs. Each job is a line of the run's ``cluster_jobs.jsonl`` (its id and
dashboard page); a preset's ``[cluster.ray]`` sets what it reserves.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tltui.core import cluster_config, cluster_jobs, protocol
from tltui.core.cluster_jobs import ClusterJob
from tltui.core.protocol import Event
from tltui.core.settings import RaySettings
from tltui.core.status import SchedState
from tltui.core.workspace import RunRecord, Workspace, WorkspaceError, atomic_write, write_json
from tltui.runner import supervisor
from tltui.runner.executor import Executor, Job, JobStatus
from tltui.runner.executors import missing_extra
from tltui.runner.executors import ray_relay as event_relay

log = logging.getLogger("tltui.runner.executors.ray")

JOB_FILE = "ray_job.json"
STAGE_DIR = ".ship"  # the run's files for a job's working_dir, while submit_job uploads them
_LOST_ERRORS = {"JOB_SUPERVISOR_ACTOR_DIED", "JOB_SUPERVISOR_ACTOR_UNKNOWN_FAILURE"}
_NEVER_STARTED = {
    "JOB_SUPERVISOR_ACTOR_START_TIMEOUT",
    "JOB_SUPERVISOR_ACTOR_UNSCHEDULABLE",
    "JOB_SUPERVISOR_ACTOR_START_FAILURE",
    "RUNTIME_ENV_SETUP_FAILURE",
    "JOB_ENTRYPOINT_COMMAND_START_ERROR",
}


def _client_class() -> Any:
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as e:
        raise missing_extra("ray", "ray", e) from e
    return JobSubmissionClient


def _said(message: str | None) -> str:
    """Ray's message about a job in one line, without the copy of the job's last output it may append
    (``..., last available logs (truncated to 20,000 chars): ...``): the run's worker.log has that output."""
    first = (message or "").split(", last available logs", 1)[0]
    lines = supervisor.readable_lines(first.splitlines())
    return " ".join(lines)[:300]


def _asked(resources: Any) -> str:
    """What a Ray job asked to start, ``1 CPU, 1 GPU``, from its ``entrypoint_*`` (attributes of a ``JobInfo``, or
    the keys :meth:`RayExecutor.resources` gave ``submit_job``); ``""`` when it says none (the job server's
    ``JobDetails`` does not carry them)."""

    def get(name: str) -> Any:
        return resources.get(name) if isinstance(resources, dict) else getattr(resources, name, None)

    asked = [
        f"{n:g} {what}"
        for n, what in (
            (get("entrypoint_num_cpus"), "CPU"),
            (get("entrypoint_num_gpus"), "GPU"),
            ((get("entrypoint_memory") or 0) / 2**30, "GiB"),
        )
        if n
    ]
    asked += [f"{v:g} {k}" for k, v in (get("entrypoint_resources") or {}).items()]
    return ", ".join(asked)


def _not_found(e: Exception) -> bool:
    text = str(e)
    return isinstance(e, RuntimeError) and ("404" in text or "does not exist" in text or "not found" in text.lower())


class RayJob(Job):
    """One Ray job, followed through its log stream (a thread) and polled for status."""

    def __init__(self, ex: RayExecutor, run_id: str, submission_id: str) -> None:
        self.ex = ex
        self.run_id = run_id
        self.submission_id = submission_id
        self.pid = None
        self.paths = ex.ws.run_paths(run_id)
        self.mode: str | None = None
        self.node_host: str | None = None
        self.asked: dict[str, Any] = {}  # what the job reserves (``submit_job``'s entrypoint_*), when we submitted it
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._given: set[str] = set()  # event lines handed to the runner (a re-tail replays them)
        self._in_file: set[str] = set()  # event lines already in the local events.jsonl
        with contextlib.suppress(OSError):
            self._in_file = {ln.strip() for ln in self.paths.events.read_text("utf-8", "replace").splitlines()}
        # the job's output goes to worker.log as it arrives: the stream (or the whole log at the end, or a
        # re-attached tail) replays it from its start, so only lines past those already written are appended
        self._pos = 0  # output lines seen in this pass over the job's log
        self._written = self._lines_in_log()  # output lines of this job already in worker.log (a runner before us)
        self._partial = ""
        self._incoming: dict[str, int] = {}  # files coming back from the node: the next chunk of each
        self._r, self._w = os.pipe()
        for fd in (self._r, self._w):
            os.set_blocking(fd, False)
        self._stop = threading.Event()
        self._closed = False
        self._final: JobStatus | None = None
        self._cached = JobStatus(alive=True)
        self._last_poll = float("-inf")
        self._unreachable_since: float | None = None
        self._message = ""
        self._thread = threading.Thread(target=self._tail_loop, name=f"ray-tail-{run_id}", daemon=True)
        self._thread.start()

    def _lines_in_log(self) -> int:
        """Output lines of this job already in worker.log: the non-blank, non-``===`` lines after its header."""
        try:
            text = self.paths.log.read_text("utf-8", "replace")
        except OSError:
            return 0
        header = text.rfind(f"ray job {self.submission_id} at ")
        if header < 0:
            return 0
        after = text[header:].split("\n")[1:]
        return sum(1 for ln in after if ln.strip() and not ln.startswith("==="))

    # ------------------------------------------------------------ the log stream

    def _tail_loop(self) -> None:
        import asyncio

        while not self._stop.is_set():
            try:
                asyncio.run(self._tail_once())
                return  # the stream ended normally: the job is over
            except Exception as e:  # noqa: BLE001 - a dropped connection: re-attach (the log replays from its start)
                log.info("%s: log stream of %s broke (%s); re-attaching", self.run_id, self.submission_id, e)
            self._stop.wait(1.0)

    async def _tail_once(self) -> None:
        with self._lock:
            self._partial = ""
            self._pos = 0
        async for chunk in self.ex.client.tail_job_logs(self.submission_id):
            self._feed(chunk)
            if self._stop.is_set():
                return

    def _feed(self, chunk: str, *, final: bool = False) -> None:
        with self._lock:
            if self._closed:  # a later runner re-attaches and relays the rest
                return
            text = self._partial + chunk
            lines = text.split("\n")
            self._partial = "" if final else lines.pop()
            woke = False
            for line in lines:
                woke |= self._line(line.rstrip("\r"))
            if woke:  # under the lock: close() cannot hand this fd number to another file meanwhile
                with contextlib.suppress(OSError):
                    os.write(self._w, b"x")

    def _line(self, line: str) -> bool:
        kind, payload = event_relay.parse_line(line)
        if kind == "mode":
            with contextlib.suppress(ValueError, AttributeError):
                info = json.loads(payload)
                self.mode, self.node_host = info.get("mode"), info.get("host")
            return False
        if kind == "file":
            if self.mode == "relay":
                self._receive(payload)
            return False
        if kind == "log":
            if line.strip():
                self._pos += 1
                if self._pos > self._written:
                    with contextlib.suppress(OSError), open(self.paths.log, "a", encoding="utf-8") as f:
                        f.write(line + "\n")
                    self._written = self._pos
            return False
        if payload in self._given:
            return False
        ev = protocol.decode(payload)
        if ev is None:
            return False
        self._given.add(payload)
        if self.mode == "relay" and payload not in self._in_file:
            with open(self.paths.events, "a", encoding="utf-8") as f:
                f.write(payload + "\n")
            self._in_file.add(payload)
        self._events.append(ev)
        return True

    def _receive(self, payload: str) -> None:
        """A chunk of a file the worker wrote on the node (``model.keras``...): appended to ``.incoming-NAME`` in
        the run folder, which becomes ``NAME`` with its last chunk. Chunks come in order; one that is not the next
        (a re-attached stream replaying from the start) is skipped."""
        try:
            d = json.loads(payload)
            name, i, n, data = str(d["name"]), int(d["i"]), int(d["n"]), base64.b64decode(d["data"])
        except (ValueError, KeyError, TypeError):
            return
        if "/" in name or name.startswith(".") or name in event_relay.CLIENT_FILES or i != self._incoming.get(name, 0):
            return
        part = self.paths.dir / f".incoming-{name}"
        with open(part, "wb" if i == 0 else "ab") as f:
            f.write(data)
        self._incoming[name] = i + 1
        if i + 1 == n:
            os.replace(part, self.paths.dir / name)

    # ------------------------------------------------------------ Job

    def fileno(self) -> int | None:
        return None if self._final is not None or self._closed else self._r

    def events(self) -> list[Event]:
        with self._lock:
            if not self._closed:
                with contextlib.suppress(OSError):
                    while os.read(self._r, 4096):
                        pass
            out, self._events = self._events, []
        return out

    def status(self) -> JobStatus:
        if self._final is not None:
            return self._final
        now = time.monotonic()
        if now - self._last_poll < self.ex.settings.poll_interval:
            return self._cached
        self._last_poll = now
        from ray.job_submission import JobStatus as RayStatus

        try:
            info = self.ex.client.get_job_info(self.submission_id)
        except Exception as e:  # noqa: BLE001 - the Ray client raises its own and HTTP errors; _not_found tells them apart
            if _not_found(e):
                self._message = f"ray: job {self.submission_id} is gone from the cluster"
                gone = "the Ray job is gone from the cluster"
                return self._finish(JobStatus(alive=False, returncode=None, lost=True, cause=gone))
            if self._unreachable_since is None:
                self._unreachable_since = now
                log.warning("%s: Ray cluster at %s unreachable: %s", self.run_id, self.ex.settings.address, e)
                self._cached = replace(self._cached, sched_state=SchedState.UNREACHABLE, reason=None, since=time.time())
            if now - self._unreachable_since >= self.ex.settings.lost_after:
                lost_for = f"cluster unreachable for {self.ex.settings.lost_after:.0f} s"
                self._message = f"ray: {lost_for} (Ray at {self.ex.settings.address}; [ray] lost_after)"
                return self._finish(JobStatus(alive=False, returncode=None, lost=True, cause=lost_for))
            return self._cached
        self._unreachable_since = None
        if not info.status.is_terminal():
            self._cached = JobStatus(alive=True)
            if info.status == RayStatus.PENDING:
                asked = _asked(info) or _asked(self.asked)
                reason = f"waiting for {asked}" if asked else "waiting for resources"
                self._cached = JobStatus(alive=True, sched_state=SchedState.PENDING, reason=reason)
            return self._cached
        rc = info.driver_exit_code
        error = str(getattr(info.error_type, "value", info.error_type) or "")
        said = _said(info.message)
        self._message = f"ray: job {self.submission_id} {info.status.value}" + (f": {said}" if said else "")
        cause = None
        if error in _NEVER_STARTED:  # no worker ever ran: not "exited with code 1"
            asked = _asked(info) or _asked(self.asked)
            cause = f"never started on the Ray cluster ({said or error}" + (
                f"; it asked for {asked})" if asked else ")"
            )
        elif error in _LOST_ERRORS:
            cause = "the Ray job's supervisor died (its node or the cluster went away)"
        lost = False
        if info.status == RayStatus.SUCCEEDED:
            rc = 0 if rc is None else rc
        elif info.status == RayStatus.STOPPED:
            rc = -signal.SIGTERM if rc is None else rc
        elif rc is None:
            lost = error in _LOST_ERRORS
            rc = None if lost else 1
        if rc is not None and rc > 128 and rc - 128 in signal.Signals._value2member_map_:
            rc = -(rc - 128)  # a shell in between reports a signal as 128 + N
        return self._finish(JobStatus(alive=False, returncode=rc, lost=lost, cause=cause))

    def _finish(self, st: JobStatus) -> JobStatus:
        """The job is over: let the stream drain, fetch the whole log once (deduplicated), keep the output."""
        self._thread.join(timeout=3.0)
        self._stop.set()
        full = None
        with contextlib.suppress(Exception):
            full = self.ex.client.get_job_logs(self.submission_id)
        if full is not None:
            with self._lock:
                self._pos = 0
                self._partial = ""
            self._feed(full, final=True)
        with contextlib.suppress(OSError), open(self.paths.log, "a", encoding="utf-8") as f:
            f.write(f"=== ray job {self.submission_id} ended on {self.node_host or '?'} ({self.mode or '?'} folder)\n")
            if self._message:
                f.write(self._message + "\n")
        self._final = st
        return st

    def cancel(self, *, force: bool = False) -> None:
        try:
            self.ex.client.stop_job(self.submission_id)  # SIGTERM; Ray kills after RAY_JOB_STOP_WAIT_TIME_S
        except Exception as e:  # noqa: BLE001 - a stop that fails is logged; the job's state still decides
            log.warning("%s: stop_job(%s) failed: %s", self.run_id, self.submission_id, e)

    def close(self) -> None:
        self._stop.set()
        if self.ex._live.get(self.run_id) is self:
            del self.ex._live[self.run_id]
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._r, self._w):
                with contextlib.suppress(OSError):
                    os.close(fd)


class RayExecutor(Executor):
    """Submits runs to the Ray cluster named in ``[ray]`` of ``<ws>/settings.toml``.

    Settings (all optional): ``address`` (also ``$TLTUI_RAY_ADDRESS``; default
    ``http://127.0.0.1:8265``), ``num_cpus`` (per run, default 1),
    ``default_gpus`` (when a preset leaves ``train.gpus`` unset, default 0),
    ``shared_fs`` (``"auto"``, ``true`` or ``false``: whether nodes see the
    workspace at the same path), ``python`` (the interpreter on the nodes,
    default this one), ``env_vars`` (a table passed to the job),
    ``poll_interval`` (s, default 0.5), ``lost_after`` (s of an unreachable
    cluster before runs count as interrupted, default 120), ``stop_wait``
    (s from SIGTERM to SIGKILL on cancel, default 30), ``submit_retry`` (s a submission is
    retried while the cluster refuses it, default 15). :class:`tltui.core.settings.RaySettings`
    validates them; a problem with ``[ray]`` fails the run that needed it, one elsewhere does not.
    """

    name = "ray"
    places_devices = True  # Ray places each job on a node with its GPUs
    settings_model = RaySettings
    settings: RaySettings

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws)
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._live: dict[str, RayJob] = {}  # the one RayJob per run that follows its job's log stream

    def _own(self, job: RayJob) -> RayJob:
        """Make ``job`` the only follower of its run: one left over (never closed by its owner) stops, so two
        log tails never both append a relayed event to ``events.jsonl``."""
        old = self._live.get(job.run_id)
        if old is not None and old is not job:
            log.warning("%s: a second follower of %s: closing the first", job.run_id, old.submission_id)
            old.close()
        self._live[job.run_id] = job
        return job

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                cls = _client_class()
                try:
                    self._client = cls(self.settings.address)
                except Exception as e:
                    raise WorkspaceError(
                        f"cannot reach the Ray cluster at {self.settings.address} ({e}); check [ray] address in settings.toml"
                    ) from e
            return self._client

    @property
    def python(self) -> str:
        """The interpreter with tltui on the nodes (``[ray] python``, else this one)."""
        return self.settings.python or sys.executable

    @property
    def shared(self) -> str:
        """``[ray] shared_fs`` as the relay's ``--shared`` says it: ``yes``, ``no`` or ``auto``."""
        shared_fs = self.settings.shared_fs
        return "auto" if shared_fs == "auto" else "yes" if shared_fs else "no"

    def _worker_command(self) -> list[str]:
        if os.environ.get(supervisor.WORKER_CMD_ENV):
            return supervisor.worker_command()
        return [self.python, "-m", "tltui.worker"]

    def submit(self, run_id: str, *, gpus: Sequence[int], resume: bool) -> Job:
        paths = self.ws.run_paths(run_id)
        want = self.ws.requested_gpus(run_id)
        n_gpus = self.settings.default_gpus if want is None else want
        token = secrets.token_hex(8)
        atomic_write(paths.dir / event_relay.TOKEN_FILE, token)
        env = {k: v for k, v in os.environ.items() if k.startswith("TLTUI_") and k != supervisor.WORKER_CMD_ENV}
        env.update(PYTHONUNBUFFERED="1", RAY_JOB_STOP_WAIT_TIME_S=str(self.settings.stop_wait))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1"))
        if n_gpus == 0:
            env["CUDA_VISIBLE_DEVICES"] = "-1"
        env[event_relay.FILES_ENV] = ""
        runtime_env: dict[str, Any] = {"env_vars": env}
        stage = paths.dir / STAGE_DIR
        if self.shared != "yes":
            try:
                env[event_relay.FILES_ENV] = event_relay.pack_files(paths.dir, with_events=resume)
            except ValueError as e:
                # too large for an environment variable: Ray uploads them as the job's working directory
                log.info("%s; shipping them as the Ray job's working_dir instead", e)
                runtime_env["working_dir"] = str(event_relay.stage_files(paths.dir, stage, with_events=resume))
                env[event_relay.SHIPPED_ENV] = "1"
        env.update(self.settings.env_vars)
        cmd = [
            self.python,
            "-m",
            "tltui.runner.executors.ray_relay",
            "--run-dir",
            str(paths.dir),
            "--token",
            token,
            "--shared",
            self.shared,
            "--",
            *self._worker_command(),
            "train",
            "{run_dir}",
            "--events-fd",
            "0",
        ]
        if resume:
            cmd.append("--resume")
        sid = f"tltui-{run_id}-{time.strftime('%Y%m%d%H%M%S')}-{token[:6]}"
        write_json(
            paths.dir / JOB_FILE, {"address": self.settings.address, "submission_id": sid, "submitted": time.time()}
        )
        deadline = time.monotonic() + self.settings.submit_retry
        resources = self.resources(run_id, n_gpus)
        try:
            while True:
                try:
                    self.client.submit_job(
                        entrypoint=shlex.join(cmd),
                        submission_id=sid,
                        runtime_env=runtime_env,
                        metadata={"tltui_run": run_id, "tltui_workspace": str(self.ws.root)},
                        **resources,
                    )
                    break
                except WorkspaceError:
                    raise
                except Exception as e:
                    # a head that is starting up answers "No available agent ... try again later"
                    if "try again" in str(e) and time.monotonic() < deadline:
                        time.sleep(1.0)
                        continue
                    raise WorkspaceError(f"Ray cluster at {self.settings.address} refused the job: {e}") from e
        finally:  # submit_job has uploaded it (or failed)
            shutil.rmtree(stage, ignore_errors=True)
        with open(paths.log, "a", encoding="utf-8") as f:
            f.write(
                f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} ray job {sid} at {self.settings.address}: {shlex.join(cmd)}\n"
            )
        event = "resumed" if resume else "submitted"
        cluster_jobs.record(paths.dir, ClusterJob("ray", sid, time.time(), event, dashboard=self.dashboard(sid)))
        job = self._own(RayJob(self, run_id, sid))
        job.asked = resources
        return job

    def resources(self, run_id: str, n_gpus: int) -> dict[str, Any]:
        """What the run's job reserves (``submit_job``'s ``entrypoint_*``): ``[ray] num_cpus``, the run's GPUs, and
        what its preset's ``[cluster.ray]`` sets instead (CPUs, memory, custom resources)."""
        own = cluster_config.for_run(self.ws.run_paths(run_id).preset).ray
        out: dict[str, Any] = {
            "entrypoint_num_cpus": self.settings.num_cpus if own.num_cpus is None else own.num_cpus,
            "entrypoint_num_gpus": n_gpus,
        }
        if own.memory_gb is not None:
            out["entrypoint_memory"] = int(own.memory_gb * 2**30)
        if own.resources:
            out["entrypoint_resources"] = dict(own.resources)
        return out

    def cluster_gpus(self) -> float | None:
        """The most GPUs one live node of the cluster has (a job's GPUs must fit on one node), from the dashboard's
        state API; ``None`` when it does not answer."""
        import urllib.request

        url = f"{self.settings.address.rstrip('/')}/api/v0/nodes?limit=10000"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - the cluster's own http address
                nodes = json.loads(r.read())["data"]["result"]["result"]
            return max(
                (float((n.get("resources_total") or {}).get("GPU", 0)) for n in nodes if n.get("state") == "ALIVE"),
                default=0.0,
            )
        except Exception as e:  # noqa: BLE001 - unreachable, an older Ray without the state API: cannot tell
            log.info("GPUs of the Ray cluster at %s unknown: %s", self.settings.address, e)
            return None

    def capacity_warnings(self, gpus: int | None) -> list[str]:
        n = self.settings.default_gpus if gpus is None else gpus
        if not n:
            return []
        most = self.cluster_gpus()
        if most is None or most >= n:
            return []
        has = f"no node has {n} GPU{'s' if n != 1 else ''} (the most: {most:g})" if most else "it has no GPU"
        return [
            f"train.gpus = {n}, but the Ray cluster at {self.settings.address}: {has}; the run's job would wait "
            "in Ray's queue (`pending`) until such a node joins"
        ]

    def dashboard(self, submission_id: str) -> str | None:
        """The job's page on Ray's dashboard (the job server's address is the dashboard's), if it has one."""
        address = self.settings.address.rstrip("/")
        return f"{address}/#/jobs/{submission_id}" if address.startswith(("http://", "https://")) else None

    def job_id(self, run_id: str) -> str | None:
        try:
            return str(json.loads((self.ws.run_paths(run_id).dir / JOB_FILE).read_text())["submission_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def adopt(self, rec: RunRecord) -> Job | None:
        sid = self.job_id(rec.id)
        if sid is None:
            return None
        try:
            self.client.get_job_info(sid)
        except Exception as e:  # noqa: BLE001 - the Ray client raises its own and HTTP errors; _not_found tells them apart
            if _not_found(e):
                return None
            log.warning(
                "%s: Ray cluster at %s unreachable while adopting (%s); watching anyway",
                rec.id,
                self.settings.address,
                e,
            )
        return self._own(RayJob(self, rec.id, sid))

    def logs(self, run_id: str, lines: int = supervisor.LOG_TAIL_LINES) -> str:
        sid = self.job_id(run_id)
        if sid is not None:
            with contextlib.suppress(Exception):
                text = self.client.get_job_logs(sid)
                out = [ln.strip() for ln in text.splitlines() if ln.strip() and event_relay.parse_line(ln)[0] == "log"]
                return " | ".join(out[-lines:])
        return super().logs(run_id, lines)


def job_file(ws: Workspace, run_id: str) -> Path:
    return ws.run_paths(run_id).dir / JOB_FILE
