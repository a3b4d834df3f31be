"""``tltui runs ls|show|rm``: the run registry, headless."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tltui.commands import common
from tltui.commands.run import test_summary
from tltui.core import cluster_jobs, runstate
from tltui.core.errors import CommandError
from tltui.core.protocol import MODEL_RULES, top_k_na
from tltui.core.status import RunStatus, shown
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
        "state": shown(r),  # what is true of it now: "pending (Resources)", "cancelling", ... else the status
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
    valid = [s.value for s in RunStatus]
    bad = [s for s in args.status or [] if s not in valid]
    if bad:
        raise CommandError(f"runs ls --status {bad[0]}: no such status (one of {', '.join(valid)})")
    ws = common.workspace(args)
    runs = ws.list_runs(args.status)
    if args.json:
        common.print_json({"runs": [_summary(r) for r in runs]})
        return 0
    if not runs:
        if args.status:
            print(f"no {' or '.join(args.status)} runs ({len(ws.list_runs())} runs in all)")
        else:
            print("no runs yet: `tltui run PRESET` or `tltui queue add PRESET`")
        return 0
    now = time.time()
    states = {r.id: shown(r, now) for r in runs}
    w = max(11, *(len(s) for s in states.values()))
    lines = [f"{'ID':<7} {'STATUS':<{w}} {'EPOCH':>9} {'VAL_ACC':>7} {'TOP5':>7}  {'CREATED':<16} NAME"]
    for r in runs:
        ep = f"{r.epoch}/{r.epochs}" if r.epochs else str(r.epoch)
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
        lines.append(
            f"{r.id:<7} {states[r.id]:<{w}} {ep:>9} {_fmt_pct(r.best_val_acc):>7} "
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
        "executor": rec.executor,
        # a cluster run: its scheduler job id, node, dashboard and every job it has had (None: not a cluster run)
        "cluster": cluster_jobs.summary(paths.dir, rec.host),
        "dir": str(paths.dir),
        "preset_path": str(paths.preset),
        "events_path": str(paths.events),
        "log_path": str(paths.log),
        "model_path": str(paths.model) if paths.model.exists() else None,
        "tensorboard_dir": str(paths.tensorboard),
        "checkpoints": sorted(str(p) for p in paths.checkpoints.glob("*.keras")) if paths.checkpoints.exists() else [],
        "overrides": rec.overrides,
        "history": [{k: v for k, v in h.items() if k != "t"} for h in st.history_list()],
        "kept": st.kept(),  # the epoch model.keras holds (or would hold now): epoch, rule, final, val metrics
        "best": st.best(),  # the best val_acc epoch (the kept one unless train.restore_best = false)
        "test": st.test,  # split, examples, weights_epoch, test_loss, test_acc[, test_top5_acc]
        "params": st.model or None,  # of the phase that trains last (a phased run: see "phases")
        "phases": st.phases_list(),  # a phased run's phases: epochs, optimizer, lr, freeze, params, feature cache
        "compute": st.compute(),  # precision and XLA of the latest worker, each with why (None: not recorded)
        "num_classes": len(classes) if isinstance(classes, list) else None,
        "timings": {
            "train_seconds": elapsed,
            # every worker segment of a resumed run (not the pause between them)
            "wall_seconds": (st.elapsed(time.time(), rec.started) if rec.status == RunStatus.RUNNING else st.elapsed())
            if st.started_at is not None
            else ((rec.finished or time.time()) - rec.started if rec.started else None),
            "first_started": st.first_started_at,
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
    print(f"{d['id']}  {d['name']}  [{d['state']}]")
    if d["reason"]:
        print(f"reason: {d['reason']}")
    print(f"dir: {d['dir']}")
    for line in cluster_jobs.describe(d["dir"], d["host"]):
        print(line)
    if d["model_path"]:
        k = d["kept"]
        held = f" (epoch {k['epoch']}: {MODEL_RULES.get(k['rule'], k['rule'])})" if k and k["final"] else ""
        print(f"model: {d['model_path']}{held}")
    if d["compute"]:
        print(f"compute: {compute_text(d['compute'])}")
    if d["params"] and not d["phases"]:
        p = d["params"]
        print(f"params: {p['trainable_params']:,} trainable / {p['non_trainable_params']:,} frozen")
    if d["phases"]:
        print("phases:")
        for ph in d["phases"]:
            print(f"  {phase_line(ph)}")
    if d["history"]:
        phased = bool(d["phases"])
        print(
            f"{'epoch':>5}{' ph' if phased else ''} {'loss':>8} {'acc':>7} {'top5':>7} {'val_loss':>8} {'val_acc':>7} "
            f"{'val_top5':>8} {'lr':>9} {'secs':>6}"
        )
        for h in d["history"]:
            ph = f" {h.get('phase', ''):>2}" if phased else ""
            lr = "-" if h.get("lr") is None else f"{h['lr']:.3g}"
            print(
                f"{h['epoch']:>5}{ph} {h.get('loss', float('nan')):>8.4f} {_fmt_pct(h.get('acc')):>7} "
                f"{_fmt_pct(h.get('top5_acc')):>7} {h.get('val_loss', float('nan')):>8.4f} "
                f"{_fmt_pct(h.get('val_acc')):>7} {_fmt_pct(h.get('val_top5_acc')):>8} {lr:>9} "
                f"{h.get('epoch_seconds') or 0:>6.1f}"
            )
    if d["kept"]:
        print(f"result: {runstate.kept_text(d['kept'])}")
    b = d["best"]
    if b and (not d["kept"] or b["epoch"] != d["kept"]["epoch"]):  # a better epoch that model.keras does not hold
        print(
            f"best: epoch {b['epoch']} val_acc {_fmt_pct(b['val_acc'])} val_top5 {_fmt_pct(b['val_top5_acc'])} "
            "(not the epoch model.keras holds)"
        )
    if d["test"]:
        print(f"test: {test_summary(d['test'])}")
    if d["history"] and (na := top_k_na(d["num_classes"])):
        print(na)
    return 0


def compute_text(c: dict[str, Any]) -> str:
    """``mixed_bfloat16 (auto: NVIDIA A100 ... has bfloat16 tensor cores), XLA off (auto: 2 replicas ...)``."""
    parts = []
    if c.get("precision"):
        parts.append(f"{c['precision']} ({c['precision_why']})")
    if c.get("jit_compile") is not None:
        parts.append(f"XLA {'on' if c['jit_compile'] else 'off'} ({c['jit_why']})")
    return ", ".join(parts)


def phase_line(ph: dict[str, Any]) -> str:
    """``1/2 head: epochs 1-3, adam lr 0.001, freeze all (BatchNorm frozen), 6,405 trainable params, feature
    cache`` (one phase of :meth:`tltui.core.runstate.RunState.phases_list`)."""
    name = f" {ph['name']}" if ph["name"] else ""
    cache = ", feature cache (the backbone ran once, from cached features)" if ph["feature_cache"] else ""
    return (
        f"{ph['index']}/{ph['count']}{name}: epochs {ph['first_epoch']}-{ph['last_epoch']}, {ph['optimizer']} "
        f"lr {ph['learning_rate']:g}, freeze {ph['freeze_depth']} (BatchNorm {ph['batchnorm']}), "
        f"{ph['trainable_params']:,} trainable params{cache}"
    )


def cmd_rm(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
    recs = [ws.get(r) for r in args.run_id]
    for rec in recs:
        if rec.status == RunStatus.RUNNING:
            raise WorkspaceError(f"{rec.id}: is running; cancel it first (`tltui cancel {rec.id}`)")
    if not args.yes:
        try:
            answer = input(f"delete {', '.join(r.id for r in recs)} and their files? [y/N] ")
        except EOFError:  # no terminal to answer from (cron, a pipe): no; --yes deletes without asking
            answer = ""
            print()
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    for rec in recs:
        ws.delete(rec.id)
        print(f"deleted {rec.id}")
    return 0
