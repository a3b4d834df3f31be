"""How far every layer's weights moved since the run started: the proof of what trained.

At the start of a run (not of a resume), and of each phase of a phased run, the classifier's weights
are kept in ``backup/start.weights.h5``; at every epoch end, from the snapshot :class:`EpochBackup` already
takes, each layer with weights gets

- ``moved``: ``||w - w0|| / ||w0||`` over its parameters (kernels, biases, BatchNorm's gamma and
  beta; ``||w - w0||`` itself when ``w0`` is all zeros), and
- ``bn_drift``: the same over a BatchNormalization layer's moving mean and variance,

written to ``RUN_DIR/moved.json`` (and, in a phased run, to the phase's own
``RUN_DIR/phases/N/moved.json``; read back with :meth:`tltui.core.workspace.RunPaths.read_moved`).
A layer the freeze map says is frozen must read exactly 0 in both; anything else is listed under
``errors``.

When the feature cache trains the head alone, the backbone is not in the graph that trains: the
per-epoch snapshot holds the head, so the backbone's layers are listed with ``in_graph: false``
and no figure, and the record says ``feature_cache: true``. When the phase ends,
:meth:`MovedWeights.record_all` reads the whole classifier once and measures every layer
(``measured: "all"``): the backbone's zeros are then measured, not assumed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from tltui.core.workspace import write_json
from tltui.worker.archive import read_values
from tltui.worker.backup import read_backup, write_backup

START_FILE = "start.weights.h5"
MOVED_VERSION = 2  # 2: feature_cache, measured, in_graph


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
    """Per-layer movement of ``model``'s weights since ``backup/start.weights.h5``. ``model`` is the
    classifier; ``fit_model`` the model that trains, when it is another one sharing its head layers
    (the feature cache's head model) or all of them (the augmenting model): :meth:`record` then takes
    ``fit_model``'s weights."""

    def __init__(
        self,
        model: Any,
        backup_dir: Path,
        out: Path | list[Path],
        *,
        fresh: bool,
        since: str = "the start of the run",
        phase: int | None = None,
        fit_model: Any = None,
    ) -> None:
        self.model = model
        self.outs = [out] if isinstance(out, Path) else list(out)
        self.since, self.phase = since, phase  # a phased run counts from its phase's start
        fit = fit_model if fit_model is not None else model
        in_fit = {id(v): i for i, v in enumerate(fit.weights)}
        # the feature cache's head model trains a part of the classifier; the augmenting model
        # (tltui.worker.augment) wraps all of it
        self.feature_cache = any(id(v) not in in_fit for v in model.weights)
        index = {id(v): i for i, v in enumerate(model.weights)}
        #: per leaf layer: name, trainable, parameter and statistics indices into model.weights, and the
        #: same into fit_model.weights (None when the layer is not in the graph that trains)
        self.layers: list[tuple[str, bool, list[int], list[int], tuple[list[int], list[int]] | None]] = []
        for layer in _leaf_layers(model):
            bn = "BatchNormalization" in type(layer).__name__
            stats = [v for v in layer.weights if bn and v.name.rsplit("/", 1)[-1] in ("moving_mean", "moving_variance")]
            stat_ids = {id(v) for v in stats}
            params = [v for v in layer.weights if id(v) not in stat_ids and id(v) in index]
            stats = [v for v in stats if id(v) in index]
            fit_idx = None
            if all(id(v) in in_fit for v in [*params, *stats]):
                fit_idx = ([in_fit[id(v)] for v in params], [in_fit[id(v)] for v in stats])
            self.layers.append(
                (
                    layer.name,
                    any(v.trainable for v in layer.weights),
                    [index[id(v)] for v in params],
                    [index[id(v)] for v in stats],
                    fit_idx,
                )
            )
        start = backup_dir / START_FILE
        shapes = [tuple(v.shape) for v in model.weights]
        self.start: list[np.ndarray] | None = None
        self._start_sq: list[float] = []  # ||w0||^2 of each start array: the denominators, the same every epoch
        self.why = ""  # when inactive: why there is nothing to compare with
        if fresh or not start.is_file():
            if not fresh:
                self.why = f"{start} is missing (the run started before tltui kept its start weights)"
                return
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
        self._start_sq = [float(np.sum(np.asarray(s0, np.float64) ** 2)) for s0 in self.start]

    @property
    def active(self) -> bool:
        return self.start is not None

    def record(self, values: list[np.ndarray], epoch: int) -> dict[str, Any] | None:
        """Movement per layer for the weights ``values`` of the model that trains (``fit_model``'s order),
        written to the record; ``None`` when there is no start to compare with. Layers outside that model
        get no figure (``in_graph: false``)."""
        if self.start is None:
            return None
        rows = []
        for name, trainable, params, stats, fit_idx in self.layers:
            if fit_idx is None:
                rows.append({"name": name, "trainable": trainable, "moved": None, "bn_drift": None, "in_graph": False})
                continue
            fp, fs = fit_idx
            moved = self._relative([values[i] for i in fp], params) if params else None
            drift = self._relative([values[i] for i in fs], stats) if stats else None
            rows.append({"name": name, "trainable": trainable, "moved": moved, "bn_drift": drift})
        return self._write(rows, epoch, "trained graph" if self.feature_cache else "all")

    def record_all(self, epoch: int) -> dict[str, Any] | None:
        """Every layer of the classifier, read now (one read of all its weights): what a feature-cached
        phase's end records, so the backbone that was not in the graph is measured too."""
        if self.start is None:
            return None
        values = read_values(list(self.model.weights))
        rows = []
        for name, trainable, params, stats, _ in self.layers:
            moved = self._relative([values[i] for i in params], params) if params else None
            drift = self._relative([values[i] for i in stats], stats) if stats else None
            rows.append({"name": name, "trainable": trainable, "moved": moved, "bn_drift": drift})
        return self._write(rows, epoch, "all")

    def _relative(self, values: list[np.ndarray], at: list[int]) -> float:
        """``||w - w0|| / ||w0||`` over the arrays ``values``, whose start arrays are ``self.start[i]`` for
        ``i`` in ``at`` (``||w - w0||`` itself when ``w0`` is all zeros)."""
        assert self.start is not None
        diff = base = 0.0
        for v, i in zip(values, at, strict=True):
            w, w0 = np.asarray(v, np.float64), np.asarray(self.start[i], np.float64)
            diff += float(np.sum((w - w0) ** 2))
            base += self._start_sq[i]
        if not math.isfinite(diff):
            return float("inf")
        return math.sqrt(diff) / math.sqrt(base) if base > 0 else math.sqrt(diff)

    def _write(self, rows: list[dict[str, Any]], epoch: int, measured: str) -> dict[str, Any]:
        errors = [
            r["name"]
            for r in rows
            if not r["trainable"] and any(x is not None and x != 0.0 for x in (r["moved"], r["bn_drift"]))
        ]
        doc: dict[str, Any] = {"version": MOVED_VERSION, "epoch": epoch, "since": self.since}
        if self.phase is not None:
            doc["phase"] = self.phase
        doc.update(feature_cache=self.feature_cache, measured=measured, layers=rows, errors=errors)
        for out in self.outs:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json(out, doc)
        return doc
