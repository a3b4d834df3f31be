"""Asynchronous successive halving (ASHA) over the queue: the rungs of a run, and the pure rule that
pauses, promotes and stops a budgeted sweep's runs. Stdlib only.

A budgeted sweep (``[sweep.budget]``, :class:`tltui.core.sweep_space.Budget`) gives each run rungs at
``r, r*eta, r*eta^2, ...`` epochs, below its last epoch ``R`` (counted over all its phases; a rung that
would be a phase's first epoch moves to the next one, unless ``rung_in_first_epoch``). The worker
pauses a run when it reaches the first rung it has not been promoted past (``rungs.json`` in its
folder: :func:`read_passed`), with its backup kept; the runner (:mod:`tltui.runner.asha`) then applies
:func:`decide`, Li et al.'s ASHA rule (MLSys 2020): a run paused at rung ``k`` is promoted (it
continues by exact resume) once it is among the top ``floor(n_k / eta)`` of the ``n_k`` runs that
reached rung ``k``, so no slot waits for a rung to fill. When nothing of the sweep is queued or
running and no run can be promoted, the best run at the highest rung is promoted anyway if no run got
further (a finite sweep must finish one run), and the other paused runs are ``stopped early``
(still resumable by hand: ``tltui resume`` lets such a run train to its end).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tltui.core.presets import Preset

#: The run folder's file that says how many rungs the run was promoted past.
RUNGS_FILE = "rungs.json"
#: What ``tltui resume`` writes for a paused run: train to the end, pausing at no rung.
ALL_RUNGS = 1_000_000


def rungs(
    min_epochs: int, eta: int, last_epoch: int, phase_epochs: Sequence[int] = (), in_first_epoch: bool = False
) -> list[int]:
    """The rung epochs (1-based, ascending, each below ``last_epoch``): ``min_epochs * eta**i``; with
    phases (``phase_epochs``: each phase's epochs), a rung on a phase's first epoch moves one epoch later
    unless ``in_first_epoch`` (the first epoch after a phase change measures the change, not the run)."""
    firsts: set[int] = set()
    total = 0
    for n in list(phase_epochs)[:-1]:
        total += n
        firsts.add(total + 1)
    out: list[int] = []
    r = min_epochs
    while r < last_epoch:
        e = r
        while not in_first_epoch and e in firsts:
            e += 1
        if e < last_epoch and (not out or e > out[-1]):
            out.append(e)
        r *= eta
    return out


def rungs_of(preset: Preset) -> list[int]:
    """The rung epochs of one run (its preset keeps the sweep's ``[sweep.budget]``); none without a budget."""
    budget = preset.sweep_space.budget
    if budget is None:
        return []
    phases = [p.train.epochs for p in preset.phase_presets()]
    return rungs(budget.min_epochs, budget.eta, preset.total_epochs, phases, budget.rung_in_first_epoch)


def sweep_dir(workspace_root: Path, key: str) -> Path:
    """A budgeted sweep's folder (``WORKSPACE/sweeps/KEY``: ``decisions.jsonl``); ``key``: the registry's
    sweep id of its runs (a single run's own id)."""
    return workspace_root / "sweeps" / key


def pause_epoch(rung_epochs: Sequence[int], passed: int, initial_epoch: int) -> tuple[int, int] | None:
    """``(rung index, epoch)`` a run starting after ``initial_epoch`` pauses at, having been promoted past
    ``passed`` rungs; ``None``: it trains to its end."""
    for i, e in enumerate(rung_epochs):
        if i >= passed and e > initial_epoch:
            return i, e
    return None


def read_passed(run_dir: Path) -> int:
    """How many rungs the run was promoted past (0: none yet, or no file)."""
    try:
        doc = json.loads((run_dir / RUNGS_FILE).read_text(encoding="utf-8"))
        return max(0, int(doc["passed"]))
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def write_passed(run_dir: Path, passed: int) -> None:
    """Atomically record that the run may train past ``passed`` rungs."""
    tmp = run_dir / f".{RUNGS_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"passed": passed}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, run_dir / RUNGS_FILE)


# ---------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class RunView:
    """What the rule knows of one run of the sweep.

    ``values``: the metric at each rung the run reached (rung index -> value, ``None`` when the epoch
    had no such metric); ``paused_at``: the rung it waits at (``None``: it is not paused); ``active``:
    queued or running; ``past``: it trained to its end past every rung (a run its own early stopping
    ended sooner does not count)."""

    id: str
    values: dict[int, float | None] = field(default_factory=dict)
    paused_at: int | None = None
    active: bool = False
    past: bool = False


@dataclass(frozen=True)
class Decision:
    """One decision with the numbers it used: ``action`` is ``promote`` or ``stop``; ``rank`` (1 = best)
    of ``reached`` runs at ``rung`` (0-based), of which the top ``top`` go on; ``cutoff``: the value of
    the last run that goes on (``None`` when none does); ``why``: ``top`` (ASHA's rule), ``last``
    (the sweep's only way on) or ``not top``. A ``stop`` also says how many of the ``reached`` runs
    ``went`` on from the rung (promoted by the rule or as the sweep's last way on, or resumed by hand: not
    waiting there), and its ``cutoff`` is the value of the lowest ranked of those."""

    action: str
    run: str
    rung: int
    value: float | None
    rank: int
    reached: int
    top: int
    cutoff: float | None
    why: str
    went: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def ranking(runs: Iterable[RunView], rung: int, maximize: bool) -> list[RunView]:
    """The runs that reached ``rung``, best first (a missing value last; ties by run id)."""
    reached = [r for r in runs if rung in r.values]

    def key(r: RunView) -> tuple[int, float, str]:
        v = r.values[rung]
        if v is None or v != v:  # missing or NaN
            return (1, 0.0, r.id)
        return (0, -v if maximize else v, r.id)

    return sorted(reached, key=key)


def decide(runs: Sequence[RunView], n_rungs: int, eta: int, maximize: bool) -> list[Decision]:
    """Who goes on now, highest rung first (ASHA promotes the furthest runs first); when nothing of the
    sweep is active and nobody can be promoted: the last-resort promotion, or the paused runs stop."""
    out: list[Decision] = []
    for k in reversed(range(n_rungs)):
        ranked = ranking(runs, k, maximize)
        top = len(ranked) // eta
        cutoff = ranked[top - 1].values[k] if top else None
        for i, r in enumerate(ranked[:top]):
            if r.paused_at == k:
                out.append(Decision("promote", r.id, k, r.values[k], i + 1, len(ranked), top, cutoff, "top"))
    if out or any(r.active for r in runs):
        return out
    paused = [r for r in runs if r.paused_at is not None]
    if not paused:
        return out
    k = max(r.paused_at for r in paused if r.paused_at is not None)
    beyond = any(r.past for r in runs)  # a run trained to its end: the sweep has its result
    ranked = ranking(runs, k, maximize)
    top = len(ranked) // eta
    if not beyond:
        best = next(r for r in ranked if r.paused_at == k)
        rank = ranked.index(best) + 1
        return [Decision("promote", best.id, k, best.values[k], rank, len(ranked), max(top, 1), best.values[k], "last")]
    for r in paused:
        at = r.paused_at if r.paused_at is not None else 0
        ranked = ranking(runs, at, maximize)
        went = [x for x in ranked if x.paused_at != at]  # waits at a later rung, or went on (not paused)
        cutoff = went[-1].values[at] if went else None
        out.append(
            Decision(
                "stop",
                r.id,
                at,
                r.values.get(at),
                ranked.index(r) + 1,
                len(ranked),
                len(ranked) // eta,
                cutoff,
                "not top",
                went=len(went),
            )
        )
    return out
