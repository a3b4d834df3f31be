"""Start a worker process for a run and turn what it does into registry updates.

Used by ``tltui run`` (foreground) and by the queue runner. Stdlib only. The
worker writes every event to its ``events.jsonl`` itself; the pipe is only the
live channel, so losing this process never loses data.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tltui.core import protocol, runstate
from tltui.core.protocol import EpochEnd, Event, Finished, Started
from tltui.core.status import RunStatus
from tltui.core.workspace import Workspace

#: Replaces ``python -m tltui.worker`` (a JSON list); tests point it at a scripted fake worker.
WORKER_CMD_ENV = "TLTUI_WORKER_CMD"
LOG_TAIL_LINES = 5


def worker_command() -> list[str]:
    raw = os.environ.get(WORKER_CMD_ENV)
    if raw:
        cmd = json.loads(raw)
        if not isinstance(cmd, list) or not all(isinstance(x, str) for x in cmd):
            raise ValueError(f"{WORKER_CMD_ENV} must be a JSON list of strings")
        return cmd
    return [sys.executable, "-m", "tltui.worker"]


def process_start_time(pid: int) -> float | None:
    """When a process started (seconds since boot, from /proc), to tell a pid's owner apart
    from a later process that reuses the number. ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode()
        fields = stat[stat.rindex(")") + 2 :].split()
        return float(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def is_alive(pid: int | None, start: float | None) -> bool:
    if not pid:
        return False
    now_start = process_start_time(pid)
    if now_start is None:
        return False
    if start is not None and abs(now_start - start) > 0.05:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().decode().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class WorkerProc:
    """A started worker: its process and the read end of its event pipe."""

    run_id: str
    proc: subprocess.Popen[bytes]
    fd: int
    started: float = field(default_factory=time.time)
    _buf: bytes = b""
    _eof: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def fileno(self) -> int:
        return self.fd

    def read_events(self) -> list[Event]:
        """Events available on the pipe now (non-blocking). Sets ``eof`` when the writer is gone."""
        out: list[Event] = []
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._eof = True
                break
            self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            ev = protocol.decode(line)
            if ev is not None:
                out.append(ev)
        return out

    @property
    def eof(self) -> bool:
        return self._eof

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)


def spawn_worker(
    ws: Workspace,
    run_id: str,
    *,
    resume: bool = False,
    gpus: Sequence[int] | None = None,
    env: Mapping[str, str] | None = None,
    popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
) -> WorkerProc:
    """Start ``python -m tltui.worker train RUN_DIR`` in its own session.

    ``gpus``: device indexes for ``CUDA_VISIBLE_DEVICES`` (empty: CPU only;
    ``None``: leave the environment as it is). Output goes to the run's log.
    """
    paths = ws.run_paths(run_id)
    r, w = os.pipe()
    os.set_blocking(r, False)
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    child_env["PYTHONUNBUFFERED"] = "1"
    if gpus is not None:
        child_env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        child_env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus) if gpus else "-1"
    cmd = [*worker_command(), "train", str(paths.dir), "--events-fd", str(w)]
    if resume:
        cmd.append("--resume")
    with open(paths.log, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cmd)}\n".encode())
        log.flush()
        try:
            proc = popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(w,),
                env=child_env,
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            os.close(r)  # a long-lived runner must not leak a pipe per failed start
            raise
        finally:
            os.close(w)
    return WorkerProc(run_id, proc, r)


# ---------------------------------------------------------------------------- registry side


def record_started(
    ws: Workspace, run_id: str, pid: int, gpus: Sequence[int] | None = None, *, here: bool = True
) -> None:
    """Mark a run running with worker ``pid``; the calling process becomes its owner
    (a queue runner adopts a running run only when its owner is gone). ``here``: the worker runs on this
    host; else (a cluster job) the host stays unknown until the scheduler or the worker names its node."""
    me = os.getpid()
    ws.update(
        run_id,
        status=RunStatus.RUNNING,
        pid=pid,
        pid_start=process_start_time(pid),
        owner_pid=me,
        owner_start=process_start_time(me),
        host=socket.gethostname() if here else None,
        gpus=list(gpus) if gpus is not None else None,
        started=time.time(),
        reason=None,
        finished=None,
        queue_pos=None,
    )


def record_state(ws: Workspace, run_id: str, state: runstate.RunState) -> None:
    """The registry's summary columns from a whole state (a run adopted mid-way: what
    :func:`record_event` would have written for its events so far)."""
    if state.epochs is not None:
        ws.update(run_id, epochs=state.epochs)
    if state.epochs_done or state.finished is not None:
        _record_progress(ws, run_id, state)


