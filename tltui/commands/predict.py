"""``tltui predict RUN_ID|EXPORT_DIR FOLDER``: classify a folder of images with a completed run or an export of one.

Runs the predict worker (TensorFlow lives there, not here) through
:class:`tltui.client.predict.PredictJob` and prints a table, JSON or a CSV file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tltui.client.predict import PredictError, PredictJob, PredictReport, Progress, Record
from tltui.commands import common
from tltui.core import exports, images
from tltui.core.errors import CommandError, TltuiError
from tltui.core.status import RunStatus
from tltui.core.workspace import RunPaths, Workspace, atomic_write

#: Confusion matrices with more labels than this are left out of the text report (use --json).
MAX_TEXT_CONFUSION = 12


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify a folder of images with a completed run (or a model `tltui export` wrote)",
        description="Top-k classes for every image under FOLDER (recursive). If FOLDER has one "
        "subfolder per class name, also reports accuracy, top-5 accuracy (with 6 classes or more) and a "
        "confusion matrix. Images go through the training data's native size when it is smaller than the "
        "model's input (CIFAR's 32x32, upscaled inside the model), as the training images did. Instead of a run, "
        "give a folder `tltui export` wrote: the exported model classifies through its own runtime (compare it "
        "with its run with --against RUN_ID).",
    )
    p.add_argument("run_id", metavar="RUN_ID|EXPORT_DIR")
    p.add_argument("folder", metavar="FOLDER", type=Path)
    p.add_argument("--top-k", type=common.positive_int, default=5, metavar="K", help="classes per image (default 5)")
    res = p.add_mutually_exclusive_group()
    res.add_argument(
        "--low-res",
        dest="low_res",
        action="store_const",
        const=True,
        help="shrink each image to the training data's native size first (e.g. 32x32 for CIFAR), then upscale "
        "(the default when that size is smaller than the model's input)",
    )
    res.add_argument(
        "--full-res",
        dest="low_res",
        action="store_const",
        const=False,
        help="resize each image straight to the model's input size, even when training went through a smaller one",
    )
    p.add_argument(
        "--batch-size", type=common.positive_int, default=32, metavar="B", help="images per batch (default 32)"
    )
    p.add_argument(
        "--against",
        metavar="RUN_ID_B|EXPORT_DIR",
        help="classify the folder with a second run (or an export) too and report where the two disagree, side by side",
    )
    p.add_argument(
        "--cam",
        type=Path,
        metavar="OUT_DIR",
        help="write a Grad-CAM overlay PNG of each image's top-1 class (where the model looked) into OUT_DIR",
    )
    p.add_argument(
        "--confusion-csv",
        type=Path,
        metavar="OUT",
        help="labelled folders: write the confusion matrix with per-class accuracy to this CSV file",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document")
    out.add_argument("--csv", type=Path, metavar="OUT", help="write one row per image to this CSV file")
    p.set_defaults(func=main)


def check_run(ws: Workspace, run_id: str) -> tuple[str, Path]:
    """The canonical id and folder of a run that can predict; :class:`CommandError` otherwise."""
    rec = ws.get(run_id)
    if rec.status != RunStatus.COMPLETED:
        raise CommandError(f"{rec.id}: is {rec.status}, not completed; only a completed run can predict")
    paths = ws.run_paths(rec.id)
    if not paths.model.is_file():
        raise CommandError(f"{rec.id}: has no model ({paths.model} is missing); train it again")
    if not paths.classes.is_file():
        raise CommandError(f"{rec.id}: has no class names ({paths.classes} is missing)")
    return rec.id, paths.dir


def check_target(ws: Workspace, text: str) -> tuple[str, Path]:
    """A completed run (its id and folder) or a folder ``tltui export`` wrote (``r0012 litert-int8``, its folder)."""
    if exports.is_export(text):
        return exports.read_manifest(text).label, Path(text).absolute()
    return check_run(ws, text)


def main(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
    run_id, run_dir = check_target(ws, args.run_id)
    folder: Path = args.folder
    if not folder.exists():
        raise CommandError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise CommandError(f"{folder}: is a file, expected a folder of images")
    if args.csv is not None and args.csv.is_dir():
        raise CommandError(f"{args.csv}: is a folder; give a file name for --csv")
    for out_file in (args.csv, args.confusion_csv):
        if out_file is not None and out_file.is_dir():
            raise CommandError(f"{out_file}: is a folder; give a file name")
        if out_file is not None and not out_file.parent.is_dir():
            raise CommandError(f"{out_file}: folder {out_file.parent} does not exist")
    if args.cam is not None and args.cam.exists() and not args.cam.is_dir():
        raise CommandError(f"--cam {args.cam}: is a file, expected a folder (it is created if missing)")
    other = check_target(ws, args.against) if args.against else None
    if other is not None and other[1] == run_dir:
        raise CommandError(
            f"--against {args.against}: that is {run_id} itself; give another completed run or an export"
        )
    classes = _classes(run_dir)
    if classes is not None:  # say at once what the worker will find (it reads the same classes.json)
        mismatch = images.label_mismatch(folder, classes)
        if args.confusion_csv is not None and images.folder_labels(folder, classes) is None:
            raise CommandError(
                f"--confusion-csv: {folder} is not labelled ({mismatch or 'no subfolder per class name'})"
            )
        if mismatch is not None:
            print(f"{folder}: {mismatch}", file=sys.stderr)
    report = _classify(run_id, run_dir, folder, args, cam_dir=args.cam)
    against = _classify(other[0], other[1], folder, args) if other is not None else None
    if args.low_res is None:  # the default followed training: say so, once
        for note in low_res_notes(report, against):
            print(f"{note} (--full-res to turn off)", file=sys.stderr)
    if args.confusion_csv is not None:
        if report.score is None or not report.score.total:
            raise CommandError(f"--confusion-csv: {folder} is not labelled (no subfolder per class name)")
        atomic_write(args.confusion_csv, report.score.confusion_csv(), mode=0o644)
        print(f"wrote the confusion matrix to {args.confusion_csv}", file=sys.stderr)
    if args.cam is not None:
        cams = sum(1 for r in report.rows if r.cam)
        print(f"wrote {cams} Grad-CAM overlays to {args.cam}", file=sys.stderr)
    if args.json:
        doc = report.to_json()
        if against is not None:
            doc["against"] = disagreements(report, against)
        common.print_json(doc)
    elif args.csv is not None:
        atomic_write(args.csv, report.to_csv(), mode=0o644)
        print(f"wrote {len(report.rows)} rows to {args.csv}" + _skipped_note(report), file=sys.stderr)
    else:
        print(format_report(report))
        if against is not None:
            print(format_disagreements(disagreements(report, against)))
    return 0


def _classes(run_dir: Path) -> list[str] | None:
    """The class names the worker will use (a run's ``classes.json``, an export's manifest), or
    ``None`` when they do not read (the worker then says why)."""
    try:
        if exports.is_export(run_dir):
            return list(exports.read_manifest(run_dir).classes)
        classes = json.loads(RunPaths(run_dir).classes.read_text(encoding="utf-8"))
    except (OSError, ValueError, TltuiError):
        return None
    return classes if isinstance(classes, list) and all(isinstance(c, str) for c in classes) else None


def _classify(
    run_id: str, run_dir: Path, folder: Path, args: argparse.Namespace, cam_dir: Path | None = None
) -> PredictReport:
    report = PredictReport(run_id, str(folder.absolute()), top_k=args.top_k)
    job = PredictJob(
        run_dir, folder, top_k=args.top_k, low_res=args.low_res, batch_size=args.batch_size, cam_dir=cam_dir
    )
    try:
        with job:
            _collect(job, report, show_progress=sys.stderr.isatty())
    except PredictError as e:
        raise CommandError(f"{run_id}: {e}") from None
    return report


def low_res_notes(report: PredictReport, against: PredictReport | None) -> list[str]:
    """Each run's note when its images went through a smaller native size, as its training images
    did: once when both runs went through the same size, else the second one's names its run."""
    a = report.started.low_res_note() if report.started is not None else None
    b = against.started.low_res_note() if against is not None and against.started is not None else None
    notes = [a] if a else []
    if against is not None and b and b != a:
        notes.append(f"{against.run_id}: {b}")
    return notes


