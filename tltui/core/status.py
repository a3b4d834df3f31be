"""A run's status: one enum, the groups built from it. Stdlib only.

``queued`` -> ``running`` -> one of the final four. The registry stores the value (a string);
``RunStatus`` is a ``StrEnum``, so a stored or received string compares equal to its member.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


#: Not finished: waiting in the queue or training.
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
#: Ended without completing: ``resume`` continues from the last completed epoch.
RESUMABLE = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED)
#: Ended, one way or another.
FINAL = (RunStatus.COMPLETED, *RESUMABLE)
