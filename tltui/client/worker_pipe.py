"""A worker job that answers through a pipe of JSON lines: start it, read its records, stop it.

``python -m tltui.worker JOB TARGET... --out-fd N OPTIONS...`` is started with an argv list (no
shell), its stdout and stderr go to a log (a temporary file, or ``log_file``), and each line it writes to the pipe is decoded
by the job's ``decode`` into a record (yielded), an error message (``str``, raised as ``error_type``
once the worker exits) or ``None`` (skipped). A worker that dies without an error line is reported
with its exit and the last line of its log. :meth:`WorkerPipeJob.cancel` (any thread) stops the
worker (``stop_signal``: SIGKILL, or SIGTERM for a worker that cleans up after itself) and ends the
iteration quietly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from tltui.core.errors import TltuiError
from tltui.runner.supervisor import worker_command

R = TypeVar("R")
#: How long :meth:`WorkerPipeJob.close` waits for a worker to stop on ``stop_signal`` before SIGKILL.
STOP_GRACE_SECONDS = 10.0


def spawn(
    head: Sequence[str],
    targets: Sequence[str],
    options: Sequence[str],
    *,
    what: str,
    error_type: type[TltuiError],
    log: Any,
    env: Mapping[str, str] | None = None,
    popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
    stdin: int = subprocess.DEVNULL,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``HEAD... TARGET... --out-fd N OPTION...`` (``head``: the worker command and its job) in its
    own session, its output to ``log``; returns the process and the read end of its pipe. A worker that
    cannot start is one line: ``error_type("cannot start the WHAT worker (...): ...")``."""
    r, w = os.pipe()
    argv = [*head, *targets, "--out-fd", str(w), *options]
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    child_env["PYTHONUNBUFFERED"] = "1"
    try:
        proc = popen(
            argv,
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(w,),
            env=child_env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as e:
        os.close(r)
        raise error_type(f"cannot start the {what} worker ({argv[0]}): {e.strerror or e}") from None
    finally:
        os.close(w)
    return proc, r


def log_tail(log: Any) -> str:
    """The last non-empty line of a worker's ``log`` (a binary file open for reading; None: "")."""
    if log is None:
        return ""
    log.seek(0, os.SEEK_END)
    log.seek(max(0, log.tell() - 4096))
    lines = [ln.strip() for ln in log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


class WorkerPipeJob(Generic[R]):
    """One run of a worker job. Iterate it (once) to get its records as they arrive.

    ``ok_codes``: exit codes that are not a failure (the export worker exits 1 for an artifact
    that failed its verification, and says so in its result record). Use as a context manager (or
    call :meth:`close`) so the worker never outlives it.
    """

    def __init__(
        self,
        job: str,
        targets: Sequence[str],
        options: Sequence[str],
        *,
        decode: Callable[[bytes], R | str | None],
        error_type: type[TltuiError],
        ok_codes: Sequence[int] = (0,),
        stop_signal: int = signal.SIGKILL,
        log_file: str | os.PathLike[str] | None = None,
        worker_cmd: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
    ) -> None:
        self._cmd = list(worker_cmd or worker_command())
        self._job = job
        self._targets = list(targets)
        self._options = list(options)
        self._decode = decode
        self._error_type = error_type
        self._ok = tuple(ok_codes)
        self._stop_signal = stop_signal
        self._log_file = log_file
        self._env = env
        self._popen = popen
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self.returncode: int | None = None

    def __iter__(self) -> Iterator[R]:
        self._log = self._open_log()
        with self._lock:
            if self._cancelled.is_set():
                return
            self._proc, r = spawn(
                [*self._cmd, self._job],
                self._targets,
                self._options,
                what=self._job,
                error_type=self._error_type,
                log=self._log,
                env=self._env,
                popen=self._popen,
            )
        error: str | None = None
        with os.fdopen(r, "rb") as pipe:
            for line in pipe:
                rec = self._decode(line)
                if isinstance(rec, str):
                    error = rec
                elif rec is not None:
                    yield rec
        rc = self.returncode = self._proc.wait()
        if self._cancelled.is_set():
            return
        if error is not None:
            raise self._error_type(error)
        if rc not in self._ok:
            how = f"killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
            tail = self.log_tail()
            raise self._error_type(f"{self._job} worker {how}" + (f": {tail}" if tail else ""))

    def _open_log(self) -> Any:
        """Where the worker's output goes (closed in :meth:`close`): ``log_file``, else a temporary file."""
        if self._log_file:
            try:
                return open(self._log_file, "w+b")  # noqa: SIM115
            except OSError:
                pass  # a log that cannot be written must not stop the job
        return tempfile.TemporaryFile()  # noqa: SIM115

    def log_tail(self) -> str:
        """The last non-empty line the worker printed (TensorFlow, the converters, a traceback)."""
        return log_tail(self._log)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def cancel(self) -> None:
        """Stop the worker (idempotent, any thread); the iteration then ends quietly."""
        with self._lock:
            self._cancelled.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self._stop_signal)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def close(self) -> None:
        """Stop the worker if it still runs (after :data:`STOP_GRACE_SECONDS` of ``stop_signal``, SIGKILL)."""
        if self._proc is not None and self._proc.poll() is None:
            self.cancel()
            try:
                self._proc.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> WorkerPipeJob[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
