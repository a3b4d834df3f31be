"""What a budgeted sweep's stopper did, for ``tltui sweep show`` (and any other client): one row per run,
its metric at each rung with what was decided there, the epochs and hours spent against what the full
sweep would have cost, and the current leader.

Read from the registry, the runs' events and the sweep's ``decisions.jsonl`` (:mod:`tltui.runner.asha`
writes it); nothing here writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tltui.core import asha, presets, runstate
from tltui.core.errors import TltuiError, one_line
from tltui.core.status import RunStatus, shown
from tltui.core.workspace import RunRecord, Workspace, WorkspaceError
from tltui.runner.asha import plan_of, sweep_key, views

#: A rung cell's mark: promoted past it, stopped there, waiting there.
MARKS = {"promote": "+", "stop": "x", "pause": "="}


@dataclass(frozen=True)
class SweepRow:
    id: str
    name: str
    status: str
    epochs: int  #: epochs trained
    full_epochs: int  #: epochs it trains when never stopped
    hours: float  #: worker time, every segment
    gpu_hours: float  #: ``hours`` x its GPUs
    rungs: list[dict[str, Any]]  #: per rung reached: ``{"rung", "epoch", "value", "mark"}``
    final: float | None  #: the metric of the epoch it keeps (completed runs), else at its last epoch
    reason: str | None
    state: str = ""  #: the status a person reads (``stopped early at rung 1``, ``pending (...)``)
    rung_epochs: list[int] = field(default_factory=list)  #: this run's rung epochs (runs' epochs may differ)


@dataclass(frozen=True)
class SweepView:
    key: str
    preset: str
    metric: str
    mode: str
    eta: int
    rungs: list[int]  #: the rung epochs of the run with the most rungs (each row has its own: ``rung_epochs``)
    rows: list[SweepRow]
    leader: str | None
    decisions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rungs_differ(self) -> bool:
        """Not every run has the same rung epochs (a swept ``train.epochs``, or phases)."""
        return any(r.rung_epochs != self.rungs for r in self.rows)

    def rungs_text(self) -> str:
        """``rungs at epochs 1, 2``; when the runs' rung epochs differ, each set with the runs' epochs."""
        if not self.rungs_differ:
            return f"rungs at epochs {', '.join(map(str, self.rungs)) or '-'}"
        groups: dict[tuple[int, ...], list[int]] = {}
        for r in self.rows:
            groups.setdefault(tuple(r.rung_epochs), []).append(r.full_epochs)
        parts = [
            f"{', '.join(map(str, epochs)) or 'none'} (runs of {', '.join(map(str, sorted(set(full))))} epochs)"
            for epochs, full in sorted(groups.items(), key=lambda g: (len(g[0]), g[0]))
        ]
        return "rung epochs differ by run: " + "; ".join(parts)

    @property
    def epochs(self) -> int:
        return sum(r.epochs for r in self.rows)

    @property
    def full_epochs(self) -> int:
        return sum(r.full_epochs for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        spent = sum(r.hours for r in self.rows)
        per_epoch = spent / self.epochs if self.epochs else 0.0
        return {
            "sweep": self.key,
            "preset": self.preset,
            "metric": self.metric,
            "mode": self.mode,
            "eta": self.eta,
            "rungs": self.rungs,
            "rungs_differ": self.rungs_differ,
            "leader": self.leader,
            "epochs": self.epochs,
            "full_epochs": self.full_epochs,
            "hours": spent,
            "gpu_hours": sum(r.gpu_hours for r in self.rows),
            "full_hours_estimate": per_epoch * self.full_epochs,
            "runs": [r.__dict__ for r in self.rows],
            "decisions": self.decisions,
        }


def find(ws: Workspace, ref: str) -> list[RunRecord]:
    """The runs of a sweep named by its id (``runs ls --json``'s ``sweep``), one of its runs' ids, or its
    preset's name (the latest such sweep)."""
    everyone = ws.list_runs()
    by_key = [r for r in everyone if sweep_key(r) == ref]
    if not by_key:
        try:
            rid = ws.resolve_id(ref)
            key = next((sweep_key(r) for r in everyone if r.id == rid), None)
        except WorkspaceError:
            named = [r for r in everyone if r.preset_name == ref]
            key = sweep_key(max(named, key=lambda r: r.seq)) if named else None
        by_key = [r for r in everyone if key is not None and sweep_key(r) == key]
    if not by_key:
        raise WorkspaceError(f"{ref!r}: no such sweep (a sweep id, one of its run ids, or its preset's name)")
    return sorted(by_key, key=lambda r: r.seq)


def show(ws: Workspace, ref: str) -> SweepView:
    runs = find(ws, ref)
    key = sweep_key(runs[0])
    plan = plan_of(ws, runs)
    if plan is None:
        for r in runs:  # a preset that does not load hides its budget: say why, not "no budget"
            try:
                presets.load(ws.run_paths(r.id).preset)
            except (OSError, TltuiError) as e:
                raise WorkspaceError(f"sweep {key}: run {r.id}'s preset does not load: {one_line(e)}") from e
        raise WorkspaceError(
            f"sweep {key} ({runs[0].preset_name}) has no [sweep.budget]: `tltui runs ls` lists its runs"
        )
    decisions = _decisions(ws, key)
    marks: dict[tuple[str, int], str] = {}
    for d in decisions:  # the latest decision at a rung wins (a paused run is promoted or stopped later)
        marks[(d["run"], int(d["rung"]) - 1)] = MARKS.get(d["action"], "")
    seen = views(ws, runs, plan, {})
    rows = []
    for rec, v in zip(runs, seen, strict=True):
        state = runstate.load(ws.run_paths(rec.id).events)
        epochs = plan.rungs.get(rec.id, [])
        cells = [
            {
                "rung": k + 1,
                "epoch": epochs[k],
                "value": value,
                "mark": _mark(marks.get((rec.id, k), ""), rec, epochs[k]),
            }
            for k, value in sorted(v.values.items())
        ]
        hist = state.history_list()
        kept = state.kept() if rec.status == RunStatus.COMPLETED else None
        row = kept if kept is not None and plan.metric in kept else (hist[-1] if hist else {})
        final = row.get(plan.metric) if row else None
        hours = (state.elapsed() or 0.0) / 3600
        rows.append(
            SweepRow(
                rec.id,
                rec.name,
                rec.status,
                state.epochs_done,
                rec.epochs or state.epochs or 0,
                hours,
                hours * len(rec.gpus or []),
                cells,
                final,
                rec.reason,
                shown(rec),
                list(epochs),
            )
        )
    return SweepView(
        key,
        runs[0].preset_name or "",
        plan.metric,
        "max" if plan.maximize else "min",
        plan.eta,
        max((list(plan.rungs[r.id]) for r in runs if r.id in plan.rungs), key=len, default=[]),
        rows,
        _leader(rows, seen, plan.maximize),
        decisions,
    )


def _mark(mark: str, rec: RunRecord, epoch: int) -> str:
    """A rung's mark as it stands: a run stopped (or waiting) there that then trained past it (``tltui
    resume`` by hand) is no longer stopped there."""
    return "" if mark in ("x", "=") and rec.epoch > epoch else mark


def _leader(rows: list[SweepRow], seen: list[asha.RunView], maximize: bool) -> str | None:
    """The best completed run by its kept metric; before any completed, the best at the highest rung reached."""
    done = [r for r in rows if r.status == RunStatus.COMPLETED and r.final is not None]
    if done:
        return (max if maximize else min)(done, key=lambda r: r.final or 0.0).id
    top = max((k for v in seen for k in v.values), default=None)
    if top is None:
        return None
    ranked = asha.ranking(seen, top, maximize)
    return ranked[0].id if ranked else None


def _decisions(ws: Workspace, key: str) -> list[dict[str, Any]]:
    path = asha.sweep_dir(ws.root, key) / "decisions.jsonl"
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            d = json.loads(line)
        except ValueError:
            continue  # a torn last line
        if isinstance(d, dict) and "run" in d and "rung" in d:
            out.append(d)
    return out
