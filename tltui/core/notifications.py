"""Notifications: what the queue runner says when a run fails, a sweep ends and the queue empties.

A :class:`Notification` is a one-line ``text`` and a ``digest`` (the runs concerned: how many ended
how, the best run by its kept ``val_acc`` with its metrics, the failures with their reasons), built
here from registry records. The runner (:mod:`tltui.runner.notify`) sends it as ``[notify]`` says
and appends it to ``WORKSPACE/notifications.jsonl``, which an open app tails to ring the bell and
show it. Pure functions and one file format: no sending, no Textual.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tltui.core.status import RunStatus
from tltui.core.workspace import RunRecord

FILE = "notifications.jsonl"
MAX_REASON = 200


@dataclass(frozen=True)
class Notification:
    """One notification: ``event`` (``run_failed``, ``sweep_done``, ``queue_empty``: what ``[notify] on``
    lists), a one-line ``text``, its ``digest``."""

    event: str
    text: str
    digest: dict[str, Any] = field(default_factory=dict)
    time: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _reason(rec: RunRecord) -> str:
    text = " ".join((rec.reason or "no reason recorded").split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def _best(runs: Sequence[RunRecord]) -> RunRecord | None:
    scored = [r for r in runs if r.best_val_acc is not None]
    return max(scored, key=lambda r: (r.best_val_acc or 0.0, -r.seq)) if scored else None


def digest(runs: Sequence[RunRecord]) -> dict[str, Any]:
    """The runs' outcome: counts by status, the best run (its kept epoch's metrics), the failures."""
    best = _best(runs)
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {
        "runs": [r.id for r in runs],
        "counts": counts,
        "best": None
        if best is None
        else {
            "id": best.id,
            "name": best.name,
            "val_acc": best.best_val_acc,
            "val_top5_acc": best.best_val_top5_acc,
            "epoch": best.best_epoch,
            "epochs": best.epochs,
        },
        "failures": [
            {"id": r.id, "name": r.name, "epoch": r.epoch, "reason": _reason(r)}
            for r in runs
            if r.status == RunStatus.FAILED
        ],
    }


def _summary(d: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(d["counts"].items()))
    out = f"{len(d['runs'])} run{'s' if len(d['runs']) != 1 else ''} ({counts})"
    best = d["best"]
    if best is not None:
        top5 = f" top-5 {_pct(best['val_top5_acc'])}" if best["val_top5_acc"] is not None else ""
        out += f"; best {best['id']} {best['name']}: val_acc {_pct(best['val_acc'])}{top5} @ epoch {best['epoch']}"
    if d["failures"]:
        out += "; failed: " + ", ".join(f["id"] for f in d["failures"])
    return out


def run_failed(rec: RunRecord, where: str, now: float | None = None) -> Notification:
    """A run ended ``failed``: its name, the epoch it reached and why."""
    d = digest([rec])
    d["where"] = where
    epochs = f"/{rec.epochs}" if rec.epochs else ""
    text = f"tltui@{where}: {rec.id} {rec.name} failed at epoch {rec.epoch}{epochs}: {_reason(rec)}"
    return Notification("run_failed", text, d, time.time() if now is None else now)


def sweep_done(runs: Sequence[RunRecord], where: str, now: float | None = None) -> Notification:
    """Every run of a sweep has ended."""
    d = digest(runs)
    d["where"] = where
    name = runs[0].preset_name or runs[0].name if runs else "?"
    text = f"tltui@{where}: sweep {name} done: {_summary(d)}"
    return Notification("sweep_done", text, d, time.time() if now is None else now)


def queue_empty(runs: Sequence[RunRecord], where: str, now: float | None = None) -> Notification:
    """Nothing is queued or running any more; ``runs``: those that ended since the queue was last empty."""
    d = digest(runs)
    d["where"] = where
    text = f"tltui@{where}: queue empty: {_summary(d)}"
    return Notification("queue_empty", text, d, time.time() if now is None else now)


# ---------------------------------------------------------------------------- the file an open app tails


def append(root: Path, note: Notification) -> None:
    """Append ``note`` to ``root/notifications.jsonl`` (owner-only), one JSON line."""
    fd = os.open(root / FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(note.to_json() + "\n")


def read_new(root: Path, offset: int) -> tuple[list[Notification], int]:
    """The notifications appended since byte ``offset`` and the new offset (a partly written last line
    waits for the next call; a file that shrank is read from its start)."""
    path = root / FILE
    try:
        size = path.stat().st_size
    except OSError:
        return [], 0
    if size < offset:
        offset = 0
    if size == offset:
        return [], offset
    with path.open("rb") as f:
        f.seek(offset)
        blob = f.read(size - offset)
    end = blob.rfind(b"\n") + 1
    out = []
    for line in blob[:end].splitlines():
        with contextlib.suppress(ValueError, TypeError, KeyError):
            d = json.loads(line)
            out.append(Notification(str(d["event"]), str(d["text"]), dict(d.get("digest") or {}), float(d["time"])))
    return out, offset + end


def end_offset(root: Path) -> int:
    """Where an app that opens now starts reading (it shows only what comes after)."""
    try:
        return (root / FILE).stat().st_size
    except OSError:
        return 0
