"""Export a completed run (``tltui export``, the app's export dialog): the client of the export worker.

:class:`ExportJob` runs ``python -m tltui.worker export`` (TensorFlow lives there) and yields its
records (:mod:`tltui.core.export_records`): progress and notes, then one :class:`ExportResult`.
A worker failure (a converter that cannot handle the backbone, a missing runtime, a run that cannot
be read) raises :class:`ExportError` with one line. An export whose top-1 dropped more than its
threshold is not a failure here: the result says ``passed = False`` and the worker kept and marked it.
:func:`result_lines` is how the CLI and the app show the figures.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tltui.client.worker_pipe import WorkerPipeJob
from tltui.core.export_records import ExportNote, ExportProgress, ExportResult, Record, SplitCheck, decode
from tltui.core.exports import DEFAULT_MAX_DROP, LOG, ExportError, check_combination, points, variant

__all__ = [
    "ExportError",
    "ExportJob",
    "ExportNote",
    "ExportProgress",
    "ExportResult",
    "Record",
    "SplitCheck",
    "drop_line",
    "result_lines",
]


class ExportJob(WorkerPipeJob[Record]):
    """One export. Iterate it (once) for its records; the last one is the :class:`ExportResult`."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        fmt: str,
        quantize: str | None = None,
        *,
        out: str | os.PathLike[str] | None = None,
        max_drop: float = DEFAULT_MAX_DROP,
        command: str | None = None,
        worker_cmd: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        popen: Callable[..., Any] | None = None,
    ) -> None:
        check_combination(fmt, quantize)
        options = ["--format", fmt, f"--max-drop={float(max_drop)!r}"]  # "=": a negative value is no option
        if quantize:
            options += ["--quantize", quantize]
        if out is not None:
            options += ["--out", str(Path(out).absolute())]
        if command:
            options += ["--command", command]
        extra: dict[str, Any] = {"popen": popen} if popen is not None else {}
        super().__init__(
            "export",
            [str(Path(run_dir).absolute())],
            options,
            decode=decode,
            error_type=ExportError,
            ok_codes=(0, 1),  # 1: exported, kept and marked, but over the threshold (the result says so)
            stop_signal=signal.SIGTERM,  # the worker removes its temporary folder on the way out
            log_file=Path(run_dir) / LOG,
            worker_cmd=worker_cmd,
            env=env,
            **extra,
        )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def check_line(c: SplitCheck) -> str:
    """``validation (120 images): top-1 91.67% vs Keras 91.67% (drop +0.00 points), top-5 ..., agreement 100.00%, max prob diff 3e-07``"""
    name = c.split if c.name == c.split else f"{c.split} {c.name}"
    top5 = f", top-5 {_pct(c.export_top5)} vs {_pct(c.keras_top5)}" if c.keras_top5 is not None else ", top-5 n/a"
    return (
        f"{name} ({c.images} images): top-1 {_pct(c.export_top1)} vs Keras {_pct(c.keras_top1)} "
        f"(drop {c.drop:+.2f} points){top5}, agreement {_pct(c.agreement)}, max prob diff {c.max_abs_diff:.2g}"
    )


def result_lines(result: ExportResult) -> list[str]:
    """The figures as the CLI prints them and the app shows them."""
    lines = [
        f"{variant(result.format, result.quantize)}: {result.artifact} ({_size(result.size_bytes)}), "
        f"input image uint8 [N, {result.input_size[0]}, {result.input_size[1]}, 3] -> probabilities [N, {result.num_classes}]"
    ]
    lines += [f"  {check_line(c)}" for c in result.checks]
    if result.calibration:
        c = result.calibration
        lines.append(f"  int8 calibrated on {c['images']} {c['split']} images drawn with seed {c['seed']}")
    verdict = "verified" if result.passed else "NOT verified"
    lines.append(f"{verdict} (top-1 may drop at most {points(result.max_drop)}); files in {result.out}")
    return lines


def drop_line(result: ExportResult) -> str:
    """The one line of an export over its threshold (the CLI's error line, exit code 1)."""
    w = result.worst
    assert w is not None
    return (
        f"{variant(result.format, result.quantize)} lost {w.drop:.2f} points of top-1 on {w.split} "
        f"({_pct(w.keras_top1)} -> {_pct(w.export_top1)}), over --max-drop {result.max_drop:g}; "
        f"kept and marked in {result.out} (VERIFICATION_FAILED)"
    )
