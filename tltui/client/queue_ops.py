"""Queue operations for clients: the CLI and the TUI both call these.

Every change is one registry transaction with a compare-and-set on the run's
status, so two clients (or a client and the runner) racing on one run never
lose or duplicate it. After a change the queue runner is woken (``SIGUSR1``)
or started. Errors a user can cause raise :class:`~tltui.core.workspace.WorkspaceError`
or :class:`~tltui.core.presets.PresetError` with one clear line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tltui.core import asha, runstate
from tltui.core.status import RunStatus
from tltui.core.workspace import PAUSED_KEY, RESUMABLE, RunRecord, Workspace, WorkspaceError
from tltui.runner import executor as executor_mod
from tltui.runner import supervisor

__all__ = [
    "add",
    "cancel",
    "resume",
    "move",
    "pause",
    "unpause",
    "runner_status",
    "needs_runner",
    "ensure_runner",
    "stop_runner",
    "wake_runner",
    "places_devices",
]

RUNNER_START_TIMEOUT = 15.0
_PKG_PARENT = Path(__file__).resolve().parents[2]
_spawned: list[subprocess.Popen[bytes]] = []  # runners this process started, reaped lazily


# ---------------------------------------------------------------------------- adding


def add(
    ws: Workspace,
    preset_path: str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None,
    *,
    start_runner: bool = True,
    executor: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[RunRecord]:
    """Validate a preset (+ ``--set`` overrides), expand its sweep and queue one run per combination.

    Raises :class:`PresetError` (each issue names file/line/field) before anything
    is recorded. ``warn`` receives the recipe warnings. Returns the new runs in
    queue order; with ``start_runner`` the queue runner is started if needed.
    ``executor=None``: the workspace's default (``$TLTUI_EXECUTOR``, else ``[executor] default``
    of its settings, else local), resolved here for the CLI and the app alike. A bad
    ``settings.toml`` (any table: the runner these runs go to would ignore it) is a
    :class:`PresetError` naming its lines, before anything is recorded.
    """
    from tltui.core import preflight, presets  # pydantic: only when adding
    from tltui.core.settings import Settings
    from tltui.runner.executors import default_executor

    settings = Settings.load(ws)
    executor_mod.EXECUTORS.check_settings(settings)  # an executor plugin's own table, with its model
    executor = executor or default_executor(ws, settings)
    if executor not in executor_mod.EXECUTORS:
        raise WorkspaceError(f"unknown executor {executor!r} (known: {', '.join(executor_mod.EXECUTORS)})")
    path = Path(preset_path)
    overrides = dict(overrides or {})
    preset = presets.load(path, overrides)
    report = preflight.require(preset, str(path), ws, overrides)
    runs = presets.expand(preset)
    # a cluster that cannot give the GPUs asked: the job would wait in its queue, so say it now
    cluster = executor_mod.capacity_warnings(ws, executor, (r.preset.train.gpus for r in runs))
    for w in [*report.warnings, *cluster]:
        if warn is not None:
            warn(w)
    specs = [(r.name, presets.dumps(r.preset), {**overrides, **r.overrides}) for r in runs]
    recs = ws.create_runs(
        specs, preset_name=preset.name, epochs=[r.preset.total_epochs for r in runs], executor=executor
    )
    if start_runner:
        ensure_runner(ws)
    else:
        wake_runner(ws)
    return recs


# ---------------------------------------------------------------------------- one run


def cancel(ws: Workspace, run_id: str) -> RunRecord:
    """Cancel a run. Queued: it leaves the queue (``cancelled``), no runner needed.
    Running: its supervisor asks the worker to stop (SIGTERM), kills it after the
    grace period, and records ``cancelled``; checkpoints stay. Returns the record
    as it is right after the request."""
    rid = ws.resolve_id(run_id)
    for _ in range(10):  # the run may change status between our read and our write
        rec = ws.get(rid)
        if rec.status == RunStatus.QUEUED:
            done = ws.update(
                rid,
                expect=[RunStatus.QUEUED],
                status=RunStatus.CANCELLED,
                queue_pos=None,
                finished=time.time(),
                reason="cancelled before it started",
                cancel_requested=False,
            )
            if done is not None:
                return done
        elif rec.status == RunStatus.RUNNING:
            done = ws.update(rid, expect=[RunStatus.RUNNING], cancel_requested=True)
            if done is not None:
                _deliver_cancel(ws, done)
                return done
        else:
            raise WorkspaceError(f"{rid}: is {rec.status}; only queued or running runs can be cancelled")
    raise WorkspaceError(f"{rid}: kept changing status; try again")


def _deliver_cancel(ws: Workspace, rec: RunRecord) -> None:
    status = runner_status(ws)
    runner_pid = status["pid"] if status else None
    if supervisor.is_alive(rec.owner_pid, rec.owner_start):
        if rec.owner_pid == runner_pid:
            wake_runner(ws)  # the runner signals the worker and escalates after the grace period
        else:
            executor_mod.signal_worker(rec)  # a foreground `tltui run` owns it and records the end
    else:
        ensure_runner(ws)  # nobody watches the worker: the runner adopts it and cancels it


def resume(ws: Workspace, run_id: str, *, start_runner: bool = True) -> RunRecord:
    """Queue a failed, cancelled or interrupted run again, in the same record; its
    worker continues from the last completed epoch (``--resume``)."""
    rid = ws.resolve_id(run_id)
    rec = ws.get(rid)
    if rec.status not in RESUMABLE:
        raise WorkspaceError(f"{rid}: is {rec.status}; only {', '.join(RESUMABLE)} runs can be resumed")
    st = runstate.load(ws.run_paths(rid).events)
    if rec.status == RunStatus.PAUSED:  # by hand: past every rung of its budgeted sweep, to its end
        asha.write_passed(ws.run_paths(rid).dir, asha.ALL_RUNGS)
    done = ws.requeue(rid, expect=RESUMABLE, resume=st.started_at is not None)
    if done is None:
        raise WorkspaceError(f"{rid}: changed meanwhile (now {ws.get(rid).status}); try again")
    if start_runner:
        ensure_runner(ws)
    return done


def move(ws: Workspace, run_id: str, to: int) -> None:
    """Put a queued run at 1-based position ``to`` (clamped to the queue)."""
    if to < 1:
        raise WorkspaceError(f"--to {to}: positions start at 1")
    ws.move(ws.resolve_id(run_id), to)
    wake_runner(ws)


# ---------------------------------------------------------------------------- the whole queue


def pause(ws: Workspace) -> None:
    """Start no new runs (running ones go on)."""
    ws.set_meta(PAUSED_KEY, "1")


def unpause(ws: Workspace, *, start_runner: bool = True) -> None:
    ws.set_meta(PAUSED_KEY, "0")
    if start_runner and ws.queue():
        ensure_runner(ws)
    else:
        wake_runner(ws)


def places_devices(executor: str) -> bool:
    """Whether runs of this executor go where it places them (a cluster's node and devices) rather
    than on the devices of this machine that the runner gives them: what a client shows as where a
    run executes (the app's runs table, ``queue ls``). The executor's
    :attr:`~tltui.runner.executor.Executor.places_devices`; a name not installed here counts as placing
    its own (:meth:`~tltui.runner.executor._Executors.places_devices`)."""
    return executor_mod.EXECUTORS.places_devices(executor)


# ---------------------------------------------------------------------------- the runner process


def runner_status(ws: Workspace) -> dict[str, Any] | None:
    """``{"pid", "pid_start", "started", "host", "workspace", "log"}`` of the live runner, else ``None``."""
    for p in list(_spawned):
        if p.poll() is not None:
            _spawned.remove(p)
    try:
        info = json.loads(ws.runner_info.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not supervisor.is_alive(info.get("pid"), info.get("pid_start")):
        return None
    if not _runner_lock_held(ws):  # e.g. a copy of a workspace whose runner is alive: that one is not ours
        return None
    info["log"] = str(ws.runner_log)
    return info


def _runner_lock_held(ws: Workspace) -> bool:
    """Whether a runner holds this workspace's ``runner.lock`` (its ``flock``, for its whole life): what ties
    ``runner.json``'s pid to this very workspace, however it is reached (a symlink, a bind mount), and not to
    the one it was copied from. ``True`` when it cannot tell (``runner.json`` decides then)."""
    try:
        fd = os.open(ws.runner_lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a moment only: a runner starting now retries its own
    except BlockingIOError:
        return True
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def needs_runner(ws: Workspace) -> bool:
    """Whether work is waiting for a runner: startable queued runs, or running runs
    whose supervisor died (their worker needs adopting or their end recording).
    Clients (the TUI at start) call :func:`ensure_runner` when this is true."""
    if ws.queue() and not ws.is_paused():
        return True
    return any(not supervisor.is_alive(r.owner_pid, r.owner_start) for r in ws.list_runs([RunStatus.RUNNING]))


def ensure_runner(ws: Workspace) -> int:
    """The pid of the workspace's queue runner, starting one (detached) if none runs.
    A running runner is woken to look at the registry now."""
    status = runner_status(ws)
    if status:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(status["pid"]), signal.SIGUSR1)
        return int(status["pid"])
    _rotate(ws.runner_log)
    env = dict(os.environ)
    # the runner imports this very tltui, whatever its cwd (-P: no cwd on sys.path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PKG_PARENT), env.get("PYTHONPATH")) if p)
    log = open(ws.runner_log, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "tltui.runner", "--workspace", str(ws.root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the terminal, the SSH session and this process
            close_fds=True,
            cwd=ws.root,
            env=env,
        )
    finally:
        log.close()
    _spawned.append(proc)
    deadline = time.monotonic() + RUNNER_START_TIMEOUT
    while time.monotonic() < deadline:
        status = runner_status(ws)
        code = proc.poll()
        # ours once it has described itself (until then runner.json may still name another: a copied
        # workspace's), or one another client started at the same moment (ours then found its lock taken)
        if status and (int(status["pid"]) == proc.pid or code == 0):
            return int(status["pid"])
        if code not in (None, 0):
            break
        time.sleep(0.05)
    raise WorkspaceError(f"the queue runner did not start; see {ws.runner_log}")


def _rotate(path: Path, limit: int = 1 << 20) -> None:
    """Keep the runner log bounded: past ``limit`` bytes it becomes ``runner.log.1``."""
    with contextlib.suppress(OSError):
        if path.stat().st_size > limit:
            os.replace(path, path.with_name(path.name + ".1"))


def wake_runner(ws: Workspace) -> bool:
    """Tell the runner the queue changed (it also checks on its own twice a second)."""
    status = runner_status(ws)
    if not status:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(int(status["pid"]), signal.SIGUSR1)
        return True
    return False


def stop_runner(ws: Workspace, timeout: float = 10.0) -> bool:
    """Stop the runner (running workers keep training; a later runner adopts them).
    Returns whether a runner was running."""
    status = runner_status(ws)
    if not status:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(status["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and runner_status(ws):
        time.sleep(0.05)
    return True
