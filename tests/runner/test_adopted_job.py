"""An adopted worker is read from its run's summary on, not by replaying every event (issue 31)."""

from __future__ import annotations

import os

from tltui.core import protocol, run_summary, runstate
from tltui.core.protocol import Batch, EpochBegin, EpochEnd, Started
from tltui.core.workspace import Workspace
from tltui.runner import supervisor
from tltui.runner.executor import AdoptedJob


def _epoch(e: int, acc: float) -> list[protocol.Event]:
    batches: list[protocol.Event] = [
        Batch(t=100.0 + e + s / 10, epoch=e, step=s, steps=5, metrics={"loss": 1.0 / e}) for s in range(1, 6)
    ]
    end = EpochEnd(t=101.0 + e, epoch=e, metrics={"loss": 1.0 / e, "val_acc": acc, "val_top5_acc": acc + 0.1})
    return [EpochBegin(t=100.0 + e, epoch=e), *batches, end]


def _append(path: os.PathLike[str], events: list[protocol.Event]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(protocol.encode(ev) + "\n" for ev in events))


def test_adopted_job_starts_from_the_summary_and_reads_only_what_follows(tmp_path):
    ws = Workspace(tmp_path / "ws")
    rid = ws.create_runs([("r", 'name = "r"\n', {})], preset_name="r", epochs=[5])[0].id
    path = ws.run_paths(rid).events
    _append(path, [Started(t=100.0, pid=os.getpid(), host="box", devices=["CPU:0"], epochs=5), *_epoch(1, 0.4)])
    st = runstate.fold(path)
    assert run_summary.write(path, st, path.stat().st_size, 0)
    _append(path, _epoch(2, 0.6))  # after the summary: folded at adoption

    job = AdoptedJob(rid, os.getpid(), None, path)
    assert job.state.epochs_done == 2 and job.state.history == runstate.fold(path).history
    assert job.events() == []  # nothing new: no replay of the log
    _append(path, _epoch(3, 0.5))
    assert [type(ev).__name__ for ev in job.events()] == ["EpochBegin"] + ["Batch"] * 5 + ["EpochEnd"]

    supervisor.record_state(ws, rid, job.state)  # the registry, as a replay would have left it
    rec = ws.get(rid)
    assert rec is not None and (rec.epoch, rec.epochs, rec.best_epoch, rec.best_val_acc) == (2, 5, 2, 0.6)
    ws.close()
