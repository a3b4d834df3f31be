"""Keras callbacks of the training worker: event streaming, stop requests, atomic checkpoints."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tltui.core.protocol import METRIC_KEYS, Batch, Checkpoint, EpochBegin, EpochEnd
from tltui.worker import kept as kept_mod
from tltui.worker.archive import ArchivePlan, BackgroundWriter, read_values
from tltui.worker.events import EventWriter
from tltui.worker.kept import KEPT_PREFIX, KeptWeights

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
    """The learning rate of the optimizer's last step (what the epoch that just ended trained with
    at its end; ``optimizer.learning_rate`` is the rate of the *next* step under a schedule)."""
    try:
        opt = model.optimizer
        inner = getattr(opt, "inner_optimizer", opt)  # mixed_float16: the LossScaleOptimizer's is a dummy
        lr = getattr(inner, "_learning_rate", None)
        if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
            step = max(0, int(keras.ops.convert_to_numpy(inner.iterations)) - 1)
            return float(keras.ops.convert_to_numpy(lr(step)))
        return float(keras.ops.convert_to_numpy(inner.learning_rate))
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
        self._min_gap = 1.0 / BATCH_EVENTS_PER_SECOND
        self.epochs_done = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch + 1
        self._epoch_start = self.clock()
        self._last_batch_event = 0.0
        self.writer.emit(EpochBegin(t=self._epoch_start, epoch=self.epoch))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # The per-batch path stays nearly free: a flag, one finiteness check, one clock read; the metrics
        # dict is built only for an emitted batch (the first, then <= BATCH_EVENTS_PER_SECOND, and the
        # last). fit has already made the logs Python floats (any per-batch hook makes it do so).
        if self.should_stop():
            raise StopRequested()
        step = batch + 1
        loss = logs.get("loss") if logs else None
        if loss is not None:
            with contextlib.suppress(TypeError, ValueError):
                loss = float(loss)
                if not math.isfinite(loss):
                    raise NaNLoss(self.epoch, step, loss)
        now = self.clock()
        if now - self._last_batch_event < self._min_gap and (self.steps is None or step < self.steps):
            return
        self._last_batch_event = now
        self.writer.emit(Batch(t=now, epoch=self.epoch, step=step, steps=self.steps, metrics=_metrics(logs or {})))

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.should_stop():
            raise StopRequested()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = self.clock()
        self.epochs_done = epoch + 1
        metrics = _metrics(logs or {})
        seconds = round(now - self._epoch_start, 3)
        self.writer.emit(
            EpochEnd(t=now, epoch=epoch + 1, metrics=metrics, lr=current_lr(self.model), epoch_seconds=seconds),
            sync=True,
        )
        # worker.log's line per epoch (fit runs with verbose=0)
        shown = " - ".join(f"{k}: {v:.4f}" for k, v in metrics.items())
        print(f"epoch {epoch + 1} - {seconds:.1f}s - {shown}", file=sys.stderr, flush=True)


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


class EpochScalars(keras.callbacks.Callback):
    """What ``keras.callbacks.TensorBoard(write_graph=False)`` writes by default, for less: the epoch
    scalars (``epoch_loss``, ``epoch_acc``, ..., ``epoch_learning_rate``) in ``LOG_DIR/train`` and
    ``LOG_DIR/validation``, step = epoch index. Keras's callback also has a per-batch hook (which makes
    fit convert every batch's logs and call ``tf.summary.scalar`` for each, recording nothing at
    ``update_freq="epoch"``); this one has none."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers: dict[str, object] = {}

    def _writer(self, name: str) -> object:
        if name not in self._writers:
            import tensorflow as tf

            self._writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self._writers[name]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import tensorflow as tf

        logs = dict(logs or {})
        lr = current_lr(self.model)
        if lr is not None:
            logs["learning_rate"] = lr
        for name, keys in (
            ("train", [k for k in logs if not k.startswith("val_")]),
            ("validation", [k for k in logs if k.startswith("val_")]),
        ):
            if not keys:
                continue
            w = self._writer(name)
            with w.as_default():  # type: ignore[attr-defined]
                for k in keys:
                    tf.summary.scalar(f"epoch_{k.removeprefix('val_')}", float(logs[k]), step=epoch)
            w.flush()  # type: ignore[attr-defined]

    def on_train_end(self, logs: dict | None = None) -> None:
        for w in self._writers.values():
            w.close()  # type: ignore[attr-defined]
        self._writers.clear()


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


