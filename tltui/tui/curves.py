"""Turn a :class:`~tltui.tui.store.RunSnapshot` into chart points. Pure; no Textual.

A train curve is one point per finished epoch plus, while an epoch runs, one point
per reported batch of that epoch (Keras batch metrics are running means over the
epoch, so they converge on the epoch's value). Validation curves have one point
per epoch. The x axis is the epoch (fractional inside an epoch), the global step,
or wall time in minutes since the run first started. A long epoch reports thousands
of batches; a terminal chart is a few hundred braille columns wide, so the live part
is thinned to about :data:`MAX_LIVE_POINTS` (each x bucket's lowest and highest batch, and the
latest one: :func:`tltui.tui.downsample.minmax`): drawing cost stays flat however long the epoch
runs, and no spike is thinned away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tltui.tui import downsample
from tltui.tui.store import RunSnapshot

#: (time, epoch, step, metrics), as :class:`~tltui.tui.store.RunSnapshot` holds them
Batch = tuple[float, int, int, dict[str, float]]

XMODES = ("epoch", "step", "time")
XLABELS = {"epoch": "epoch", "step": "step", "time": "minutes", "phase": "epoch of the last phase"}

#: The notebook's panels: (train metric, title). The validation twin is ``val_`` + metric.
PANELS = (("loss", "Loss"), ("acc", "Accuracy"), ("top5_acc", "Top-5 accuracy"))
#: live (in-epoch) points per curve at most: more than a 160-column chart has braille columns
MAX_LIVE_POINTS = 400


@dataclass(frozen=True)
class Points:
    xs: tuple[float, ...]
    ys: tuple[float, ...]


def phase_offset(snap: RunSnapshot) -> int:
    """Epochs before a phased run's last phase began (0 without phases): the ``phase`` x axis puts
    every run's last phase (the fine-tuning) at epoch 1, so runs whose earlier phases stopped at
    different epochs line up where it starts."""
    return snap.phase_starts[-1][1] - 1 if snap.phase_starts else 0


def marks(snap: RunSnapshot, xmode: str = "epoch") -> tuple[float, ...]:
    """Where each phase after the first begins on the x axis (between its first epoch and the one
    before): vertical lines on a phased run's charts."""
    out = []
    ended = {h["epoch"]: h for h in snap.history}
    for _, first, _ in snap.phase_starts:
        before = ended.get(first - 1)
        if xmode == "time":
            if before is not None and before.get("t") is not None and snap.started_at is not None:
                out.append((before["t"] - snap.started_at) / 60.0)
            continue
        out.append(_epoch_x(snap, {"epoch": first - 1}, xmode))
    return tuple(out)


def _epoch_x(snap: RunSnapshot, h: dict[str, Any], xmode: str) -> float:
    e = float(h["epoch"])
    if xmode == "phase":
        return e - phase_offset(snap)
    if xmode == "step" and snap.steps:
        return e * snap.steps
    if xmode == "time" and snap.started_at is not None and h.get("t") is not None:
        return (h["t"] - snap.started_at) / 60.0
    return e


def _batch_x(snap: RunSnapshot, t: float, epoch: int, step: int, steps: int | None, xmode: str) -> float:
    if xmode == "time" and snap.started_at is not None:
        return (t - snap.started_at) / 60.0
    if xmode == "step" and steps:
        return (epoch - 1) * steps + step
    base = phase_offset(snap) if xmode == "phase" else 0
    return (epoch - 1 - base) + (step / steps if steps else 0.0)


def points(snap: RunSnapshot, metric: str, xmode: str = "epoch", live: bool = True) -> Points:
    """One curve: ``metric`` ("loss", "val_acc", ...) against the chosen x axis."""
    xs: list[float] = []
    ys: list[float] = []
    for h in snap.history:
        if h.get(metric) is not None:
            xs.append(_epoch_x(snap, h, xmode))
            ys.append(float(h[metric]))
    if live and not metric.startswith("val_") and snap.epoch_in_progress is not None:
        bx: list[float] = []
        by: list[float] = []
        for t, epoch, step, m in _current_epoch(snap.batches, snap.epoch_in_progress):
            if m.get(metric) is not None:
                bx.append(_batch_x(snap, t, epoch, step, snap.steps, xmode))
                by.append(float(m[metric]))
        for x, y in downsample.minmax(bx, by, MAX_LIVE_POINTS // 2 - 1):  # at most MAX_LIVE_POINTS
            xs.append(x)
            ys.append(y)
    return Points(tuple(xs), tuple(ys))


def _current_epoch(batches: Sequence[Batch], epoch: int) -> Sequence[Batch]:
    """The trailing run of ``batches`` that belong to ``epoch`` (batches arrive in order)."""
    start = len(batches)
    while start > 0 and batches[start - 1][1] == epoch:
        start -= 1
    return batches[start:]
