"""Inference on an image folder: the client that runs the predict worker.

The records are :mod:`tltui.core.predict_records`. The worker (``python -m tltui.worker predict``)
writes one JSON object per line to a pipe; :class:`PredictJob` starts it
(argv list, no shell) and yields typed records as they arrive:
:class:`PredictStarted` once, then :class:`PredictionRow`, :class:`Skipped` and
:class:`Progress` in any mix. A worker failure raises :class:`PredictError`
with one line; :meth:`PredictJob.cancel` (from any thread) ends the iteration
quietly. :class:`PredictReport` folds the records into the JSON/CSV reports
that the CLI and the TUI export.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tltui.client.worker_pipe import WorkerPipeJob
from tltui.core.errors import TltuiError
from tltui.core.images import Score, label_mismatch
from tltui.core.predict_records import PredictionRow, PredictStarted, Progress, Record, Skipped, decode
from tltui.core.protocol import top_k_na


class PredictError(TltuiError):
    """The job could not run or died; ``str(e)`` is one line for the user."""


# ---------------------------------------------------------------------------- client


class PredictJob(WorkerPipeJob[Record]):
    """One run of the predict worker. Iterate it (once) to get records as they arrive.

    Safe to use from a thread: iteration blocks on the pipe; :meth:`cancel` from
    another thread kills the worker, which ends the iteration without an error.
    Use as a context manager (or call :meth:`close`) so the worker never outlives it.
    ``run_dir``: a completed run's folder, or a folder ``tltui export`` wrote (the exported model then
    classifies, through its own runtime).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        folder: str | os.PathLike[str],
        *,
        top_k: int = 5,
        low_res: bool | None = None,
        batch_size: int = 32,
        max_pixels: int | None = None,
        cam_dir: str | os.PathLike[str] | None = None,
        worker_cmd: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
    ) -> None:
        options = ["--top-k", str(top_k), "--batch-size", str(batch_size)]
        if low_res is not None:  # None: the worker goes through the native size when training did
            options.append("--low-res" if low_res else "--full-res")
        if max_pixels is not None:
            options += ["--max-pixels", str(max_pixels)]
        if cam_dir is not None:
            options += ["--cam", str(Path(cam_dir).absolute())]
        super().__init__(
            "predict",
            [str(Path(run_dir).absolute()), str(Path(folder).absolute())],
            options,
            decode=decode,
            error_type=PredictError,
            worker_cmd=worker_cmd,
            env=env,
            popen=popen,
        )


# ---------------------------------------------------------------------------- report


@dataclass
class PredictReport:
    """Everything a finished (or partial) job produced, ready for JSON or CSV export.

    ``top_k``: the classes per image asked for (``--top-k``); the worker lists at most all classes.
    """

    run_id: str
    folder: str
    top_k: int | None = None
    started: PredictStarted | None = None
    rows: list[PredictionRow] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    score: Score | None = None
    progress: Progress | None = None

    def add(self, rec: Record) -> None:
        if isinstance(rec, PredictStarted):
            self.started = rec
            if rec.labels:
                self.score = Score(rec.classes)
        elif isinstance(rec, PredictionRow):
            self.rows.append(rec)
            if self.score is not None and rec.true_label is not None:
                self.score.add(rec.path, rec.true_label, rec.label, rec.probability, rec.true_rank)
        elif isinstance(rec, Skipped):
            self.skipped.append(rec)
        elif isinstance(rec, Progress):
            self.progress = rec

    @property
    def labelled(self) -> bool:
        return self.score is not None

    def label_note(self) -> str | None:
        """Why the folder is not scored although some subfolders are classes of the run (one line),
        else ``None`` (:func:`tltui.core.images.label_mismatch`)."""
        if self.labelled or self.started is None:
            return None
        return label_mismatch(self.folder, self.started.classes)

    @property
    def num_classes(self) -> int | None:
        return len(self.started.classes) if self.started is not None else None

    @property
    def top5_na(self) -> str | None:
        """Why top-5 accuracy is not reported (5 classes or fewer), else ``None``."""
        return top_k_na(self.num_classes)

    @property
    def top5_accuracy(self) -> float | None:
        """Top-5 accuracy of the labelled images; ``None`` without any, or when :attr:`top5_na`."""
        return None if self.score is None or self.top5_na else self.score.top5_accuracy

    @property
    def top_k_note(self) -> str | None:
        """``--top-k K`` with K at least the number of classes: every image lists them all."""
        return top_k_na(self.num_classes, self.top_k) if self.top_k is not None else None

    def summary(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "images": len(self.rows) + len(self.skipped),
            "predicted": len(self.rows),
            "skipped": len(self.skipped),
        }
        if self.score is not None:
            s.update(self.score.to_dict())
            if self.top5_na:  # null, and why, rather than 100% by construction
                s["top5_accuracy"], s["top5_note"] = None, self.top5_na
        return s

    def to_json(self) -> dict[str, Any]:
        preds = []
        for r in self.rows:
            p: dict[str, Any] = {
                "path": r.path,
                "top_k": [{"label": lbl, "probability": prob} for lbl, prob in r.top_k],
            }
            if self.labelled:
                p["true_label"] = r.true_label
            if r.cam is not None:
                p["cam"] = r.cam
            preds.append(p)
        doc: dict[str, Any] = {"run": self.run_id, "folder": self.folder}
        if self.started is not None:  # what the images went through: as training, or full size
            doc.update(
                low_res=self.started.low_res,
                native_size=self.started.native_size,
                image_size=self.started.image_size,
                top_k=self.started.top_k,
            )
            if self.top_k_note:
                doc["top_k_note"] = self.top_k_note
        return {
            **doc,
            "predictions": preds,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "summary": self.summary(),
        }

    def to_csv(self) -> str:
        """One row per predicted image; top-k labels and probabilities joined with ``;``."""
        buf = io.StringIO()
        write_csv(buf, self.rows)
        return buf.getvalue()


CSV_COLUMNS = (
    "path",
    "top1_label",
    "top1_probability",
    "top_k_labels",
    "top_k_probabilities",
    "true_label",
    "correct",
)


def write_csv(out: TextIO, rows: Sequence[PredictionRow]) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        correct = r.correct
        w.writerow(
            [
                r.path,
                r.label,
                f"{r.probability:.6f}",
                ";".join(lbl for lbl, _ in r.top_k),
                ";".join(f"{p:.6f}" for _, p in r.top_k),
                r.true_label or "",
                "" if correct is None else str(correct).lower(),
            ]
        )
