"""The per-epoch backup a run resumes from: its files, its writer (:class:`EpochBackup`), its reader
(:func:`load_backup`) and its repair before a resume (:func:`repair_backup`). The one home of the format.

``RUN_DIR/backup/`` holds

- ``latest.weights.h5`` + ``training_metadata.json``: the state after the last completed epoch, with
  the names of ``keras.callbacks.BackupAndRestore`` (``double_checkpoint``: the previous pair ends in
  ``.bkp``), so a run Keras backed up still resumes;
- ``best-EPOCH.weights.h5``: early stopping's best weights (:class:`tltui.worker.early_stop.EarlyStop`);
- ``kept-EPOCH.weights.h5``: the run's kept epoch (:mod:`tltui.worker.kept`);
- ``start.weights.h5``: the weights the movement record compares with (:mod:`tltui.worker.moved`).

A weights file (:func:`write_backup`) is one HDF5 dataset per dtype, all values of that dtype
concatenated, with the shapes, dtypes, format and epoch as attributes. The metadata is JSON:
``epoch``, ``batch`` (always 0), for a phased run ``phase``/``phase_start`` (and ``phase_complete``
at a phase's end), ``early_stopping`` (state and best-weights file), ``kept`` (the kept epoch) and
``notes`` (how the phases that stopped early ended: the finished reason, after a resume too).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from tltui.worker.archive import read_values
from tltui.worker.checkpoint import DiskFull

if TYPE_CHECKING:
    from tltui.worker.early_stop import EarlyStop
    from tltui.worker.kept import KeptWeights
    from tltui.worker.moved import MovedWeights

#: BackupAndRestore-compatible file names (``double_checkpoint``: the previous copy ends in ``.bkp``).
BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_META = "training_metadata.json"
#: The ``format`` attribute of a backup written by :class:`EpochBackup`: format 2 also holds the
#: random-seed states (Dropout's SeedGenerator) after the weights; format 1 (older runs) does not.
BACKUP_FORMAT = "tltui-backup-2"
_WEIGHTS_ONLY_FORMAT = "tltui-backup-1"
#: The best epoch's weights kept for early stopping: ``best-EPOCH.weights.h5`` in the backup folder.
BEST_PREFIX = "best-"
#: The run's kept epoch's weights (:mod:`tltui.worker.kept`): ``kept-EPOCH.weights.h5``.
KEPT_PREFIX = "kept-"


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


def _same_weights(a: keras.Model, b: keras.Model) -> bool:
    """``a``'s weights are ``b``'s, in ``b``'s order (``a`` is ``b``, or a model around all of it)."""
    return a is b or [id(v) for v in a.weights] == [id(v) for v in b.weights]


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

    Between 2 and 3 the weights say epoch N and the metadata N-1: :func:`repair_backup` sees the
    mismatch (the ``epoch`` attribute) and uses the previous copy, which is consistent. Backups
    written by Keras's BackupAndRestore (older runs) are restored with ``model.load_weights``.

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
        moved: MovedWeights | None = None,
        phase: int = 0,
        phase_start: int = 0,
        kept: KeptWeights | None = None,
        notes: list[str] | None = None,
        split: str | None = None,
    ) -> None:
        super().__init__()
        self.notes = notes  # the run's list, shared: the earlier phases' early-stop notes, saved with each backup
        self.split = split  # the digest of the folder's train/validation split (a resume compares it)
        self.directory = Path(directory)
        self.kept = kept  # the run's kept epoch (train.restore_best): considered at each epoch end
        self.phase, self.phase_start = phase, phase_start
        self.moved = moved  # fed the same snapshot, at no extra read
        self.weights = self.directory / BACKUP_WEIGHTS
        self.meta = self.directory / BACKUP_META
        self.early_stopping = early_stopping
        self._best_file: str | None = None  # the best-weights file this process wrote or restored

    # ------------------------------------------------------------------ restore

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not (self.meta.is_file() and self.weights.is_file()):
            return  # a fresh start (repair_backup leaves a complete pair or nothing)
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
        self._restore_early_stopping(meta.get("early_stopping"))

    def _restore_early_stopping(self, es_state: Any) -> None:
        if self.early_stopping is None or not isinstance(es_state, dict):
            return
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
        if self.notes:
            meta["notes"] = list(self.notes)
        if self.split:
            meta["split"] = self.split
        try:
            if self.early_stopping is not None and not boundary:
                meta["early_stopping"] = self.early_stopping.state()
                meta["early_stopping"]["weights"] = self._save_best()
            if self.weights.exists() and self.meta.exists():
                link_or_copy(self.weights, self.weights.with_name(BACKUP_WEIGHTS + ".bkp"))
                _replace_with(self.meta.with_name(BACKUP_META + ".bkp"), self.meta.read_bytes())
            _write_replacing(self.weights, lambda tmp: write_backup(tmp, values, epoch))
            if self.kept is not None:
                if not boundary:  # the file the classifier trains in is linked; the head's is not the whole model
                    linked = self.weights if _same_weights(self.model, self.kept.model) else None
                    self.kept.consider(epoch, logs, linked)
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


