"""Live progress of runs for clients, from each run's ``events.jsonl``.

The worker appends every event to its own file as it happens; clients tail
those files (a read of the new bytes) instead of polling the registry, so a
client polling :meth:`LiveRuns.poll` every 0.1 s sees an event within that.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tltui.core import protocol, run_summary, runstate
from tltui.core.workspace import RunRecord, Workspace


@dataclass
class _Tail:
    tail: protocol.EventTail
    state: runstate.RunState


class LiveRuns:
    """Incremental :class:`~tltui.core.runstate.RunState` per run; cheap to poll often."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._tails: dict[str, _Tail] = {}

    def state(self, run_id: str) -> runstate.RunState:
        """The run's state with every event written so far folded in."""
        t = self._tails.get(run_id)
        if t is None:
            st, tail = run_summary.load(self.ws.run_paths(run_id).events)  # the summary, then what followed
            t = self._tails[run_id] = _Tail(tail, st)
        for ev in t.tail.read_new():
            t.state.apply(ev)
        return t.state

    def poll(self, run_ids: Iterable[str]) -> dict[str, runstate.RunState]:
        """States of these runs (forgetting runs no longer asked for)."""
        ids = list(run_ids)
        for gone in set(self._tails) - set(ids):
            del self._tails[gone]
        return {rid: self.state(rid) for rid in ids}


def progress(state: runstate.RunState, rec: RunRecord | None = None) -> dict[str, Any]:
    """What a queue listing shows about a run: epoch x/N, step, fraction, live metrics and the kept epoch's
    val_acc (``best_val_acc``, ``best_epoch``: the epoch ``model.keras`` holds or would hold now)."""
    epochs = state.epochs or (rec.epochs if rec else None)
    best = state.kept() or {}
    current = state.epoch if state.epoch and state.epoch > state.epochs_done else None
    return {
        "epoch": state.epochs_done,
        "epochs": epochs,
        "current_epoch": current,
        "step": state.step if current else None,
        "steps": state.steps if current else None,
        "fraction": state.progress(),
        "live": dict(state.live),
        "best_val_acc": best.get("val_acc", rec.best_val_acc if rec else None),
        "best_epoch": best.get("epoch"),
        "eta_seconds": state.eta_seconds(),
    }
