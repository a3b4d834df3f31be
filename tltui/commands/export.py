"""``tltui export RUN_ID --format savedmodel|litert|onnx [--quantize ...]``: a deployable, verified model.

Runs the export worker (TensorFlow and the converters live there) through
:class:`tltui.client.export.ExportJob`, with a progress bar on a terminal, and prints what the
artifact measured against the Keras model on the run's own splits. Exit codes: 0 verified; 1 the
artifact lost more top-1 than ``--max-drop`` (written, kept and marked); 2 nothing exported.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

from tltui.client.export import ExportJob, ExportNote, ExportProgress, ExportResult, Record, drop_line, result_lines
from tltui.commands import common
from tltui.core import exports
from tltui.core.errors import CommandError
from tltui.core.status import RunStatus

EXIT_DROP = 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a completed run to SavedModel, LiteRT or ONNX, verified against the run",
        description="Writes the run's model as a SavedModel, a LiteRT (.tflite) or an ONNX file that takes uint8 RGB "
        "images at the size the run's images were fed at (input `image` [N, H, W, 3]) and returns the softmax "
        "(`probabilities` [N, classes]), with the preprocessing inside and the class names beside it. The artifact "
        "is loaded back with its own runtime and compared with the Keras model on the run's validation (and test) "
        "split; the figures and a model card are stored beside it. Exit code 1 when top-1 drops more than "
        "--max-drop points (the export is kept and marked), 2 when nothing could be exported.",
    )
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--format", required=True, choices=exports.FORMATS, help="the artifact's format")
    p.add_argument(
        "--quantize",
        choices=exports.QUANTIZATIONS,
        help="litert: float16, dynamic (int8 weights) or int8 (full integer, calibrated on the run's training "
        "images); onnx: dynamic or int8",
    )
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="the export folder (default RUN_DIR/exports/FORMAT[-QUANTIZE])"
    )
    p.add_argument(
        "--max-drop",
        type=_max_drop,
        default=exports.DEFAULT_MAX_DROP,
        metavar="POINTS",
        help=f"top-1 accuracy the export may lose against the Keras model on any split, in points "
        f"(default {exports.DEFAULT_MAX_DROP:g})",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON document")
    p.set_defaults(func=main)


def _max_drop(text: str) -> float:
    try:
        return exports.parse_max_drop(text)
    except exports.ExportError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def reproduce_command(args: argparse.Namespace, run_id: str) -> str:
    """The command line that makes this export again (the model card quotes it)."""
    argv = ["tltui"]
    if getattr(args, "workspace", None):
        argv += ["--workspace", str(Path(args.workspace).absolute())]
    argv += ["export", run_id, "--format", args.format]
    if args.quantize:
        argv += ["--quantize", args.quantize]
    if args.out is not None:
        argv += ["--out", str(args.out.absolute())]
    if args.max_drop != exports.DEFAULT_MAX_DROP:
        argv += [f"--max-drop={args.max_drop:g}"]
    return shlex.join(argv)


def main(args: argparse.Namespace) -> int:
    exports.check_combination(args.format, args.quantize)
    ws = common.workspace(args)
    rec = ws.get(args.run_id)
    if rec.status != RunStatus.COMPLETED:
        raise CommandError(f"{rec.id}: is {rec.status}, not completed; only a completed run can be exported")
    paths = ws.run_paths(rec.id)
    if not paths.model.is_file():
        raise CommandError(f"{rec.id}: has no model ({paths.model} is missing); train it again")
    out: Path | None = args.out
    if out is not None and out.exists() and not exports.is_export(out) and (not out.is_dir() or any(out.iterdir())):
        raise CommandError(f"--out {out}: exists and is not an export folder; give a new or empty folder")
    job = ExportJob(
        paths.dir,
        args.format,
        args.quantize,
        out=out,
        max_drop=args.max_drop,
        command=reproduce_command(args, rec.id),
    )
    try:
        with job:
            result = collect(job, show_progress=sys.stderr.isatty())
    except exports.ExportError as e:
        raise CommandError(f"{rec.id}: {e}") from None
    if result is None:
        raise CommandError(f"{rec.id}: the export worker ended without a result")
    if args.json:
        common.print_json({"run": rec.id, **result.to_dict()})
    else:
        print("\n".join(result_lines(result)))
    if not result.passed:
        print(f"error: {rec.id}: {drop_line(result)}", file=sys.stderr)
        return EXIT_DROP
    return 0


def collect(job: Iterable[Record], *, show_progress: bool) -> ExportResult | None:
    """The job's result; its notes on stderr as they come, its progress as a bar on a terminal."""
    result: ExportResult | None = None

    def take(rec: Record) -> None:
        nonlocal result
        if isinstance(rec, ExportNote):
            print(f"{rec.level}: {rec.message}", file=sys.stderr)
        elif isinstance(rec, ExportResult):
            result = rec

    if not show_progress:
        for rec in job:
            take(rec)
        return result
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("starting the export worker", total=None)
        for rec in job:
            if isinstance(rec, ExportProgress):
                bar.update(task, description=rec.message, completed=rec.done or 0, total=rec.total)
            elif isinstance(rec, ExportNote):
                bar.console.print(f"{rec.level}: {rec.message}", markup=False, highlight=False)
            else:
                take(rec)
    return result
