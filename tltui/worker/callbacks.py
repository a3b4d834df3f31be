"""Keras callbacks of the training worker: event streaming, stop requests, atomic checkpoints."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import keras

from tltui.protocol import METRIC_KEYS, Batch, Checkpoint, EpochBegin, EpochEnd
from tltui.worker.events import EventWriter

#: At most this many batch events per second (plus the last step of each epoch).
BATCH_EVENTS_PER_SECOND = 10.0


class StopRequested(Exception):
    """SIGTERM/SIGINT arrived; raised at the next batch end so no partial epoch is recorded."""


class NaNLoss(Exception):
    def __init__(self, epoch: int, step: int, value: float = math.nan) -> None:
        self.epoch, self.step = epoch, step
        what = "NaN" if math.isnan(value) else "infinite"
        super().__init__(
            f"loss became {what} at epoch {epoch} batch {step}: lower the learning rate "
            "(train.learning_rate) or check the data"
        )


class DiskFull(Exception):
    """ENOSPC while saving a checkpoint or the model: the reason names the file and the disk."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        super().__init__(disk_full_reason(self.path))


def disk_full_reason(path: str | os.PathLike[str]) -> str:
    path = Path(path)
    what = "the checkpoint at " if path.parent.name == "checkpoints" else ""
    free = ""
    with contextlib.suppress(OSError):
        free = f", {shutil.disk_usage(path.parent).free / 1e6:.0f} MB free now"
    return (
        f"disk full while writing {what}{path}: free space on that disk (df -h {path.parent}{free}), "
        "then resume the run; earlier checkpoints are kept"
    )


def current_lr(model: keras.Model) -> float | None:
    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except Exception:  # noqa: BLE001 - no optimizer or an exotic schedule: leave it out
        return None


class EventStream(keras.callbacks.Callback):
    """Turns fit's progress into protocol events; stops on request; fails on NaN loss.

    ``should_stop`` is polled at every batch end (train and validation); a stop
    raises :class:`StopRequested` instead of setting ``stop_training``, because
    Keras would still validate and end the cut-short epoch, and the backup would
    then count it as done.
    """

    def __init__(
        self,
        writer: EventWriter,
        steps: int | None,
        should_stop: Callable[[], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.writer = writer
        self.steps = steps
        self.should_stop = should_stop
        self.clock = clock
        self.epoch = 0
        self._epoch_start = 0.0
        self._last_batch_event = 0.0
        self.epochs_done = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch + 1
        self._epoch_start = self.clock()
        self._last_batch_event = 0.0
        self.writer.emit(EpochBegin(t=self._epoch_start, epoch=self.epoch))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        step = batch + 1
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NaNLoss(self.epoch, step, float(loss))
        if self.should_stop():
            raise StopRequested()
        now = self.clock()
        last = self.steps is not None and step >= self.steps
        if last or now - self._last_batch_event >= 1.0 / BATCH_EVENTS_PER_SECOND:
            self._last_batch_event = now
            self.writer.emit(Batch(t=now, epoch=self.epoch, step=step, steps=self.steps, metrics=_metrics(logs)))

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.should_stop():
            raise StopRequested()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = self.clock()
        self.epochs_done = epoch + 1
        self.writer.emit(
            EpochEnd(
                t=now,
                epoch=epoch + 1,
                metrics=_metrics(logs or {}),
                lr=current_lr(self.model),
                epoch_seconds=round(now - self._epoch_start, 3),
            ),
            sync=True,
        )


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Every ``every`` epochs, ``checkpoints/epoch-NNNN.keras``, written atomically."""

    def __init__(self, directory: Path, every: int, writer: EventWriter, export_model: keras.Model | None = None) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.every = every
        self.writer = writer
        # The model to save when fit trains another one that shares its layers (the feature cache's head).
        self.export_model = export_model

    def on_train_begin(self, logs: dict | None = None) -> None:
        # a worker killed mid-save leaves its hidden temporary file behind: never list it as a checkpoint
        remove_stale_temps(self.directory, self.directory.parent)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        done = epoch + 1
        if self.every <= 0 or done % self.every:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"epoch-{done:04d}.keras"
        save_atomic(self.export_model or self.model, path)
        self.writer.emit(Checkpoint(t=time.time(), epoch=done, path=str(path)))


def remove_stale_temps(*directories: Path) -> None:
    """Delete the ``.NAME.PID.tmp.keras`` files :func:`save_atomic` leaves when its process is killed."""
    for d in directories:
        for tmp in Path(d).glob(".*.tmp.keras"):
            with contextlib.suppress(OSError):
                tmp.unlink()


def save_atomic(model: keras.Model, path: Path) -> None:
    """``model.save`` to a temporary ``.keras`` next to ``path``, then ``os.replace``."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DiskFull(path) from e
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _metrics(logs: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in METRIC_KEYS:
        v = logs.get(k)
        if v is not None:
            with contextlib.suppress(TypeError, ValueError):
                out[k] = float(v)
    return out
