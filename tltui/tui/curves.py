"""Turn a :class:`~tltui.tui.data.RunSnapshot` into chart points. Pure; no Textual.

A train curve is one point per finished epoch plus, while an epoch runs, one point
per reported batch of that epoch (Keras batch metrics are running means over the
epoch, so they converge on the epoch's value). Validation curves have one point
per epoch. The x axis is the epoch (fractional inside an epoch), the global step,
or wall time in minutes since the run first started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tltui.tui.data import RunSnapshot

XMODES = ("epoch", "step", "time")
XLABELS = {"epoch": "epoch", "step": "step", "time": "minutes"}

#: The notebook's panels: (train metric, title). The validation twin is ``val_`` + metric.
PANELS = (("loss", "Loss"), ("acc", "Accuracy"), ("top5_acc", "Top-5 accuracy"))


@dataclass(frozen=True)
class Points:
    xs: tuple[float, ...]
    ys: tuple[float, ...]


def _epoch_x(snap: RunSnapshot, h: dict[str, Any], xmode: str) -> float:
    e = float(h["epoch"])
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
    return (epoch - 1) + (step / steps if steps else 0.0)


def points(snap: RunSnapshot, metric: str, xmode: str = "epoch", live: bool = True) -> Points:
    """One curve: ``metric`` ("loss", "val_acc", ...) against the chosen x axis."""
    xs: list[float] = []
    ys: list[float] = []
    for h in snap.history:
        if h.get(metric) is not None:
            xs.append(_epoch_x(snap, h, xmode))
            ys.append(float(h[metric]))
    if live and not metric.startswith("val_") and snap.epoch_in_progress is not None:
        for t, epoch, step, m in snap.batches:
            if epoch == snap.epoch_in_progress and m.get(metric) is not None:
                xs.append(_batch_x(snap, t, epoch, step, snap.steps, xmode))
                ys.append(float(m[metric]))
    return Points(tuple(xs), tuple(ys))
