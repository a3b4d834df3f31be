"""A budgeted sweep through the real queue runner and the scripted fake worker: runs pause at their rungs,
the runner promotes the top 1/eta by exact resume and stops the rest, writes every decision down, and
``tltui sweep show`` tells it; a stopped run resumed by hand trains to its end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import write_preset
from tltui.client import queue_ops, sweeps
from tltui.core import asha, protocol
from tltui.core.status import RunStatus, shown
from tltui.core.workspace import Workspace
from tltui.runner import supervisor

BUDGET = '[sweep]\n"train.seed" = [1, 2, 3, 4]\n[sweep.budget]\nmin_epochs = 1\neta = 2\n'
SCORES = [0.01, 0.04, 0.02, 0.03]  # the second run is the best at every epoch, the first the worst


@pytest.fixture
def qws(ws: Workspace, fake_worker_env: list[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.02")
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "20")
    monkeypatch.setenv("TLTUI_RUNNER_CPU_SLOTS", "2")
    yield ws
    helpers.stop_runner_and_workers(ws)


def test_a_budgeted_sweep_promotes_the_best_by_resume_and_stops_the_rest(
    qws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = qws
    queue_ops.pause(ws)
    recs = queue_ops.add(ws, write_preset(tmp_path, epochs=4, extra=BUDGET), {}, start_runner=False)
    ids = [r.id for r in recs]
    for rid, score in zip(ids, SCORES, strict=True):
        helpers.script(ws, rid, score=score)
    queue_ops.unpause(ws)
    helpers.wait_for(lambda: helpers.sweep_settled(ws, ids), "the sweep to settle", timeout=60)

    # rungs at epochs 1 and 2 (eta 2, 4 epochs): 2 of 4 go past rung 1, 1 of 2 past rung 2
    recs = {r: ws.get(r) for r in ids}
    best = ids[1]
    assert recs[best].status == RunStatus.COMPLETED and recs[best].epoch == 4
    assert [r for r in ids if recs[r].status == RunStatus.COMPLETED] == [best]
    stopped = [r for r in ids if recs[r].status == RunStatus.PAUSED]
    assert ids[0] in stopped and recs[ids[0]].epoch == 1  # the worst never got past rung 1
    assert shown(recs[ids[0]]) == "stopped early at rung 1"  # as `runs ls` and the app's runs table say it
    assert all((ws.run_paths(r).dir / "backup" / "epoch.json").is_file() for r in stopped)  # resumable
    for rid in ids:  # one worker segment per stretch between rungs, each resuming where the last paused
        starts = [e.initial_epoch for e in protocol.read_events(ws.run_paths(rid).events) if e.type == "started"]
        assert starts == [0, 1, 2][: len(starts)]
        epochs = [e.epoch for e in protocol.read_events(ws.run_paths(rid).events) if e.type == "epoch_end"]
        assert epochs == list(range(1, recs[rid].epoch + 1))  # no epoch trained twice

    lines = [
        json.loads(x) for x in (asha.sweep_dir(ws.root, recs[best].sweep) / "decisions.jsonl").read_text().splitlines()
    ]
    promoted = [(d["run"], d["rung"]) for d in lines if d["action"] == "promote"]
    assert (best, 1) in promoted and (best, 2) in promoted and len([p for p in promoted if p[1] == 1]) == 2
    for d in lines:  # the numbers each decision used
        assert {"value", "rank", "reached", "top", "cutoff", "epoch", "metric", "eta"} <= set(d)
    assert {d["run"] for d in lines if d["action"] == "stop"} == set(stopped)

    view = sweeps.show(ws, ids[2]).as_dict()
    assert view["leader"] == best and view["rungs"] == [1, 2]
    assert view["full_epochs"] == 16 and view["epochs"] == sum(recs[r].epoch for r in ids) < 16
    row = {r["id"]: r for r in view["runs"]}
    assert [c["mark"] for c in row[best]["rungs"]] == ["+", "+"] and row[ids[0]]["rungs"][0]["mark"] == "x"

    from tltui.commands.main import main

    assert main(["--workspace", str(ws.root), "sweep", "show", "q"]) == 0  # by its preset's name
    out = capsys.readouterr().out
    assert "rungs at epochs 1, 2" in out and f"{best}*" in out and f"epochs {view['epochs']} of 16" in out

    # a stopped run resumed by hand trains to its end, pausing at no rung
    queue_ops.resume(ws, ids[0])
    helpers.wait_for(lambda: ws.get(ids[0]).status == RunStatus.COMPLETED, "the resumed run to complete")
    assert ws.get(ids[0]).epoch == 4


def test_a_promoted_run_cancelled_before_its_worker_wrote_anything_is_cancelled_not_paused_again(
    qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's events still end in the last worker's ``finished: paused``; the new worker (a slow import, a
    pending cluster job) is cancelled before it wrote a line: the run is ``cancelled``, and nothing promotes it
    again (the user's cancel stands)."""
    ws = qws
    monkeypatch.setenv("TLTUI_RUNNER_CPU_SLOTS", "1")
    queue_ops.pause(ws)
    two = '[sweep]\n"train.seed" = [1, 2]\n[sweep.budget]\nmin_epochs = 1\neta = 2\n'
    best, other = (r.id for r in queue_ops.add(ws, write_preset(tmp_path, epochs=2, extra=two), {}, start_runner=False))
    helpers.script(ws, best, score=0.05, hold_on_resume=True)
    queue_ops.unpause(ws)

    def resumed_worker() -> bool:
        rec = ws.get(best)
        return rec.status == RunStatus.RUNNING and rec.resume and supervisor.is_alive(rec.pid, rec.pid_start)

    helpers.wait_for(resumed_worker, "the promoted run's new worker")
    decisions = asha.sweep_dir(ws.root, ws.get(best).sweep or "") / "decisions.jsonl"

    def promotions() -> list[str]:
        return [d["run"] for d in map(json.loads, decisions.read_text().splitlines()) if d["action"] == "promote"]

    queue_ops.cancel(ws, best)
    # the stopper decides again once the cancel is recorded: with nothing of the sweep active, its last resort
    # promotes the best run still waiting at the rung, the other one (the cancelled run, were it `paused`)
    helpers.wait_for(lambda: len(promotions()) > 1, "the stopper's next promotion")
    assert promotions() == [best, other]
    helpers.wait_for(lambda: helpers.finished(ws, best, other), "the sweep's end")
    rec = ws.get(best)
    assert (rec.status, rec.reason) == (RunStatus.CANCELLED, "cancelled after epoch 1")
    assert ws.get(other).status == RunStatus.COMPLETED