def record_event(ws: Workspace, run_id: str, ev: Event, state: runstate.RunState) -> None:
    """Keep the registry's summary columns (progress, the kept epoch) in step with the events."""
    if isinstance(ev, EpochEnd | Finished):
        _record_progress(ws, run_id, state)
    elif isinstance(ev, Started):
        ws.update(run_id, epochs=ev.epochs)


def _record_progress(ws: Workspace, run_id: str, state: runstate.RunState) -> None:
    kept = state.kept() or {}
    ws.update(
        run_id,
        epoch=state.epochs_done,
        best_val_acc=kept.get("val_acc"),
        best_val_top5_acc=kept.get("val_top5_acc"),
        best_epoch=kept.get("epoch"),
    )


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return " | ".join(readable_lines(text.splitlines())[-lines:])


#: A relayed event line (``@@tltui-event {...}``: a cluster's copy of the output) or a Python warning
#: (``path:12: UserWarning: ...``, then its source line): what a failure reason leaves out of a log's tail.
_RELAYED = "@@tltui-"
_WARNING = re.compile(r"^\S+:\d+: \w*Warning: ")


def readable_lines(lines: Sequence[str]) -> list[str]:
    """The lines of a log a person reads for why a run ended, stripped: no blank lines, no ``===`` headers, no
    relayed event lines, no Python warnings (a Keras ``UserWarning`` is rarely why a run died) nor the source
    line Python prints under each."""
    out: list[str] = []
    after_warning = False
    for line in lines:
        warned, after_warning = after_warning, False
        if not line.strip() or line.startswith("===") or _RELAYED in line:
            continue
        if _WARNING.match(line):
            after_warning = True
            continue
        if warned and line.startswith("  "):
            continue
        out.append(line.strip())
    return out


def exit_reason(returncode: int | None, state: runstate.RunState, log_path: Path, cause: str | None = None) -> str:
    """Why a worker that sent no ``finished`` event ended, in one line that starts with what happened (``cause``
    when the executor knows it, else the signal or the exit code) and where (the last completed epoch), then the
    readable tail of its log."""
    if cause:
        how = cause
    elif returncode is not None and returncode < 0:
        try:
            how = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"killed by signal {-returncode}"
    elif returncode is None:
        how = "worker vanished"
    else:
        how = f"worker exited with code {returncode}"
    where = f" after epoch {state.epochs_done}" if state.epochs_done else " before the first epoch ended"
    tail = log_tail(log_path)
    return f"{how}{where}" + (f"; log: {tail}" if tail else "")


def events_size(path: Path) -> int:
    """How long a run's ``events.jsonl`` is now (0: none yet): taken before a worker starts, it tells that
    worker's events from its predecessors' (:func:`record_exit`'s ``since``)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def finished_since(path: Path, since: int) -> bool:
    """Whether a ``finished`` event was written at or after byte ``since`` of ``path`` (a file now shorter than
    ``since`` was replaced: all of it is new)."""
    tail = protocol.EventTail(path)
    tail.offset = since if events_size(path) >= since else 0
    while True:
        at = tail.offset
        if any(isinstance(ev, Finished) for ev in tail.read_new(1 << 20)):
            return True
        if tail.offset == at:
            return False


def record_exit(
    ws: Workspace,
    run_id: str,
    returncode: int | None,
    *,
    cancelled: bool = False,
    interrupted: bool = False,
    cause: str | None = None,
    since: int | None = None,
) -> str:
    """Set the final status of a run whose worker is gone, from its events file.

    Returns the status written. A ``finished`` event decides; without one the run
    is ``cancelled`` (we asked it to stop), ``interrupted`` (we lost track of it)
    or ``failed`` with the exit reason and the tail of its log. ``since``: the size of
    ``events.jsonl`` before this worker started (:func:`events_size`); a ``finished``
    before it is an earlier worker's (a run paused at a rung, resumed, whose new worker
    ended before writing anything) and decides nothing.
    """
    paths = ws.run_paths(run_id)
    state = runstate.load(paths.events)
    fin: Finished | None = state.finished
    if fin is not None and since is not None and not finished_since(paths.events, since):
        fin = None
    if fin is not None:
        status, reason = fin.status, fin.reason or None
    elif cancelled:
        status, reason = RunStatus.CANCELLED, f"cancelled after epoch {state.epochs_done}"
    elif interrupted:
        status, reason = RunStatus.INTERRUPTED, exit_reason(returncode, state, paths.log, cause)
    else:
        status, reason = RunStatus.FAILED, exit_reason(returncode, state, paths.log, cause)
    kept = state.kept() or {}
    ws.update(
        run_id,
        status=status,
        reason=reason,
        pid=None,
        pid_start=None,
        finished=time.time(),
        epoch=state.epochs_done,
        best_val_acc=kept.get("val_acc"),
        best_val_top5_acc=kept.get("val_top5_acc"),
        best_epoch=kept.get("epoch"),
        cancel_requested=False,
    )
    return status
