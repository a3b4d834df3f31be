"""The run screen's charts for a run with few classes: its top-5 panel says n/a instead of waiting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui import fake_ws
from tests.tui.screen_host import asynctest, screen_text, until
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


def test_the_log_tab_leaves_out_tensorflows_start_up_noise_and_says_so() -> None:
    from tltui.tui.screens.run import quiet_log

    lines = [
        "E0000 00:00:1765093523.123 1234 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        "I0000 00:00:1765093523.456 1234 cpu_feature_guard.cc:210] This TensorFlow binary is optimized to use",
        "phase data: loading folder:photos",
        "/venv/keras/src/trainers/data_adapters/py_dataset_adapter.py:121: UserWarning: `shuffle=True` was "
        "passed, but will be ignored since the data `x` was provided as a tf.data.Dataset.",
        "  warnings.warn(",
        "epoch 1: loss 1.02 acc 0.41",
        "Traceback (most recent call last):",
    ]
    kept, hidden = quiet_log(lines)
    assert kept == [
        "phase data: loading folder:photos",
        "epoch 1: loss 1.02 acc 0.41",
        "Traceback (most recent call last):",
    ]
    assert hidden == 4


def resumed_run(ws: Workspace) -> str:
    """Finding 13: ran 66 s, cancelled, resumed 834 s later for 59 s more. The registry's ``started``
    is the resumed worker's (its "starting" state needs it); the events hold both segments."""
    (rec,) = ws.create_runs([("resumed", 'name = "resumed"\n', {})], preset_name="resumed")
    t0 = fake_ws.NOW - 2000
    events = [
        Started(t=t0, epochs=2, steps_per_epoch=1),
        EpochEnd(t=t0 + 50, epoch=1, metrics=fake_ws.metrics(1, 0.5), epoch_seconds=50.0),
        Finished(t=t0 + 66, status="cancelled", epochs_done=1),
        Started(t=t0 + 900, epochs=2, steps_per_epoch=1, initial_epoch=1),
        EpochEnd(t=t0 + 950, epoch=2, metrics=fake_ws.metrics(2, 0.6), epoch_seconds=50.0),
        Finished(t=t0 + 959, status="completed", epochs_done=2),
    ]
    ws.run_paths(rec.id).events.write_text("".join(protocol.encode(ev) for ev in events))
    ws.update(rec.id, status="completed", started=t0 + 900, finished=t0 + 959, epoch=2, queue_pos=None, resume=True)
    return rec.id


@asynctest
async def test_a_resumed_runs_elapsed_counts_every_worker_segment_in_the_table_and_header(app_on) -> None:
    from tltui.tui.widgets.run_table import RunTable

    ws, make = app_on
    run_id = resumed_run(ws)
    app = make()
    assert app.store.refresh() is not None and app.store.row(run_id).elapsed is None  # never "59s" unread
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.screen.query_one(RunTable)
        # the summaries load in the background after the first frame
        await until(pilot, lambda: app.store.row(run_id).loaded, "the resumed run's summary")
        app.redraw_now()
        await pilot.pause()
        assert app.store.row(run_id).elapsed == 66 + 59
        assert "2m05s" in screen_text(table) and "59s" not in screen_text(table)
        app.open_run(run_id)
        await pilot.pause()
        app.redraw_now()
        await pilot.pause()
        assert "elapsed 2m05s" in screen_text(app.screen)
