"""The runner's side of a budgeted sweep: it applies :func:`tltui.core.asha.decide` to the runs paused at a
rung, and writes every decision down with the numbers it used.

The queue runner calls :meth:`SweepStopper.step` once per loop. A promotion writes the run's
``rungs.json`` (how many rungs it may pass), puts it back in the queue ahead of the runs that have not
started (its worker resumes from the rung's backup, ``--resume``) and appends a ``promote`` line to the
sweep's ``decisions.jsonl``; a run that will not go on keeps its ``paused`` status and its backup, its
reason says ``stopped early ...``. Nothing here survives only in memory: after a restart the runner reads
the registry and the runs' events again (the decisions file is the record, never an input).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tltui.core import asha, presets, runstate
from tltui.core.errors import TltuiError
from tltui.core.status import ACTIVE, RunStatus
from tltui.core.workspace import RunRecord, Workspace

log = logging.getLogger("tltui.runner")


@dataclass(frozen=True)
class SweepPlan:
    """What a budgeted sweep ranks by: its metric and direction, eta, and each run's rung epochs."""

    metric: str
    maximize: bool
    eta: int
    rungs: dict[str, list[int]]


def sweep_key(rec: RunRecord) -> str:
    return rec.sweep or rec.id


def plan_of(ws: Workspace, runs: Sequence[RunRecord]) -> SweepPlan | None:
    """The sweep's budget (from its runs' presets), ``None`` for a sweep without one."""
    budget, rungs = None, {}
    for r in runs:
        try:
            p = presets.load(ws.run_paths(r.id).preset)
        except (OSError, TltuiError):
            continue
        if p.sweep_space.budget is not None:
            budget = p.sweep_space.budget
            rungs[r.id] = asha.rungs_of(p)
    if budget is None:
        return None
    return SweepPlan(budget.metric, budget.maximize, budget.eta, rungs)


def views(
    ws: Workspace, runs: Sequence[RunRecord], plan: SweepPlan, cache: dict[tuple[str, int], float | None]
) -> list[asha.RunView]:
    """Each run as :func:`tltui.core.asha.decide` sees it; ``cache`` keeps the metric at each rung a run
    reached (it never changes: a resumed run repeats no epoch)."""
    out = []
    for r in runs:
        epochs = plan.rungs.get(r.id, [])
        reached = [k for k, e in enumerate(epochs) if e <= r.epoch]
        if any((r.id, k) not in cache for k in reached):
            history = runstate.load(ws.run_paths(r.id).events).history
            for k in reached:
                v = history.get(epochs[k], {}).get(plan.metric)
                cache[(r.id, k)] = float(v) if isinstance(v, int | float) else None
        paused = r.status == RunStatus.PAUSED and r.epoch in epochs
        out.append(
            asha.RunView(
                r.id,
                values={k: cache[(r.id, k)] for k in reached},
                paused_at=epochs.index(r.epoch) if paused else None,
                active=r.status in ACTIVE,
                past=r.status == RunStatus.COMPLETED and len(reached) == len(epochs),  # not stopped before
            )
        )
    return out