def disagreements(a: PredictReport, b: PredictReport) -> dict[str, Any]:
    """Where two runs' top-1 differ on the same images (in ``a``'s order), and each one's accuracy."""
    by_path = {r.path: r for r in b.rows}
    rows = []
    same = 0
    for ra in a.rows:
        rb = by_path.get(ra.path)
        if rb is None:
            continue
        if ra.label == rb.label:
            same += 1
            continue
        rows.append(
            {
                "path": ra.path,
                "rel": ra.rel,
                "true_label": ra.true_label,
                "a": {"label": ra.label, "probability": ra.probability},
                "b": {"label": rb.label, "probability": rb.probability},
                "right": None if ra.true_label is None else ("a" if ra.correct else "b" if rb.correct else "neither"),
            }
        )
    acc = {k: (r.score.accuracy if r.score is not None else None) for k, r in (("a", a), ("b", b))}
    return {
        "run_a": a.run_id,
        "run_b": b.run_id,
        "both": same + len(rows),
        "agree": same,
        "disagree": rows,
        "accuracy": acc,
    }


def format_disagreements(d: dict[str, Any]) -> str:
    lines = [
        "",
        f"{d['run_a']} vs {d['run_b']}: agree on {d['agree']} of {d['both']} images, disagree on {len(d['disagree'])}",
    ]
    if d["accuracy"]["a"] is not None:
        lines[-1] += f" (accuracy {_pct(d['accuracy']['a'])} vs {_pct(d['accuracy']['b'])})"
    if d["disagree"]:
        width = min(max(len(r["rel"] or r["path"]) for r in d["disagree"]), 50)
        lines.append(f"  {'image':<{width}}  {d['run_a']:<22}  {d['run_b']:<22}  true")
        for r in d["disagree"]:
            a, b = (f"{x['label']} {100 * x['probability']:.0f}%" for x in (r["a"], r["b"]))
            mark = {"a": " <", "b": " >", "neither": "  ", None: ""}[r["right"]]
            name = r["rel"] or r["path"]
            lines.append(f"  {name:<{width}}  {a:<22}  {b:<22}  {r['true_label'] or '-'}{mark}")
    return "\n".join(lines)


