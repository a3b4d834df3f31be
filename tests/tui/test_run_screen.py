"""The run screen's charts for a run with few classes: its top-5 panel says n/a instead of waiting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui import fake_ws
from tests.tui.screen_host import asynctest, screen_text
from tltui.core import protocol
from tltui.core.protocol import EpochBegin, EpochEnd, Finished, ModelInfo, Started
from tltui.core.workspace import Workspace
from tltui.tui.widgets.metric_chart import MetricChart

TOP5_NA = "top-5 n/a with 3 classes"


def three_class_run(ws: Workspace, epochs: int = 3) -> str:
    """A completed 3-class run: the worker recorded loss and accuracy, no top-5 (100% by construction)."""
    preset = fake_ws.PRESET.format(name="shapes3", depth=0, epochs=epochs)
    rec = ws.create_runs([("shapes3", preset, {})], preset_name="shapes3", epochs=[epochs])[0]
    t0 = fake_ws.NOW - 600
    events: list[protocol.Event] = [
        Started(t=t0, pid=1, host="box", devices=["CPU:0"], epochs=epochs, steps_per_epoch=4),
        ModelInfo(t=t0 + 1, total_params=1000, trainable_params=1000, non_trainable_params=0, num_classes=3),
    ]
    for e in range(1, epochs + 1):
        m = {k: v for k, v in fake_ws.metrics(e, 0.9).items() if "top5" not in k}
        events += [
            EpochBegin(t=t0 + 10 * e, epoch=e),
            EpochEnd(t=t0 + 10 * e + 9, epoch=e, metrics=m, lr=0.01, epoch_seconds=9.0),
        ]
    events.append(Finished(t=t0 + 10 * epochs + 10, status="completed", epochs_done=epochs))
    ws.run_paths(rec.id).events.write_text("".join(protocol.encode(ev) for ev in events))
    ws.update(rec.id, status="completed", started=t0, finished=t0 + 10 * epochs + 10, epoch=epochs, queue_pos=None)
    return rec.id


@pytest.fixture
def app_on(tmp_path: Path):
    from tltui.tui.app import TltuiApp

    ws = Workspace(tmp_path / "ws")
    yield ws, lambda: TltuiApp(ws, clock=lambda: fake_ws.NOW)
    ws.close()


@asynctest
async def test_top5_panel_of_a_three_class_run_says_na_instead_of_waiting(app_on) -> None:
    ws, make = app_on
    run_id = three_class_run(ws)
    app = make()
    async with app.run_test(size=(160, 48)) as pilot:
        app.open_run(run_id)
        await pilot.pause()
        app.redraw_now()
        await pilot.pause()
        screen = app.screen
        top5 = screen.query_one("#chart-top5_acc", MetricChart)
        assert top5.series and not any(s.ys for s in top5.series)  # nothing to plot, ever
        text = screen_text(app)
        assert TOP5_NA in text and "Top-5 accuracy" in text
        assert "(no data yet)" not in text  # every panel shows what is true of the run
        assert len(screen.query_one("#chart-acc", MetricChart).series[1].ys) == 3
        await pilot.press("v")  # six panels: the train and val top-5 panels both say it
        await pilot.pause()
        text = screen_text(app)
        assert text.count(TOP5_NA) == 3 and "(no data yet)" not in text  # the two panels and the header


@asynctest
async def test_top5_panel_of_a_hundred_class_run_plots_top5(scripted, make_app) -> None:
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        app.open_run(ids["completed"])
        await pilot.pause()
        text = screen_text(app)
        assert "n/a" not in text
        assert len(app.screen.query_one("#chart-top5_acc", MetricChart).series[1].ys) == 10