class SweepStopper:
    """Decides for every budgeted sweep that has a paused run; cheap when nothing changed."""

    def __init__(self, ws: Workspace, clock: Any = time.time) -> None:
        self.ws = ws
        self.clock = clock
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._plans: dict[str, SweepPlan | None] = {}
        self._values: dict[tuple[str, int], float | None] = {}

    def step(self) -> bool:
        """Promote or stop the runs paused at a rung; ``True`` when a run went back to the queue."""
        keys = {sweep_key(r) for r in self.ws.list_runs([RunStatus.PAUSED])}
        if not keys:
            return False
        everyone = self.ws.list_runs()
        changed = False
        for key in sorted(keys):
            runs = [r for r in everyone if sweep_key(r) == key]
            sig = tuple((r.id, r.status, r.epoch, r.reason) for r in runs)
            if self._seen.get(key) == sig:
                continue
            try:
                changed |= self._decide(key, runs)
                runs = self._reload(runs)
            except Exception:  # e.g. an unreadable events file: the other sweeps and the queue go on
                log.exception("sweep %s: no decision this time", key)
            self._seen[key] = tuple((r.id, r.status, r.epoch, r.reason) for r in runs)
        return changed

    def _reload(self, runs: Sequence[RunRecord]) -> list[RunRecord]:
        ids = {r.id for r in runs}
        return [r for r in self.ws.list_runs() if r.id in ids]

    def _decide(self, key: str, runs: Sequence[RunRecord]) -> bool:
        if key not in self._plans:
            self._plans[key] = plan_of(self.ws, runs)
        plan = self._plans[key]
        if plan is None:
            return False
        seen = views(self.ws, runs, plan, self._values)
        by_id = {r.id: r for r in runs}
        decisions = asha.decide(seen, max((len(e) for e in plan.rungs.values()), default=0), plan.eta, plan.maximize)
        self._note_paused(key, plan, seen, by_id, {d.run for d in decisions})
        moved = False
        for pos, d in enumerate(d for d in decisions if d.action == "promote"):
            rec = by_id[d.run]
            asha.write_passed(self.ws.run_paths(d.run).dir, d.rung + 1)
            if self.ws.requeue(d.run, expect=[RunStatus.PAUSED], resume=True) is None:
                continue
            self.ws.move(d.run, pos + 1)  # promotions first, the furthest rung first (ASHA)
            moved = True
            self._write(key, plan, d, rec)
            log.info(
                "%s: promoted past rung %d (%s %s, %d of %d)",
                d.run,
                d.rung + 1,
                plan.metric,
                _num(d.value),
                d.rank,
                d.reached,
            )
        for d in decisions:
            if d.action != "stop":
                continue
            rec = by_id[d.run]
            epoch = plan.rungs[d.run][d.rung]
            reason = (
                f"stopped early at rung {d.rung + 1} (epoch {epoch}): {plan.metric} {_num(d.value)}, "
                f"{d.rank} of {d.reached} ({d.went} went on); `tltui resume {d.run}` trains it to its end"
            )
            if rec.reason != reason and self.ws.update(d.run, expect=[RunStatus.PAUSED], reason=reason) is not None:
                self._write(key, plan, d, rec)
                log.info("%s: %s", d.run, reason)
        return moved

    def _note_paused(
        self, key: str, plan: SweepPlan, seen: Sequence[asha.RunView], by_id: dict[str, RunRecord], deciding: set[str]
    ) -> None:
        """A run that just paused: its reason says where it stands (and a ``pause`` line is written)."""
        for v in seen:
            rec = by_id[v.id]
            if v.paused_at is None or v.id in deciding or (rec.reason or "").startswith("stopped early"):
                continue
            ranked = asha.ranking(seen, v.paused_at, plan.maximize)
            rank, top = ranked.index(v) + 1, len(ranked) // plan.eta
            epoch = plan.rungs[v.id][v.paused_at]
            head = f"paused at rung {v.paused_at + 1} (epoch {epoch}): "
            reason = f"{head}{plan.metric} {_num(v.values.get(v.paused_at))}, {rank} of {len(ranked)} so far (the top {top} go on)"
            first = not (rec.reason or "").startswith(head)  # the worker's own reason has no numbers
            if rec.reason == reason or self.ws.update(v.id, expect=[RunStatus.PAUSED], reason=reason) is None:
                continue
            if not first:
                continue
            cutoff = ranked[top - 1].values[v.paused_at] if top else None
            d = asha.Decision(
                "pause", v.id, v.paused_at, v.values.get(v.paused_at), rank, len(ranked), top, cutoff, "rung"
            )
            self._write(key, plan, d, rec)

    def _write(self, key: str, plan: SweepPlan, d: asha.Decision, rec: RunRecord) -> None:
        folder = asha.sweep_dir(self.ws.root, key)
        folder.mkdir(parents=True, exist_ok=True)
        line = {
            "t": self.clock(),
            **d.as_dict(),
            "rung": d.rung + 1,
            "epoch": plan.rungs[d.run][d.rung],
            "name": rec.name,
            "metric": plan.metric,
            "mode": "max" if plan.maximize else "min",
            "eta": plan.eta,
        }
        with open(folder / "decisions.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"