def _collect(job: Iterable[Record], report: PredictReport, *, show_progress: bool) -> None:
    if not show_progress:
        for rec in job:
            report.add(rec)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("loading model", total=None)
        for rec in job:
            report.add(rec)
            if isinstance(rec, Progress):
                bar.update(task, description="predicting", completed=rec.done, total=rec.total)


def _skipped_note(report: PredictReport) -> str:
    return f" ({len(report.skipped)} files skipped)" if report.skipped else ""


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def format_report(report: PredictReport) -> str:
    """The human-readable report: one line per image, skipped files, then the summary."""
    root = report.folder
    lines: list[str] = []
    if report.rows:
        width = min(max(len(r.rel or r.path) for r in report.rows), 60)
        for r in report.rows:
            mark = {True: "ok  ", False: "BAD ", None: "    " if report.labelled else ""}[r.correct]
            rest = ", ".join(f"{lbl} {100 * p:.1f}%" for lbl, p in r.top_k[1:])
            true = f"  (true: {r.true_label})" if r.correct is False else ""
            lines.append(
                f"{mark}{(r.rel or r.path):<{width}}  {r.label} {100 * r.probability:.1f}%"
                + (f"  | {rest}" if rest else "")
                + true
            )
    if report.skipped:
        lines.append("")
        lines.append(f"skipped {len(report.skipped)}:")
        lines.extend(f"  {s.rel or s.path}: {s.reason}" for s in report.skipped)
    s = report.summary()
    lines.append("")
    lines.append(f"{root}: {s['predicted']} predicted, {s['skipped']} skipped")
    scored = report.score is not None and report.score.total > 0
    if report.top_k_note and not (scored and report.top_k == 5):  # else the accuracy line says it
        lines.append(f"{report.top_k_note}: each image lists all {report.num_classes} classes")
    if report.score is not None and report.score.total:
        sc = report.score
        top5 = report.top5_na or f"top-5 accuracy {_pct(report.top5_accuracy)}"
        lines.append(f"accuracy {_pct(sc.accuracy)} ({sc.top1}/{sc.total}), {top5}")
        lines.extend(_confusion_lines(sc.confusion()))
        pairs = sc.confused_pairs(10)
        if pairs:
            lines.append("most confused (true -> predicted):")
            lines.extend(f"  {p['true_label']} -> {p['predicted']}: {p['count']}" for p in pairs)
        worst = sorted(sc.per_class(), key=lambda r: (r["accuracy"], r["label"]))[:10]
        if len(sc.per_class()) > 1:
            lines.append(
                "per-class accuracy (lowest first): "
                + ", ".join(f"{r['label']} {_pct(r['accuracy'])} ({r['correct']}/{r['images']})" for r in worst)
            )
        if sc.misclassified:
            lines.append(f"misclassified {len(sc.misclassified)}:")
            lines.extend(
                f"  {_rel(m['path'], root)}: {m['true_label']} -> {m['predicted']} {100 * m['probability']:.1f}%"
                for m in sc.misclassified
            )
    return "\n".join(lines)


def _rel(path: str, root: str) -> str:
    return path[len(root) + 1 :] if path.startswith(root + "/") else path


def _confusion_lines(conf: dict[str, Any]) -> list[str]:
    labels: list[str] = conf["labels"]
    if len(labels) > MAX_TEXT_CONFUSION:
        return [f"confusion matrix: {len(labels)} classes, see --json"]
    w = max(5, *(len(x) for x in labels))
    out = ["confusion matrix (rows: true, columns: predicted):", " " * (w + 3) + " ".join(f"{x:>{w}}" for x in labels)]
    for lbl, row in zip(labels, conf["matrix"], strict=True):
        out.append(f"  {lbl:<{w}} " + " ".join(f"{n:>{w}}" for n in row))
    return out
