"""A run's status: one enum, the groups built from it. Stdlib only.

``queued`` -> ``running`` -> one of the final four. The registry stores the value (a string);
``RunStatus`` is a ``StrEnum``, so a stored or received string compares equal to its member.
What a person reads of a running run may say more (:func:`shown`: ``cancelling``, and for a
cluster job its :class:`SchedState`); the stored status stays ``running``.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Protocol


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    #: a budgeted sweep's run at a rung (core/asha.py): its backup kept; the runner promotes it, or it
    #: ends ``stopped early`` (its reason says which); ``resume`` trains it to its end
    PAUSED = "paused"


#: Not finished: waiting in the queue or training.
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
#: Ended without completing: ``resume`` continues from the last completed epoch.
RESUMABLE = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED, RunStatus.PAUSED)
#: Ended, one way or another.
FINAL = (RunStatus.COMPLETED, *RESUMABLE)


class SchedState(StrEnum):
    """What a cluster's scheduler says of a ``running`` run's job (the registry's ``sched_state``): a sub-state,
    so every consumer of :class:`RunStatus` (filters, resume, the queue) keeps working unchanged."""

    PENDING = "pending"  # in the scheduler's queue: no node, no worker yet (``sched_reason`` says why)
    UNREACHABLE = "unreachable"  # the scheduler stopped answering at ``sched_since``; the job may still run


class _Shown(Protocol):
    """A run record (``tltui.core.workspace.RunRecord``), as :func:`shown` reads it."""

    @property
    def status(self) -> str: ...
    @property
    def cancel_requested(self) -> bool: ...
    @property
    def sched_state(self) -> str | None: ...
    @property
    def sched_reason(self) -> str | None: ...
    @property
    def sched_since(self) -> float | None: ...


def shown(rec: _Shown, now: float | None = None) -> str:
    """The status a person reads: the stored status (a paused run's ``paused at rung 2`` or ``stopped early at
    rung 1``), or for a running run what is true of it right now:
    ``cancelling`` (asked to stop, not yet confirmed; ``cancelling (pending)`` for a job that never started),
    ``pending (REASON)`` (waiting in the scheduler's queue) or ``cluster unreachable (N s)``."""
    if rec.status == RunStatus.PAUSED:  # a budgeted sweep's run: where it waits, or that it stopped there
        reason = getattr(rec, "reason", None) or ""
        return reason.split(" (", 1)[0] if reason.startswith(("paused at rung", "stopped early at rung")) else "paused"
    if rec.status != RunStatus.RUNNING:
        return str(rec.status)
    state = rec.sched_state
    if rec.cancel_requested:
        return "cancelling (pending)" if state == SchedState.PENDING else "cancelling"
    if state == SchedState.PENDING:
        return f"pending ({rec.sched_reason})" if rec.sched_reason else "pending"
    if state == SchedState.UNREACHABLE:
        since = rec.sched_since
        secs = max(0.0, (time.time() if now is None else now) - since) if since is not None else None
        return "cluster unreachable" + (f" ({secs:.0f} s)" if secs is not None else "")
    return str(rec.status)