# --------------------------------------------------------------------------- the metadata


def best_weights_file(meta: dict) -> str | None:
    """The best-weights file a backup's metadata names (``None``: none)."""
    es = meta.get("early_stopping")
    return es.get("weights") if isinstance(es, dict) else None


def kept_weights_file(meta: dict) -> str | None:
    """The kept-weights file a backup's metadata names (``None``: none)."""
    kept = meta.get("kept")
    return kept.get("weights") if isinstance(kept, dict) else None


def referenced_files(meta: Any) -> list[str]:
    """Every weights file besides the pair itself that a backup's metadata needs: early stopping's
    best weights and the run's kept epoch."""
    if not isinstance(meta, dict):
        return []
    return [f for f in (best_weights_file(meta), kept_weights_file(meta)) if isinstance(f, str)]


# --------------------------------------------------------------------------- the weights files


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


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes ``src``'s content, atomically (``src`` is replaced, never written in place, later)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _write_replacing(path: Path, fill: Callable[[Path], object]) -> None:
    """``fill(tmp)`` writes a temporary file next to ``path``, which then replaces ``path`` (never torn)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fill(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _replace_with(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- repair before a resume


def repair_backup(backup: Path, max_epoch: int | None = None) -> int | None:
    """Make ``backup`` loadable and return the epoch it holds, or ``None`` (and clear it).

    A kill -9 mid-write (or a backup Keras wrote in place) can leave a truncated weights file or
    metadata, or (between :class:`EpochBackup`'s steps 2 and 3) weights one epoch ahead of their
    metadata; then the previous copy (``double_checkpoint``) is used. ``max_epoch`` (the last epoch
    ``events.jsonl`` records): a backup saved after a later epoch, whose end event the kill
    prevented, is skipped for the previous copy, so the resumed history has no hole.
    """
    pairs = [(backup / BACKUP_WEIGHTS, backup / BACKUP_META)]
    pairs.append((backup / f"{BACKUP_WEIGHTS}.bkp", backup / f"{BACKUP_META}.bkp"))
    for i, (weights, meta) in enumerate(pairs):
        epoch = _meta_epoch(meta)
        if epoch is None or (max_epoch is not None and epoch > max_epoch) or not _h5_readable(weights):
            continue
        if _h5_epoch(weights) not in (None, epoch):  # killed between the weights and the metadata
            continue
        if not all(_h5_readable(backup / f) for f in _meta_files(meta)):  # early stopping's or the kept weights
            continue
        if i > 0:
            shutil.copyfile(weights, pairs[0][0])
            shutil.copyfile(meta, pairs[0][1])
        return epoch
    shutil.rmtree(backup, ignore_errors=True)
    return None


def _meta_epoch(path: Path) -> int | None:
    try:
        epoch = json.loads(path.read_text())["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epoch if isinstance(epoch, int) and epoch >= 0 else None


def _meta_files(path: Path) -> list[str]:
    """The weights files besides the pair that a backup's metadata names (they must be readable too)."""
    try:
        return referenced_files(json.loads(path.read_text()))
    except (OSError, ValueError):
        return []


def _h5_epoch(path: Path) -> int | None:
    """The epoch a backup weights file says it holds (tltui's backups have it; Keras's do not)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            e = f.attrs.get("epoch")
            return None if e is None else int(e)
    except Exception:  # noqa: BLE001
        return None


def _h5_readable(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r"):
            return True
    except Exception:  # noqa: BLE001 - truncated, missing or not HDF5: not usable
        return False
