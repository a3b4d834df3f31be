"""Periodic checkpoints (``checkpoints/epoch-NNNN.keras``) and the atomic writers they and
``model.keras`` use; a full disk becomes :class:`DiskFull`, whose reason names the file and the disk."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import keras

from tltui.core.protocol import Checkpoint
from tltui.worker.archive import ArchivePlan, BackgroundWriter
from tltui.worker.events import EventWriter


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


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Every ``every`` epochs, ``checkpoints/epoch-NNNN.keras``, written atomically.

    The training thread only copies the variables (see :mod:`tltui.worker.archive`); the archive is
    written on a background thread while the next epoch trains, one at a time, and its ``checkpoint``
    event is sent when the file is in place. :meth:`drain` waits for it (fit's end does; the trainer
    also does when fit raises, so a stopped run keeps its last checkpoint). A model the fast writer
    cannot save (TF Hub assets) is saved with ``model.save`` on the training thread, as before.
    """

    def __init__(
        self,
        directory: Path,
        every: int,
        writer: EventWriter,
        export_model: keras.Model | None = None,
        resumed_after: int = 0,
    ) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.every = every
        self.writer = writer
        # The model to save when fit trains another one that shares its layers (the feature cache's head).
        self.export_model = export_model
        # A resumed run restarts after this epoch, with its state restored (EpochBackup runs first).
        self.resumed_after = resumed_after
        self._plan: ArchivePlan | None = None
        self._fast = True
        self._background = BackgroundWriter("tltui-checkpoint")

    def on_train_begin(self, logs: dict | None = None) -> None:
        # a worker killed mid-save leaves its hidden temporary file behind: never list it as a checkpoint
        remove_stale_temps(self.directory, self.directory.parent)
        # Killed after its epoch's backup and events but before its checkpoint was on disk (the write runs
        # in the background): the restored state is that epoch's, so write the checkpoint now.
        done = self.resumed_after
        if done > 0 and self.every > 0 and done % self.every == 0 and not self.path(done).exists():
            self.save(done)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        done = epoch + 1
        if self.every <= 0 or done % self.every:
            return
        self.save(done)

    def path(self, epoch: int) -> Path:
        return self.directory / f"epoch-{epoch:04d}.keras"

    def save(self, done: int) -> None:
        """``checkpoints/epoch-{done}.keras`` from the model's state now."""
        self._background.wait()  # the previous checkpoint is on disk (or its error is raised here)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(done)
        model = self.export_model or self.model
        plan = self._plan_for(model)
        if plan is None:
            save_atomic(model, path)
            self._announce(done, path)
            return
        values, config = plan.snapshot(), plan.config_json()

        def write() -> None:
            write_checkpoint(plan, path, values, config)
            self._announce(done, path)

        self._background.submit(write)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # a failed write (disk full) stops the run at the next step, not at the next checkpoint
        if self._background.failed:
            self._background.wait()

    def on_train_end(self, logs: dict | None = None) -> None:
        self._background.wait()

    def drain(self) -> BaseException | None:
        """Wait for the checkpoint in flight; its error is returned, not raised (for ``finally``)."""
        return self._background.drain()

    def _plan_for(self, model: keras.Model) -> ArchivePlan | None:
        if not self._fast:
            return None
        if self._plan is None or self._plan.model is not model or not self._plan.current:
            self._plan = ArchivePlan.of(model)
            self._fast = self._plan is not None
        return self._plan

    def _announce(self, epoch: int, path: Path) -> None:
        self.writer.emit(Checkpoint(t=time.time(), epoch=epoch, path=str(path)))


def remove_stale_temps(*directories: Path) -> None:
    """Delete the ``.NAME.PID.tmp.keras`` files :func:`write_atomic` leaves when its process is killed
    (and the archive writer's ``.NAME.PID.tmp.keras.h5``)."""
    for d in directories:
        for pattern in (".*.tmp.keras", ".*.tmp.keras.h5"):
            for tmp in Path(d).glob(pattern):
                with contextlib.suppress(OSError):
                    tmp.unlink()


def save_atomic(model: keras.Model, path: Path) -> None:
    """``model.save`` to a temporary ``.keras`` next to ``path``, then ``os.replace``."""
    write_atomic(path, model.save)


def write_checkpoint(plan: ArchivePlan, path: Path, values: list, config_json: str) -> None:
    """What ``save_atomic`` does, from a snapshot (:mod:`tltui.worker.archive`); any thread."""
    write_atomic(path, lambda tmp: plan.write(tmp, values, config_json))


def write_atomic(path: Path, fill: Callable[[Path], object]) -> None:
    """``fill(tmp)`` writes a hidden temporary file next to ``path``; fsync, then ``os.replace``. A kill
    leaves ``path`` as it was (and a temporary file that :func:`remove_stale_temps` deletes)."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        fill(tmp)
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
