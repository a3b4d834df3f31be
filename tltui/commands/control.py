"""``tltui cancel RUN_ID`` and ``tltui resume RUN_ID``: control one run, headless."""

from __future__ import annotations

import argparse

from tltui.core.status import RunStatus, SchedState
from tltui.core.workspace import RunRecord


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
        print(f"{rec.id}: {cancel_message(rec)}")
    return 0


def cancel_message(rec: RunRecord) -> str:
    """What a cancel request does to this run, as the run is right after it."""
    if rec.status == RunStatus.CANCELLED:
        return "cancelled (it had not started)"
    if rec.sched_state == SchedState.PENDING:
        why = f" ({rec.sched_reason})" if rec.sched_reason else ""
        return f"cancelling: its job was still waiting in the scheduler's queue{why}, nothing ran; it leaves the queue"
    if rec.sched_state == SchedState.UNREACHABLE:
        return "cancelling: the cluster does not answer now; the stop is sent, and the run shows `cancelling` until it confirms"
    return "cancelling (the worker saves a checkpoint and stops; the run shows `cancelled` once that is confirmed)"


def cmd_resume(args: argparse.Namespace) -> int:
    from tltui.client import queue_ops
    from tltui.commands import common

    ws = common.workspace(args)
    for ref in args.run_id:
        rec = queue_ops.resume(ws, ref)
        how = f"after epoch {rec.epoch}" if rec.resume else "from the start"
        print(f"{rec.id}: queued again; it continues {how}")
    return 0
