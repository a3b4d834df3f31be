"""The export worker's output records: typed rows <-> JSON lines (stdlib only).

The worker (``python -m tltui.worker export``) writes one JSON object per line; the client
(:mod:`tltui.client.export`) decodes them: :class:`ExportProgress` and :class:`ExportNote` in any
mix, then one :class:`ExportResult` (its :class:`SplitCheck` per split is also what
``verification.json`` holds); a ``{"type": "error"}`` line carries a fatal message instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ExportProgress:
    """A step of the export: ``load``, ``data``, ``convert``, ``verify``, ``write``. ``done``/``total``:
    images (``verify``) or items of a data step, when known."""

    step: str
    message: str
    done: int | None = None
    total: int | None = None

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done / self.total) if self.done is not None and self.total else None


@dataclass(frozen=True)
class ExportNote:
    """Something the user should know that does not stop the export (``level``: info or warning)."""

    level: str
    message: str


@dataclass(frozen=True)
class SplitCheck:
    """The artifact against the Keras model on one split of the run's data.

    Accuracies are fractions; ``agreement``: the fraction of images whose top-1 class is the Keras
    model's; ``max_abs_diff``: the largest difference of any class probability; top-5 is ``None`` with
    5 classes or fewer (100% by construction)."""

    split: str  # "validation", "test" or "train" (no held-out split)
    name: str  # the split as the data names it: "validation" (a folder's), "test" (a TFDS split name)
    images: int
    keras_top1: float
    export_top1: float
    agreement: float
    max_abs_diff: float
    keras_top5: float | None = None
    export_top5: float | None = None

    @property
    def drop(self) -> float:
        """Points of top-1 accuracy lost against the Keras model (negative: gained), rounded to 1e-9: the
        accuracies are counts over the same images, so 92% -> 91% is a drop of exactly 1 (not 1.0000000000000009,
        which a --max-drop of 1 refused)."""
        return round(100.0 * (self.keras_top1 - self.export_top1), 9)


@dataclass(frozen=True)
class ExportResult:
    """A finished export: where it is and what it measured. ``passed``: every split's top-1 drop is
    at most ``max_drop`` points; an export that did not pass is kept and marked (``VERIFICATION_FAILED``)."""

    out: str
    format: str
    quantize: str | None
    artifact: str
    size_bytes: int
    input_size: list[int]
    num_classes: int
    max_drop: float
    passed: bool
    checks: list[SplitCheck] = field(default_factory=list)
    calibration: dict[str, Any] | None = None  # int8: {"split", "images", "seed"}
    notes: list[str] = field(default_factory=list)

    @property
    def worst(self) -> SplitCheck | None:
        """The split with the largest drop."""
        return max(self.checks, key=lambda c: c.drop, default=None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checks"] = [{**asdict(c), "drop": c.drop} for c in self.checks]
        return d


Record = ExportProgress | ExportNote | ExportResult


def encode(rec: Record | dict[str, Any]) -> str:
    """One JSON line. The worker also sends ``{"type": "error", "message": ...}`` dicts."""
    if isinstance(rec, dict):
        d = rec
    elif isinstance(rec, ExportProgress):
        d = {"type": "progress", **asdict(rec)}
    elif isinstance(rec, ExportNote):
        d = {"type": "note", **asdict(rec)}
    else:
        d = {"type": "result", **rec.to_dict()}
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
        if kind == "progress":
            return ExportProgress(**d)
        if kind == "note":
            return ExportNote(**d)
        if kind == "result":
            checks = []
            for c in d.pop("checks"):
                c.pop("drop", None)
                checks.append(SplitCheck(**c))
            return ExportResult(**d, checks=checks)
        if kind == "error":
            return str(d.get("message") or "export worker failed")
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    return None
