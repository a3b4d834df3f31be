"""``tltui queue add|ls|move|pause|resume-queue|runner``: the run queue, headless.

Imports only argparse at module level; the work happens in :mod:`tltui.client.queue_ops`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tltui.core.status import RunStatus, shown


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("queue", help="queue runs and manage the detached queue runner")
    qs = p.add_subparsers(dest="queue_command", metavar="ACTION", required=True, parser_class=type(p))

    add = qs.add_parser("add", help="validate a preset, expand its sweep, queue the runs (prints run ids)")
    add.add_argument("preset", help="preset file, or the name of a shipped/workspace preset")
    add.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset field (dotted key, TOML value), e.g. --set train.epochs=3",
    )
    from tltui.runner.executor import EXECUTORS

    add.add_argument(  # the registry as choices: its entry points are read only if --executor is given or shown
        "--executor",
        choices=EXECUTORS,
        default=None,
        metavar="EXECUTOR",
        help="where the runs execute: %(choices)s (default: [executor] default in <workspace>/settings.toml, else local)",
    )
    add.add_argument("--no-runner", action="store_true", help="queue only; do not start the queue runner")
    add.set_defaults(func=cmd_add)

    ls = qs.add_parser("ls", help="running and queued runs in start order")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_ls)

    mv = qs.add_parser("move", help="move a queued run to position N (1 = next)")
    mv.add_argument("run_id")
    mv.add_argument("--to", type=int, required=True, metavar="N")
    mv.set_defaults(func=cmd_move)

    qs.add_parser("pause", help="start no new runs (running ones finish)").set_defaults(func=cmd_pause)
    qs.add_parser("resume-queue", help="start queued runs again after `queue pause`").set_defaults(func=cmd_unpause)

    rn = qs.add_parser("runner", help="the detached queue runner: status, start or stop")
    rn.add_argument("action", choices=["status", "start", "stop"])
    rn.add_argument("--json", action="store_true")
    rn.set_defaults(func=cmd_runner)


def _ws(args: argparse.Namespace) -> Any:
    from tltui.commands import common

    return common.workspace(args)


def cmd_add(args: argparse.Namespace) -> int:
    from tltui.client import queue_ops
    from tltui.core import demo, presets

    ws = _ws(args)
    path = demo.find_preset(args.preset, ws)  # the demo by name: its data is generated when missing
    overrides = presets.parse_set(args.overrides)
    recs = queue_ops.add(
        ws,
        path,
        overrides,
        start_runner=not args.no_runner,
        executor=getattr(args, "executor", None),
        warn=lambda w: print(f"warning: {w}", file=sys.stderr),
    )
    for r in recs:
        print(r.id)
    return 0


def queue_rows(ws: Any) -> list[dict[str, Any]]:
    """Running runs (oldest start first), then the queue in start order, with progress."""
    from tltui.client import live
    from tltui.core import cluster_jobs, runstate

    running = sorted(ws.list_runs([RunStatus.RUNNING]), key=lambda r: (r.started or 0, r.seq))
    rows: list[dict[str, Any]] = []
    for r in running:
        prog = live.progress(runstate.load(ws.run_paths(r.id).events), r)
        job = cluster_jobs.latest(ws.run_paths(r.id).dir)
        rows.append(
            {
                "position": None,
                "id": r.id,
                "name": r.name,
                "status": r.status,
                "state": shown(r),  # "pending (Resources)", "cluster unreachable (12 s)", "cancelling", "running"
                "gpus": r.gpus,
                "pid": r.pid,
                "cancel_requested": r.cancel_requested,
                "executor": r.executor,
                "host": r.host,
                "job_id": job.job_id if job else None,  # the scheduler's id of a cluster run's job
                "dashboard": job.dashboard if job else None,
                **prog,
            }
        )
    for pos, r in enumerate(ws.queue(), 1):
        rows.append(
            {
                "position": pos,
                "id": r.id,
                "name": r.name,
                "status": r.status,
                "state": r.status,
                "gpus": None,
                "pid": None,
                "cancel_requested": False,
                "executor": r.executor,
                "host": None,
                "job_id": None,
                "dashboard": None,
                "epoch": r.epoch,
                "epochs": r.epochs,
                "current_epoch": None,
                "step": None,
                "steps": None,
                "fraction": 0.0,
                "live": {},
                "best_val_acc": r.best_val_acc,
                "best_epoch": r.best_epoch,
                "eta_seconds": None,
                "resume": r.resume,
            }
        )
    return rows


def _device(row: dict[str, Any]) -> str:
    from tltui.client.queue_ops import places_devices

    cluster = places_devices(row["executor"])  # else: this machine's devices, which the runner gives
    if row["status"] != RunStatus.RUNNING:
        return row["executor"] if cluster else "-"
    if cluster:
        return f"{row['executor']}:{row.get('host') or '?'}"
    return ",".join(f"gpu{g}" for g in row["gpus"]) if row["gpus"] else "cpu"


def _progress(row: dict[str, Any]) -> str:
    text = f"{row['epoch']}/{row['epochs'] or '?'}"
    if row.get("current_epoch") and row.get("steps"):
        text += f" ({100 * (row['step'] or 0) / row['steps']:.0f}%)"
    return text


def cmd_ls(args: argparse.Namespace) -> int:
    from tltui.client import queue_ops
    from tltui.commands import common

    ws = _ws(args)
    rows = queue_rows(ws)
    paused = ws.is_paused()
    runner = queue_ops.runner_status(ws)
    if args.json:
        common.print_json({"paused": paused, "runner": runner, "runs": rows})
        return 0
    if not rows:
        print("queue empty" + (" (paused)" if paused else ""))
        return 0
    w = max(9, *(len(r["state"]) for r in rows))
    dw = max(9, *(len(_device(r)) for r in rows))
    jw = max((len(r["job_id"] or "-") for r in rows), default=0) if any(r["job_id"] for r in rows) else 0
    job_head = f" {'JOB':<{jw}}" if jw else ""
    lines = [f"{'POS':>3} {'ID':<7} {'STATUS':<{w}} {'DEVICE':<{dw}}{job_head} {'EPOCH':>12} {'BEST':>7}  NAME"]
    for r in rows:
        best = "-" if r["best_val_acc"] is None else f"{100 * r['best_val_acc']:5.1f}%"
        pos = "" if r["position"] is None else str(r["position"])
        job = f" {r['job_id'] or '-':<{jw}}" if jw else ""
        lines.append(
            f"{pos:>3} {r['id']:<7} {r['state']:<{w}} {_device(r):<{dw}}{job} {_progress(r):>12} {best:>7}  {r['name']}"
        )
    print("\n".join(lines))
    if paused:
        print("queue paused: `tltui queue resume-queue` starts queued runs again")
    elif not runner and any(r["status"] == RunStatus.QUEUED for r in rows):
        print("no queue runner: `tltui queue runner start`")
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    from tltui.client import queue_ops

    ws = _ws(args)
    queue_ops.move(ws, args.run_id, args.to)
    pos = [r.id for r in ws.queue()].index(ws.resolve_id(args.run_id)) + 1
    print(f"{ws.resolve_id(args.run_id)}: now at position {pos}")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    from tltui.client import queue_ops

    queue_ops.pause(_ws(args))
    print("queue paused: running runs go on, no new run starts (`tltui queue resume-queue` to go on)")
    return 0


def cmd_unpause(args: argparse.Namespace) -> int:
    from tltui.client import queue_ops

    queue_ops.unpause(_ws(args))
    print("queue resumed")
    return 0


def cmd_runner(args: argparse.Namespace) -> int:
    from tltui.client import queue_ops
    from tltui.commands import common

    ws = _ws(args)
    if args.action == "start":
        pid = queue_ops.ensure_runner(ws)
        print(f"queue runner running (pid {pid})")
        return 0
    if args.action == "stop":
        was = queue_ops.stop_runner(ws)
        print("queue runner stopped (running workers go on)" if was else "no queue runner was running")
        return 0
    st = queue_ops.runner_status(ws)
    if args.json:
        common.print_json({"runner": st})
        return 0
    if st is None:
        print("no queue runner running (it starts with `tltui queue add`)")
        return 0
    print(f"queue runner pid {st['pid']} on {st['host']}, log {st['log']}")
    return 0
