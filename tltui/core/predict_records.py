"""The predict worker's output records: typed rows <-> JSON lines (stdlib only).

The worker (``python -m tltui.worker predict``) writes one JSON object per line; the client
(:mod:`tltui.client.predict`) decodes them. :class:`PredictStarted` comes once, then
:class:`PredictionRow`, :class:`Skipped` and :class:`Progress` in any mix; a ``{"type": "error"}``
line carries a fatal message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PredictStarted:
    """The worker found ``total`` candidate files; ``labels`` is set for a labelled folder.
    ``low_res``: images are shrunk to the training data's ``native_size`` first (then the model
    upscales them to ``image_size``, as it upscaled the training images)."""

    total: int
    classes: list[str]
    labels: list[str] | None
    top_k: int
    image_size: list[int]
    low_res: bool = False
    native_size: list[int] | None = None

    def low_res_note(self) -> str | None:
        """``"images shrunk to 32x32 first, as the training images were"`` when they were (and that
        differs from the model's input size), else ``None``."""
        if not self.low_res or not self.native_size or list(self.native_size) == list(self.image_size):
            return None
        h, w = self.native_size  # height x width, as the rest of tltui writes sizes
        return f"images shrunk to {h}x{w} first, as the training images were"


@dataclass(frozen=True)
class PredictionRow:
    """Top-k of one image, highest probability first. ``true_rank``: 1-based rank of the
    true class among all classes (labelled folders only)."""

    path: str
    top_k: list[tuple[str, float]]
    true_label: str | None = None
    rel: str = ""
    true_rank: int | None = None
    cam: str | None = None  # the Grad-CAM overlay PNG of its top-1 class (``--cam``)

    @property
    def label(self) -> str:
        return self.top_k[0][0]

    @property
    def probability(self) -> float:
        return self.top_k[0][1]

    @property
    def correct(self) -> bool | None:
        return None if self.true_label is None else self.label == self.true_label


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    rel: str = ""


@dataclass(frozen=True)
class Progress:
    """Files handled so far (predicted or skipped) out of ``total``."""

    done: int
    total: int


Record = PredictStarted | PredictionRow | Skipped | Progress


def encode(rec: Record | dict[str, Any]) -> str:
    """One JSON line. The worker also sends ``{"type": "error", "message": ...}`` dicts."""
    if isinstance(rec, dict):
        d = rec
    elif isinstance(rec, PredictStarted):
        d = {"type": "start", **rec.__dict__}
    elif isinstance(rec, PredictionRow):
        d = {"type": "prediction", **rec.__dict__, "top_k": [list(p) for p in rec.top_k]}
    elif isinstance(rec, Skipped):
        d = {"type": "skipped", **rec.__dict__}
    else:
        d = {"type": "progress", **rec.__dict__}
    return json.dumps(d, separators=(",", ":")) + "\n"


def decode(line: str | bytes) -> Record | str | None:
    """A record, an error message (``str``), or ``None`` for a line that is not ours."""
    try:
        d = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(d, dict):
        return None
    kind = d.pop("type", None)
    try:
        if kind == "prediction":
            d["top_k"] = [(str(lbl), float(p)) for lbl, p in d["top_k"]]
            return PredictionRow(**d)
        if kind == "skipped":
            return Skipped(**d)
        if kind == "progress":
            return Progress(**d)
        if kind == "start":
            return PredictStarted(**d)
        if kind == "error":
            return str(d.get("message") or "predict worker failed")
    except (TypeError, ValueError, KeyError):
        return None
    return None
