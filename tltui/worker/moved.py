"""How far every layer's weights moved since the run started: the proof of what trained.

At the start of a run (not of a resume), and of each phase of a phased run, the model's weights
are kept in ``backup/start.weights.h5``; at every epoch end, from the snapshot :class:`EpochBackup` already
takes, each layer with weights gets

- ``moved``: ``||w - w0|| / ||w0||`` over its parameters (kernels, biases, BatchNorm's gamma and
  beta; ``||w - w0||`` itself when ``w0`` is all zeros), and
- ``bn_drift``: the same over a BatchNormalization layer's moving mean and variance,

written to ``RUN_DIR/moved.json`` (read back with :meth:`tltui.core.workspace.RunPaths.read_moved`). A layer the freeze map says is frozen must read exactly 0 in
both; anything else is listed under ``errors``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tltui.core.workspace import write_json

START_FILE = "start.weights.h5"
MOVED_VERSION = 1


def _leaf_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        inner = getattr(layer, "layers", None)
        if inner:  # the nested backbone: its own layers, by their names in the freeze map
            out += _leaf_layers(layer)
        elif layer.weights:
            out.append(layer)
    return out


class MovedWeights:
    """Per-layer movement of ``model``'s weights since ``backup/start.weights.h5``."""

    def __init__(
        self, model: Any, backup_dir: Path, out: Path, *, fresh: bool, since: str = "run start", phase: int | None = None
    ) -> None:
        from tltui.worker.callbacks import read_backup, write_backup

        self.out = out
        self.since, self.phase = since, phase  # a phased run counts from its phase's start
        index = {id(v): i for i, v in enumerate(model.weights)}
        self.layers: list[tuple[str, bool, list[int], list[int]]] = []
        for layer in _leaf_layers(model):
            bn = "BatchNormalization" in type(layer).__name__
            stats = [v for v in layer.weights if bn and v.name.rsplit("/", 1)[-1] in ("moving_mean", "moving_variance")]
            stat_ids = {id(v) for v in stats}
            params = [index[id(v)] for v in layer.weights if id(v) not in stat_ids and id(v) in index]
            self.layers.append((layer.name, any(v.trainable for v in layer.weights), params,
                                [index[id(v)] for v in stats if id(v) in index]))
        start = backup_dir / START_FILE
        shapes = [tuple(v.shape) for v in model.weights]
        self.start: list[np.ndarray] | None = None
        self.why = ""  # when inactive: why there is nothing to compare with
        if fresh or not start.is_file():
            if not fresh:
                self.why = f"{start} is missing (the run started before tltui kept its start weights)"
                return
            from tltui.worker.archive import read_values

            self.start = read_values(list(model.weights))
            backup_dir.mkdir(parents=True, exist_ok=True)
            tmp = start.with_name(start.name + ".tmp")
            write_backup(tmp, self.start, 0)
            tmp.replace(start)
        else:
            try:
                loaded = read_backup(start)
            except (OSError, ValueError, KeyError) as e:
                self.why = f"{start} is unreadable ({e})"
                return
            if loaded is None or [tuple(a.shape) for a in loaded] != shapes:
                self.why = f"{start} does not match this model's weights"
                return
            self.start = loaded

    @property
    def active(self) -> bool:
        return self.start is not None

    def record(self, values: list[np.ndarray], epoch: int) -> dict[str, Any] | None:
        """Movement per layer for the model weights ``values`` (in ``model.weights`` order), written
        to ``moved.json``; ``None`` when there is no start to compare with."""
        if self.start is None:
            return None
        layers = []
        errors = []
        for name, trainable, params, stats in self.layers:
            moved = _relative(values, self.start, params) if params else None
            drift = _relative(values, self.start, stats) if stats else None
            layers.append({"name": name, "trainable": trainable, "moved": moved, "bn_drift": drift})
            if not trainable and any(x is not None and x != 0.0 for x in (moved, drift)):
                errors.append(name)
        doc: dict[str, Any] = {"version": MOVED_VERSION, "epoch": epoch, "since": self.since}
        if self.phase is not None:
            doc["phase"] = self.phase
        doc.update(layers=layers, errors=errors)
        write_json(self.out, doc)
        return doc


def _relative(values: list[np.ndarray], start: list[np.ndarray], idx: list[int]) -> float:
    diff = base = 0.0
    for i in idx:
        w, w0 = np.asarray(values[i], np.float64), np.asarray(start[i], np.float64)
        diff += float(np.sum((w - w0) ** 2))
        base += float(np.sum(w0 ** 2))
    if not math.isfinite(diff):
        return float("inf")
    return math.sqrt(diff) / math.sqrt(base) if base > 0 else math.sqrt(diff)

