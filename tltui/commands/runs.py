"""``tltui runs ls|show|rm``: the run registry, headless."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tltui.commands import common
from tltui.commands.run import test_summary
from tltui.core import runstate
from tltui.core.protocol import TOP5_MIN_CLASSES
from tltui.core.status import RunStatus
from tltui.core.workspace import RunRecord, Workspace, WorkspaceError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list, show or delete runs")
    rs = p.add_subparsers(dest="runs_command", metavar="ACTION", required=True, parser_class=type(p))
    ls = rs.add_parser("ls", help="list runs")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--status", action="append", help="only runs with this status (repeatable)")
    ls.set_defaults(func=cmd_ls)
    show = rs.add_parser("show", help="one run: status, history, best epoch, files")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)
    rm = rs.add_parser("rm", help="delete a run and its folder (not while running)")
    rm.add_argument("run_id", nargs="+")
    rm.add_argument("--yes", action="store_true", help="do not ask")
    rm.set_defaults(func=cmd_rm)


def _summary(r: RunRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "status": r.status,
        "created": r.created,
        "started": r.started,
        "finished": r.finished,
        "epoch": r.epoch,
        "epochs": r.epochs,
        "best_val_acc": r.best_val_acc,
        "best_val_top5_acc": r.best_val_top5_acc,
        "best_epoch": r.best_epoch,
        "gpus": r.gpus,
        "sweep": r.sweep,
        "reason": r.reason,
    }


def _fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:5.1f}%"


def cmd_ls(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
    runs = ws.list_runs(args.status)
    if args.json:
        common.print_json({"runs": [_summary(r) for r in runs]})
        return 0
    if not runs:
        print("no runs yet: `tltui run PRESET` or `tltui queue add PRESET`")
        return 0
    lines = [f"{'ID':<7} {'STATUS':<11} {'EPOCH':>9} {'VAL_ACC':>7} {'TOP5':>7}  {'CREATED':<16} NAME"]
    for r in runs:
        ep = f"{r.epoch}/{r.epochs}" if r.epochs else str(r.epoch)
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
        lines.append(
            f"{r.id:<7} {r.status:<11} {ep:>9} {_fmt_pct(r.best_val_acc):>7} "
            f"{_fmt_pct(r.best_val_top5_acc):>7}  {created:<16} {r.name}"
        )
    print("\n".join(lines))
    return 0


def run_details(ws: Workspace, rec: RunRecord) -> dict[str, Any]:
    """Everything ``runs show`` reports, as one JSON-ready dict."""
    paths = ws.run_paths(rec.id)
    st = runstate.load(paths.events)
    classes = None
    if paths.classes.exists():
        try:
            classes = json.loads(paths.classes.read_text())
        except ValueError:
            classes = None
    elapsed = None
    if st.history:
        elapsed = sum(h.get("epoch_seconds") or 0.0 for h in st.history_list())
    return {
        **_summary(rec),
        "pid": rec.pid if rec.status == RunStatus.RUNNING else None,
        "host": rec.host,
        "dir": str(paths.dir),
        "preset_path": str(paths.preset),
        "events_path": str(paths.events),
        "log_path": str(paths.log),
        "model_path": str(paths.model) if paths.model.exists() else None,
        "tensorboard_dir": str(paths.tensorboard),
        "checkpoints": sorted(str(p) for p in paths.checkpoints.glob("*.keras")) if paths.checkpoints.exists() else [],
        "overrides": rec.overrides,
        "history": [{k: v for k, v in h.items() if k != "t"} for h in st.history_list()],
        "best": st.best(),
        "test": st.test,  # split, examples, weights_epoch, test_loss, test_acc[, test_top5_acc]
        "params": st.model or None,
        "num_classes": len(classes) if isinstance(classes, list) else None,
        "timings": {
            "train_seconds": elapsed,
            "wall_seconds": (rec.finished or time.time()) - rec.started if rec.started else None,
            "eta_seconds": st.eta_seconds() if rec.status == RunStatus.RUNNING else None,
        },
    }


def cmd_show(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
    rec = ws.get(args.run_id)
    d = run_details(ws, rec)
    skipped = runstate.load(ws.run_paths(rec.id).events).skipped_lines if rec.status != RunStatus.RUNNING else 0
    if skipped:  # once per command, on stderr: the history above it is still right
        print(
            f"warning: {ws.run_paths(rec.id).events}: skipped {skipped} unreadable line(s) "
            "(a write cut short by a crash)",
            file=sys.stderr,
        )
    if args.json:
        common.print_json(d)
        return 0
    print(f"{d['id']}  {d['name']}  [{d['status']}]")
    if d["reason"]:
        print(f"reason: {d['reason']}")
    print(f"dir: {d['dir']}")
    if d["model_path"]:
        print(f"model: {d['model_path']}")
    if d["params"]:
        p = d["params"]
        print(f"params: {p['trainable_params']:,} trainable / {p['non_trainable_params']:,} frozen")
    if d["history"]:
        print(f"{'epoch':>5} {'loss':>8} {'acc':>7} {'top5':>7} {'val_loss':>8} {'val_acc':>7} {'val_top5':>8} {'secs':>6}")
        for h in d["history"]:
            print(
                f"{h['epoch']:>5} {h.get('loss', float('nan')):>8.4f} {_fmt_pct(h.get('acc')):>7} "
                f"{_fmt_pct(h.get('top5_acc')):>7} {h.get('val_loss', float('nan')):>8.4f} "
                f"{_fmt_pct(h.get('val_acc')):>7} {_fmt_pct(h.get('val_top5_acc')):>8} {h.get('epoch_seconds') or 0:>6.1f}"
            )
    if d["best"]:
        b = d["best"]
        print(f"best: epoch {b['epoch']} val_acc {_fmt_pct(b['val_acc'])} val_top5 {_fmt_pct(b['val_top5_acc'])}")
    if d["test"]:
        print(f"test: {test_summary(d['test'])}")
    n = d["num_classes"]
    if d["history"] and n is not None and n < TOP5_MIN_CLASSES:
        print(f"top-5: n/a with {n} classes (it would be 100% by construction)")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
    recs = [ws.get(r) for r in args.run_id]
    for rec in recs:
        if rec.status == RunStatus.RUNNING:
            raise WorkspaceError(f"{rec.id}: is running; cancel it first (`tltui cancel {rec.id}`)")
    if not args.yes:
        answer = input(f"delete {', '.join(r.id for r in recs)} and their files? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    for rec in recs:
        ws.delete(rec.id)
        print(f"deleted {rec.id}")
    return 0
