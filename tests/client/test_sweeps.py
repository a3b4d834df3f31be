"""``tltui sweep show`` (tltui/client/sweeps.py) on a budgeted sweep whose runs have different epochs, run through
the real queue runner and the scripted fake worker: every rung of every run is shown, the header says the rung
epochs differ, a stop's reason says how many went on, and a run resumed by hand past its stop loses its ``x``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import write_preset
from tltui.client import queue_ops, sweeps
from tltui.commands import main as cli
from tltui.core.status import RunStatus
from tltui.core.workspace import Workspace

# runs of 3 epochs pause at epochs 1, 2; runs of 12 at 1, 2, 4, 8 (eta 2)
BUDGET = '[sweep]\n"train.epochs" = [3, 12]\n"train.seed" = [1, 2]\n[sweep.budget]\nmin_epochs = 1\neta = 2\n'
SCORES = [0.01, 0.02, 0.03, 0.04]  # the later the run, the better at every epoch


@pytest.fixture
def qws(ws: Workspace, fake_worker_env: list[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.02")
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "20")
    monkeypatch.setenv("TLTUI_RUNNER_CPU_SLOTS", "2")
    yield ws
    helpers.stop_runner_and_workers(ws)


def test_sweep_show_has_a_column_for_every_rung_of_runs_with_different_epochs(
    qws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = qws
    queue_ops.pause(ws)
    ids = [r.id for r in queue_ops.add(ws, write_preset(tmp_path, epochs=3, extra=BUDGET), {}, start_runner=False)]
    for rid, score in zip(ids, SCORES, strict=True):
        helpers.script(ws, rid, score=score)
    queue_ops.unpause(ws)
    helpers.wait_for(lambda: helpers.sweep_settled(ws, ids), "the sweep to settle", timeout=60)

    short, long_ = ids[0], ids[3]  # q[epochs=3,seed=1], q[epochs=12,seed=2]: the worst and the best
    view = sweeps.show(ws, short)
    assert view.rungs == [1, 2, 4, 8] and view.rungs_differ
    rows = {r.id: r for r in view.rows}
    assert rows[short].rung_epochs == [1, 2] and rows[long_].rung_epochs == [1, 2, 4, 8]
    assert rows[long_].status == RunStatus.COMPLETED and [c["rung"] for c in rows[long_].rungs] == [1, 2, 3, 4]
    stopped = [r for r in view.rows if r.status == RunStatus.PAUSED]
    assert stopped and all("went on)" in (r.reason or "") and "the top" not in (r.reason or "") for r in stopped)

    assert cli.main(["--workspace", str(ws.root), "sweep", "show", short]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("rung epochs differ by run: 1, 2 (runs of 3 epochs); 1, 2, 4, 8 (runs of 12 epochs)")
    assert out[1].split()[:10] == ["run", "status", "rung", "1", "rung", "2", "rung", "3", "rung", "4"]
    line = next(x for x in out if x.startswith(f"{long_}*"))
    for cell in rows[long_].rungs:  # every rung it reached, as --json has it
        assert f"{cell['value']:.4f}+" in line

    # the worst run, stopped at rung 1, resumed by hand: it trains past the rung, no longer "stopped there"
    assert rows[short].rungs[0]["mark"] == "x"
    queue_ops.resume(ws, short)
    helpers.wait_for(lambda: ws.get(short).status == RunStatus.COMPLETED, "the resumed run to complete")
    cells = next(r for r in sweeps.show(ws, short).rows if r.id == short).rungs
    assert [(c["rung"], c["mark"]) for c in cells] == [(1, ""), (2, "")]
