"""``tltui cancel RUN_ID`` and ``tltui resume RUN_ID``: control one run, headless."""

from __future__ import annotations

import argparse

from tltui.core.status import RunStatus


def register(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("cancel", help="cancel a queued or running run (checkpoints are kept)")
    c.add_argument("run_id", nargs="+")
    c.set_defaults(func=cmd_cancel)
    r = sub.add_parser("resume", help="continue a failed, cancelled or interrupted run from its last epoch")
    r.add_argument("run_id", nargs="+")
    r.set_defaults(func=cmd_resume)


def cmd_cancel(args: argparse.Namespace) -> int:
    from tltui.client import queue_ops
    from tltui.commands import common

    ws = common.workspace(args)
    for ref in args.run_id:
        rec = queue_ops.cancel(ws, ref)
        if rec.status == RunStatus.CANCELLED:
            print(f"{rec.id}: cancelled (it had not started)")
        else:
            print(f"{rec.id}: stopping (the worker saves a checkpoint, then the run is cancelled)")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from tltui.client import queue_ops
    from tltui.commands import common

    ws = common.workspace(args)
    for ref in args.run_id:
        rec = queue_ops.resume(ws, ref)
        how = f"after epoch {rec.epoch}" if rec.resume else "from the start"
        print(f"{rec.id}: queued again; it continues {how}")
    return 0
