"""The epoch a run keeps: what ``model.keras`` will hold, and its weights, across every phase.

With ``train.restore_best`` (the default) a run keeps the weights of its best epoch by
``val_acc`` over the whole run, all phases together, the way plain Keras's
``ModelCheckpoint(monitor="val_acc", mode="max", save_best_only=True)`` would across consecutive
``fit`` calls: an epoch replaces the kept one only when it is strictly better, so a tie keeps the
earlier epoch (as ``EarlyStopping`` does). Training itself is not changed by it: each phase goes
on from where the previous one ended. Only the file the run hands over is chosen, and the test
split is evaluated on that same file's weights.

The kept weights live in the run's backup folder (``kept-EPOCH.weights.h5``), so a resumed run
still knows them: :class:`tltui.worker.backup.EpochBackup` asks :meth:`KeptWeights.consider`
at every epoch end, before it writes the metadata that names the file, and puts :meth:`state` in
that metadata. When the model that trains is the classifier itself, the file is a hard link to the
epoch's backup weights (whose first arrays are the model's weights): no extra write. When the
feature cache trains the head alone, the whole classifier's weights are written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tltui.worker.archive import read_values
from tltui.worker.backup import KEPT_PREFIX, link_or_copy, read_backup, write_backup

#: The metric an epoch is kept by (higher is better).
MONITOR = "val_acc"


class KeptWeights:
    """The run's best epoch by :data:`MONITOR` so far (``epoch`` 1-based, ``None`` before any), and the
    file that holds its weights. ``model`` is the whole classifier (what ``model.keras`` saves)."""

    def __init__(self, directory: str | Path, model: keras.Model) -> None:
        self.directory = Path(directory)
        self.model = model
        self.epoch: int | None = None
        self.value: float | None = None
        self.file: str | None = None

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any] | None:
        if self.epoch is None:
            return None
        return {"epoch": self.epoch, "monitor": MONITOR, "value": self.value, "weights": self.file}

    def restore(self, state: Any) -> None:
        """Take back what :meth:`state` gave (from a backup's metadata); anything else is ignored."""
        if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
            return
        self.epoch = state["epoch"]
        value = state.get("value")
        self.value = float(value) if isinstance(value, int | float) else None
        self.file = state.get("weights") if isinstance(state.get("weights"), str) else None

    # ------------------------------------------------------------------ update

    def improves(self, logs: dict | None) -> bool:
        value = (logs or {}).get(MONITOR)
        try:
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        return math.isfinite(value) and (self.value is None or value > self.value)

    def consider(self, epoch: int, logs: dict | None, backup_weights: Path | None) -> bool:
        """After ``epoch`` (1-based): keep it if it beats the kept one. ``backup_weights``: the epoch's
        backup file when the model that trains is :attr:`model` (hard-linked); ``None``: write the
        classifier's weights. Returns whether the epoch was kept."""
        if not self.improves(logs):
            return False
        name = f"{KEPT_PREFIX}{epoch:04d}.weights.h5"
        path = self.directory / name
        if backup_weights is not None:
            link_or_copy(backup_weights, path)
        else:
            values = read_values(list(self.model.weights))
            tmp = path.with_name(f".{name}.tmp")
            write_backup(tmp, values, epoch)
            tmp.replace(path)
        self.epoch, self.value, self.file = epoch, float((logs or {})[MONITOR]), name
        return True

    # ------------------------------------------------------------------ use

    def load_into(self, model: keras.Model | None = None) -> None:
        """Assign the kept epoch's weights to ``model`` (default: :attr:`model`)."""
        model = model or self.model
        if self.file is None:
            raise ValueError("no epoch has been kept")
        path = self.directory / self.file
        values = read_backup(path)
        weights = list(model.weights)
        if values is None or len(values) < len(weights):
            raise ValueError(f"{path} does not hold this model's weights")
        for v, value in zip(weights, values[: len(weights)], strict=True):
            if tuple(v.shape) != tuple(np.shape(value)):
                raise ValueError(f"{path} was saved from a different model ({v.path}: {np.shape(value)})")
            v.assign(value)
