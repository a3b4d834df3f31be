"""Progress of the long steps before epoch 1 (downloads, dataset preparation, decoding,
feature extraction) as :class:`tltui.core.protocol.Progress` events, at a bounded rate.

No TensorFlow here: the reporters are plain callables and a polling thread.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tltui.core.protocol import Progress

Emit = Callable[[Progress], None]
#: Seconds between two progress events of one reporter (the first and the last always go out).
MIN_INTERVAL = 1.0


class Reporter:
    """``update(done)`` as often as you like; an event leaves at most every ``interval`` seconds,
    with an ETA from the rate since the first update. ``finish()`` sends the final state."""

    def __init__(
        self,
        emit: Emit | None,
        phase: str,
        total: float | None,
        unit: str = "items",
        message: str = "",
        interval: float = MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit, self.phase, self.total, self.unit, self.message = emit, phase, total, unit, message
        self.interval, self.clock = interval, clock
        self.start: float | None = None  # the first update: a reporter made early does not count the wait
        self.done = 0.0
        self._last: float | None = None
        self._lock = threading.Lock()

    def update(self, done: float, *, force: bool = False) -> None:
        with self._lock:
            self.done = done
            now = self.clock()
            if self.start is None:
                self.start = now
            if not force and self._last is not None and now - self._last < self.interval:
                return
            self._last = now
            event = Progress(
                t=time.time(),
                phase=self.phase,
                done=float(done),
                total=self.total,
                unit=self.unit,
                eta=self.eta(now),
                message=self.message,
            )
        if self.emit is not None:
            self.emit(event)

    def advance(self, n: float = 1) -> None:
        self.update(self.done + n)

    def finish(self) -> None:
        """The final state, when anything was reported (a step that did nothing says nothing)."""
        if self._last is not None:
            self.update(self.total if self.total is not None else self.done, force=True)

    def eta(self, now: float) -> float | None:
        elapsed = now - (self.start if self.start is not None else now)
        if not self.total or self.done <= 0 or elapsed <= 0 or self.done >= self.total:
            return 0.0 if self.total and self.done >= self.total else None
        return (self.total - self.done) * elapsed / self.done


def tree_bytes(*roots: Path, match: Callable[[Path], bool] | None = None) -> int:
    """Bytes of the files under ``roots`` (only top-level entries that ``match``, when given);
    files vanishing meanwhile are skipped."""
    total = 0
    for root in roots:
        try:
            entries = list(root.iterdir())
        except OSError:
            continue
        for entry in entries:
            if match is not None and not match(entry):
                continue
            if entry.is_file():
                with contextlib.suppress(OSError):
                    total += entry.stat().st_size
                continue
            for dirpath, _dirs, files in os.walk(entry):
                for f in files:
                    with contextlib.suppress(OSError):
                        total += os.stat(os.path.join(dirpath, f)).st_size
    return total


@contextlib.contextmanager
def polling(tick: Callable[[], None], interval: float = MIN_INTERVAL, name: str = "progress") -> Iterator[None]:
    """Call ``tick()`` every ``interval`` seconds in a thread while the block runs (for work that
    reports nothing itself: a download into a folder, a dataset being written), e.g.
    ``polling(lambda: reporter.update(measure()))``."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception):  # a measurement racing the writer: try again next tick
                tick()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


_sink: Emit | None = None


def sink() -> Emit | None:
    """Where progress of deep calls (the Keras weights download) goes: the running trainer's
    event writer, or nowhere."""
    return _sink


@contextlib.contextmanager
def sending_to(emit: Emit | None) -> Iterator[None]:
    global _sink
    saved, _sink = _sink, emit
    try:
        yield
    finally:
        _sink = saved
