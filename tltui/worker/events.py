"""The worker's event writer: ``events.jsonl`` (the durable record) plus the live pipe.

Every event is appended to the run's ``events.jsonl`` and flushed before it goes
to the pipe, so a reader that sees an event on the pipe can also find it in the
file. The writer also keeps the run's summary (``events.summary.json``, rewritten
at each epoch's end: :class:`tltui.core.run_summary.Recorder`), which readers load
instead of folding every batch event. The pipe is best effort: when the reader is gone (EPIPE, closed fd) the
writer stops using it and training goes on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from pathlib import Path

from tltui.core import protocol, run_summary
from tltui.core.protocol import Event
from tltui.core.workspace import RunPaths


def ignore_sigpipe() -> None:
    """A closed pipe must show up as EPIPE on write, never kill the worker."""
    with contextlib.suppress(ValueError, OSError):  # not the main thread / no SIGPIPE
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def _end_torn_line(f: object) -> None:
    """A previous worker killed mid-line left the file without its last newline: end that line, so
    the torn part stays one unreadable line (readers skip it) instead of swallowing our first event."""
    with contextlib.suppress(OSError), open(f.name, "rb") as r:  # type: ignore[attr-defined]
        size = os.fstat(r.fileno()).st_size
        if size and os.pread(r.fileno(), 1, size - 1) != b"\n":
            f.write(b"\n")  # type: ignore[attr-defined]
            f.flush()  # type: ignore[attr-defined]


class EventWriter:
    """Writes events to ``RUN_DIR/events.jsonl`` and, while it works, to ``events_fd``."""

    def __init__(self, run_dir: str | os.PathLike[str], events_fd: int | None = None) -> None:
        self.path = RunPaths(Path(run_dir)).events
        self._file = open(self.path, "ab")  # noqa: SIM115 - lives as long as the writer
        _end_torn_line(self._file)
        self._summary = run_summary.Recorder(self.path)
        self._fd = events_fd
        self._lock = threading.Lock()  # the checkpoint writer's thread emits too
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.set_blocking(self._fd, True)

    @property
    def pipe_open(self) -> bool:
        return self._fd is not None

    def emit(self, event: Event, *, sync: bool = False) -> None:
        """Append one event (flushed; ``sync`` also fsyncs) and send it down the pipe."""
        line = protocol.encode(event).encode("utf-8")
        with self._lock:
            self._file.write(line)
            self._file.flush()
            if sync:
                self.sync()
            self._summary.add(line, os.fstat(self._file.fileno()).st_size)
            self._send(line)

    def sync(self) -> None:
        with contextlib.suppress(OSError):
            os.fsync(self._file.fileno())

    def _send(self, line: bytes) -> None:
        if self._fd is None:
            return
        view = memoryview(line)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as e:
            # EPIPE: the reader went away; EBADF: no such fd. Either way, file only from now on.
            if e.errno not in (errno.EPIPE, errno.EBADF, errno.EINVAL):
                raise
            self._close_pipe()

    def _close_pipe(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self.sync()
        self._file.close()
        self._close_pipe()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