def _metrics(logs: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in METRIC_KEYS:
        v = logs.get(k)
        if v is not None:
            with contextlib.suppress(TypeError, ValueError):
                out[k] = float(v)
    return out


#: BackupAndRestore-compatible file names (``double_checkpoint``: the previous copy ends in ``.bkp``).
BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_META = "training_metadata.json"
#: The ``format`` attribute of a backup written by :class:`EpochBackup`: format 2 also holds the
#: random-seed states (Dropout's SeedGenerator) after the weights; format 1 (older runs) does not.
BACKUP_FORMAT = "tltui-backup-2"
_WEIGHTS_ONLY_FORMAT = "tltui-backup-1"
#: The best epoch's weights kept for early stopping: ``best-EPOCH.weights.h5`` in the backup folder.
BEST_PREFIX = "best-"


def backup_state(model: keras.Model, *, seeds: bool = False, optimizer: bool = True) -> list:
    """Every variable a resume needs, in a fixed order: the model's weights (with BatchNorm statistics;
    what ``save_weights`` saves), with ``seeds`` the states of its random-seed generators (Dropout
    masks continue where they were), then (with ``optimizer``) the optimizer's (iterations, moments)."""
    out = list(model.weights)
    if seeds:
        known = {id(v) for v in out}
        out += [v for v in model.variables if id(v) not in known]
    opt = getattr(model, "optimizer", None) if optimizer else None
    if opt is not None:
        if not opt.built:
            opt.build(model.trainable_variables)
        out += list(opt.variables)
    return out


class EarlyStop(keras.callbacks.EarlyStopping):
    """``keras.callbacks.EarlyStopping`` whose state survives a resume: :class:`EpochBackup` saves
    :meth:`state` (best value, patience count, best epoch) and the best weights with every backup
    and hands them back to :meth:`restore` after ``on_train_begin`` has reset them. Put it before
    :class:`EpochBackup` in the callbacks, so an epoch's backup holds that epoch's decision."""

    def state(self) -> dict:
        best = self.best
        return {
            "best": None if best is None else float(best),
            "wait": int(self.wait),
            "best_epoch": int(self.best_epoch),
            "stopped_epoch": int(self.stopped_epoch),
        }

    def restore(self, state: dict, best_weights: list | None) -> None:
        if state.get("best") is not None:
            self.best = float(state["best"])
        self.wait = int(state.get("wait", 0))
        self.best_epoch = int(state.get("best_epoch", 0))
        self.stopped_epoch = int(state.get("stopped_epoch", 0))
        if best_weights is not None:
            self.best_weights = best_weights

    @property
    def kept_epoch(self) -> int | None:
        """The (1-based) epoch whose weights ``on_train_end`` restores, if any."""
        return self.best_epoch + 1 if self.restore_best_weights and self.best_weights is not None else None


class EpochBackup(keras.callbacks.Callback):
    """``keras.callbacks.BackupAndRestore(save_freq="epoch", double_checkpoint=True, delete_checkpoint=False)``,
    at a fraction of its cost, with the same files in ``backup/``, and more state: the random-seed
    generators and (with ``early_stopping``) :class:`EarlyStop`'s state and best weights, so a resumed
    run continues exactly as the uninterrupted one would have.

    Keras walks the whole layer tree and writes one HDF5 dataset per variable (about a second of CPU
    per epoch for MobileNetV2 + Adam). This callback snapshots the variables to numpy and writes one
    dataset per dtype (all values of that dtype concatenated), with the shapes and the epoch as
    attributes. Crash safety, for a kill -9 at any instant:

    0. a new best epoch's weights go to their own file (``best-EPOCH.weights.h5``, temp + replace);
    1. the current pair (weights + metadata) becomes the previous copy (``.bkp``): the weights by a
       hard link (a copy where links are not supported), the metadata by a copy; the current pair
       stays intact meanwhile;
    2. the new weights go to a temporary file, then ``os.replace`` (never torn);
    3. the new metadata likewise (it names the best-weights file it goes with);
    4. best-weights files that neither metadata names are deleted.

    Between 2 and 3 the weights say epoch N and the metadata N-1: :func:`tltui.worker.train.repair_backup`
    sees the mismatch (the ``epoch`` attribute) and uses the previous copy, which is consistent.
    Backups written by Keras's BackupAndRestore (older runs) are restored with ``model.load_weights``.

    A phased run (``[[phases]]``) trains one ``fit`` per phase, each with its own optimizer. The
    metadata says which phase a backup belongs to (``phase`` from 0, ``phase_start``: the epochs done
    before it); :meth:`save_boundary` writes the state at a phase's end (weights and seeds, after early
    stopping restored its best epoch, no optimizer) with ``phase_complete``, and the next phase's
    ``on_train_begin`` restores only that: it trains with a new optimizer, as an uninterrupted run does.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        early_stopping: EarlyStop | None = None,
        moved: Any = None,
        phase: int = 0,
        phase_start: int = 0,
        kept: KeptWeights | None = None,
    ) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.kept = kept  # the run's kept epoch (train.restore_best): considered at each epoch end
        self.phase, self.phase_start = phase, phase_start
        self.moved = moved  # a tltui.worker.moved.MovedWeights: fed the same snapshot, at no extra read
        self.weights = self.directory / BACKUP_WEIGHTS
        self.meta = self.directory / BACKUP_META
        self.early_stopping = early_stopping
        self._best_file: str | None = None  # the best-weights file this process wrote or restored

    # ------------------------------------------------------------------ restore

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not (self.meta.is_file() and self.weights.is_file()):
            return  # a fresh start (train.py's repair_backup leaves a complete pair or nothing)
        meta = json.loads(self.meta.read_text())
        if not self.model.built:
            raise ValueError("the model must be built before fit() to restore its backup")
        if meta.get("phase_complete"):  # the previous phase's end: weights and seeds, a new optimizer
            if meta.get("phase", 0) != self.phase - 1 or not load_backup(self.model, self.weights, optimizer=False):
                raise ValueError(f"the backup {self.weights} is not the end of phase {self.phase}: start the run again")
            self.model._initial_epoch = meta["epoch"]
            return
        if meta.get("phase", 0) != self.phase:
            raise ValueError(
                f"the backup {self.weights} belongs to another phase: start the run again without --resume"
            )
        if not load_backup(self.model, self.weights):
            opt = self.model.optimizer
            if opt is not None and not opt.built:
                opt.build(self.model.trainable_variables)
            self.model.load_weights(str(self.weights))  # a backup written by Keras's BackupAndRestore
        self.model._initial_epoch = meta["epoch"]
        es_state = meta.get("early_stopping")
        if self.early_stopping is not None and isinstance(es_state, dict):
            best = None
            if es_state.get("weights"):
                best = read_backup(self.directory / es_state["weights"])
                self._best_file = es_state["weights"]
            self.early_stopping.restore(es_state, best)

    # ------------------------------------------------------------------ save

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.save(epoch + 1, logs=logs)

    def save_boundary(self, model: keras.Model, epoch: int) -> None:
        """The end of this phase (after ``epoch``): what the next phase starts from."""
        self.set_model(model)
        self.save(epoch, boundary=True)

    def save(self, epoch: int, *, boundary: bool = False, logs: dict | None = None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        values = read_values(backup_state(self.model, seeds=True, optimizer=not boundary))
        meta: dict = {"epoch": epoch, "batch": 0}
        if self.phase or self.phase_start or boundary:
            meta.update(phase=self.phase, phase_start=self.phase_start)
        if boundary:
            meta["phase_complete"] = True
        try:
            if self.early_stopping is not None and not boundary:
                meta["early_stopping"] = self.early_stopping.state()
                meta["early_stopping"]["weights"] = self._save_best()
            if self.weights.exists() and self.meta.exists():
                _link_or_copy(self.weights, self.weights.with_name(BACKUP_WEIGHTS + ".bkp"))
                _replace_with(self.meta.with_name(BACKUP_META + ".bkp"), self.meta.read_bytes())
            _write_replacing(self.weights, lambda tmp: write_backup(tmp, values, epoch))
            if self.kept is not None:
                if not boundary:  # the file the classifier trains in is linked; the head's is not the whole model
                    self.kept.consider(epoch, logs, self.weights if self.model is self.kept.model else None)
                meta["kept"] = self.kept.state()
            _replace_with(self.meta, json.dumps(meta).encode())
            self._remove_unreferenced_best()
            if self.moved is not None and not boundary:
                self.moved.record(values[: len(self.model.weights)], epoch)  # the model that trains (fit's)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise DiskFull(self.weights) from e
            raise

    def _save_best(self) -> str | None:
        """The file holding early stopping's best weights (written when the best epoch changed)."""
        es = self.early_stopping
        assert es is not None
        if es.best_weights is None:
            return None
        name = f"{BEST_PREFIX}{es.best_epoch + 1:04d}.weights.h5"
        if name != self._best_file:
            weights = [np.asarray(w) for w in es.best_weights]
            _write_replacing(self.directory / name, lambda tmp: write_backup(tmp, weights, es.best_epoch + 1))
            self._best_file = name
        return name

    def _remove_unreferenced_best(self) -> None:
        """Delete the best- and kept-weights files that neither the current metadata nor the previous
        copy names (a resume may fall back to the previous copy)."""
        keep: set[str | None] = set()
        for meta in (self.meta, self.meta.with_name(BACKUP_META + ".bkp")):
            with contextlib.suppress(OSError, ValueError):
                keep.update(referenced_files(json.loads(meta.read_text())))
        for pattern in (f"{BEST_PREFIX}*.weights.h5", f"{KEPT_PREFIX}*.weights.h5"):
            for f in self.directory.glob(pattern):
                if f.name not in keep:
                    with contextlib.suppress(OSError):
                        f.unlink()


def best_weights_file(meta: dict) -> str | None:
    """The best-weights file a backup's metadata names (``None``: none)."""
    es = meta.get("early_stopping")
    return es.get("weights") if isinstance(es, dict) else None


def referenced_files(meta: Any) -> list[str]:
    """Every weights file besides the pair itself that a backup's metadata needs: early stopping's
    best weights and the run's kept epoch."""
    if not isinstance(meta, dict):
        return []
    return [f for f in (best_weights_file(meta), kept_mod.referenced(meta)) if isinstance(f, str)]


def write_backup(path: Path, values: list, epoch: int) -> None:
    import h5py

    groups: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        groups.setdefault(v.dtype.str, []).append(i)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = BACKUP_FORMAT
        f.attrs["epoch"] = epoch
        f.attrs["shapes"] = json.dumps([list(v.shape) for v in values])
        f.attrs["dtypes"] = json.dumps([v.dtype.str for v in values])
        for dt, idx in groups.items():
            flat = np.concatenate([values[i].reshape(-1) for i in idx]) if idx else np.zeros(0, dt)
            f.create_dataset(dt, data=flat)


def read_backup(path: Path) -> list[np.ndarray] | None:
    """The arrays of a file written by :func:`write_backup` (``None``: another format)."""
    import h5py

    with h5py.File(path, "r") as f:
        if f.attrs.get("format") not in (BACKUP_FORMAT, _WEIGHTS_ONLY_FORMAT):
            return None
        shapes = [tuple(s) for s in json.loads(f.attrs["shapes"])]
        dtypes = json.loads(f.attrs["dtypes"])
        data = {dt: f[dt][()] for dt in set(dtypes)}
    offsets = dict.fromkeys(data, 0)
    out = []
    for shape, dt in zip(shapes, dtypes, strict=True):
        n = int(np.prod(shape, dtype=np.int64))
        out.append(data[dt][offsets[dt] : offsets[dt] + n].reshape(shape))
        offsets[dt] += n
    return out


def load_backup(model: keras.Model, path: Path, *, optimizer: bool = True) -> bool:
    """Assign a backup written by :func:`write_backup`; ``False`` if the file is in another format.
    ``optimizer=False``: a phase boundary's backup, the model's weights and seeds only."""
    import h5py

    with h5py.File(path, "r") as f:
        fmt = f.attrs.get("format")
    values = read_backup(path)
    if values is None:
        return False
    variables = backup_state(model, seeds=fmt == BACKUP_FORMAT, optimizer=optimizer)
    if [tuple(v.shape) for v in variables] != [v.shape for v in values]:
        raise ValueError(f"the backup {path} was saved from a different model: start the run again without --resume")
    for v, value in zip(variables, values, strict=True):
        v.assign(value)
    return True


def _write_replacing(path: Path, fill: Callable[[Path], object]) -> None:
    """``fill(tmp)`` writes a temporary file next to ``path``, which then replaces ``path`` (never torn)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fill(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes ``src``'s content, atomically (``src`` is replaced, never written in place, later)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _replace_with(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
