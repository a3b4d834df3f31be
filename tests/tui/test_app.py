"""Pilot tests: every key and action of the Runs, Run and Compare screens."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import sys
import types
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Static
from textual.worker import WorkerFailed

import tltui
import tltui.client
import tltui.core.workspace
from tests.tui import fake_ws
from tests.tui.screen_host import run_from_palette, until
from tltui.core import protocol
from tltui.core.protocol import Batch
from tltui.tui import curves
from tltui.tui.keys import palette_keys
from tltui.tui.screens import run as run_mod
from tltui.tui.screens.compare import CompareScreen
from tltui.tui.screens.confirm import ConfirmDialog
from tltui.tui.screens.freeze_map import FreezeMapScreen
from tltui.tui.screens.help import HelpScreen
from tltui.tui.screens.inference import InferenceScreen
from tltui.tui.screens.preset_picker import PresetPicker
from tltui.tui.screens.presets import PresetsScreen
from tltui.tui.screens.run import RunScreen
from tltui.tui.screens.runs import RunsScreen
from tltui.tui.widgets import gpu_pane
from tltui.tui.widgets.metric_chart import MetricChart
from tltui.tui.widgets.run_table import RunTable

SIZE = (100, 30)


def sync(test):
    """Run an async Pilot test in its own event loop (no asyncio pytest plugin needed)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))

    return wrapper


async def settle(pilot) -> None:
    """Let background work finish (its failures are the app's to report) and redraw."""
    with contextlib.suppress(WorkerFailed):
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    pilot.app.redraw_now()
    await pilot.pause()


async def goto(pilot, run_id: str) -> None:
    table = pilot.app.screen.query_one(RunTable)
    table.move_cursor(row=table.get_row_index(run_id), animate=False)
    await pilot.pause()


def plain(static: Static) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(static.content)
    return console.export_text()


def shown_ids(app) -> list[str]:
    return app.screen.query_one(RunTable).run_ids


@pytest.fixture
def fake_ops(monkeypatch):
    """Replace ``tltui.client.queue_ops`` with a recorder (the real one spawns a runner)."""
    calls: list[tuple] = []
    mod = types.ModuleType("tltui.client.queue_ops")

    def add(ws, path, overrides, warn=None):
        calls.append(("add", Path(path), overrides))
        if warn:
            warn("BatchNorm trainable on a small dataset")
        return ws.create_runs([("queued-from-tui", Path(path).read_text(), {})], preset_name="queued-from-tui")

    def cancel(ws, rid):
        calls.append(("cancel", rid))

    def resume(ws, rid):
        calls.append(("resume", rid))

    def boom(ws, rid):
        raise tltui.core.workspace.WorkspaceError(f"{rid}: changed meanwhile; try again")

    mod.add, mod.cancel, mod.resume, mod.ensure_runner = add, cancel, resume, lambda ws: 1
    mod.boom = boom
    monkeypatch.setitem(sys.modules, "tltui.client.queue_ops", mod)
    monkeypatch.setattr(tltui.client, "queue_ops", mod, raising=False)
    return calls, mod


@sync
async def test_home_lists_every_run_with_status_and_progress(make_app, scripted):
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)
        assert shown_ids(app) == [f"r{i:04d}" for i in range(1, 9)]
        table = app.screen.query_one(RunTable)
        row = table.get_row(ids["running"])
        assert "running" in str(row[3]) and "3/10" in str(row[4])
        summary = plain(app.screen.query_one("#runs-summary", Static))
        assert "5 completed" in summary and "1 running" in summary


@sync
async def test_notifications_are_plain_text_whatever_brackets_they_carry(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.notify("queued s[seed=1]")
        app.screen.notify("p.toml: cannot read: bad [/x] tag")  # as markup, the closing tag would raise
        await until(pilot, lambda: len(list(app._notifications)) == 2, "both notifications")
        assert [(n.message, n.markup) for n in app._notifications] == [
            ("queued s[seed=1]", False),
            ("p.toml: cannot read: bad [/x] tag", False),
        ]
        await pilot.pause()  # and their toasts draw


@sync
async def test_filter_and_clear(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"sweep")
        await pilot.pause()
        assert len(shown_ids(app)) == 4
        await pilot.press("enter")  # back to the table, filter kept
        assert len(shown_ids(app)) == 4 and app.focused is app.screen.query_one(RunTable)
        await pilot.press("escape")
        assert len(shown_ids(app)) == 8


@sync
async def test_a_filter_with_brackets_is_plain_text(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"sweep[depth=1]")
        summary = app.screen.query_one("#runs-summary", Static)
        await until(pilot, lambda: "filter 'sweep[depth=1]': 1 shown" in plain(summary), "the filter's summary")
        await pilot.press("escape", "slash", *"[/x")  # as markup, a closing tag that opens nothing raises
        await until(pilot, lambda: "filter '[/x': 0 shown" in plain(summary), "the second filter's summary")
        assert app.is_running


@sync
async def test_sort_by_column_key_and_reverse(make_app, scripted):
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("s")  # id -> name
        assert app.screen.sort_key == "name"
        assert shown_ids(app)[0] == ids["failed"]  # "broken-run"
        await pilot.press("S")
        assert shown_ids(app)[0] == ids["queued"]  # "waiting"
        app.screen.sort_key, app.screen.sort_reverse = "best", True
        app.screen.rebuild()
        assert shown_ids(app)[0] == ids["completed"]  # 75% is the best val_acc


@sync
async def test_select_with_space_then_compare(make_app, scripted):
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, ids["sweep0"])
        await pilot.press("space", "space")  # selects sweep0 and the next run
        assert app.screen.selected == {ids["sweep0"], "r0003"}
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen) and app.screen.run_ids == [ids["sweep0"], "r0003"]
        await pilot.press("escape")
        await pilot.press("escape")  # clears the selection
        assert app.screen.selected == set()


@sync
async def test_enter_opens_the_run_and_escape_returns(make_app, scripted):
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, ids["running"])
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.screen.run_id == ids["running"]
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


@sync
async def test_cancel_only_active_runs(make_app, scripted, fake_ops):
    _ws, ids = scripted
    calls, _mod = fake_ops
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, ids["completed"])
        await pilot.press("x")
        await settle(pilot)
        assert calls == []
        assert any("nothing to cancel" in n.message for n in app._notifications)
        await goto(pilot, ids["running"])
        await pilot.press("x")  # asks first: n (or escape) keeps it running
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog) and "Cancel r" in str(app.screen.question)
        await pilot.press("n")
        await settle(pilot)
        assert calls == [] and isinstance(app.screen, RunsScreen)
        await pilot.press("x", "y")
        await settle(pilot)
        assert calls == [("cancel", ids["running"])]
        assert any(f"cancel requested: {ids['running']}" in n.message for n in app._notifications)


@sync
async def test_resume_failed_run(make_app, scripted, fake_ops):
    _ws, ids = scripted
    calls, _mod = fake_ops
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, ids["failed"])
        await pilot.press("r")
        await settle(pilot)
        assert calls == [("resume", ids["failed"])]


@sync
async def test_a_failing_operation_is_one_notification(make_app, scripted, fake_ops):
    _ws, ids = scripted
    _calls, mod = fake_ops
    mod.resume = mod.boom
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, ids["failed"])
        await pilot.press("r")
        await settle(pilot)
        errors = [n for n in app._notifications if n.severity == "error"]
        assert [n.message for n in errors] == [f"{ids['failed']}: changed meanwhile; try again"]
        assert isinstance(app.screen, RunsScreen)


@sync
async def test_delete_asks_first_and_refuses_running_runs(make_app, scripted):
    ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, ids["running"])
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert any("cancel first" in n.message for n in app._notifications)

        await goto(pilot, ids["completed"])
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert ws.get(ids["completed"]).status == "completed"

        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        assert ids["completed"] not in shown_ids(app)
        assert not ws.run_paths(ids["completed"]).dir.exists()


@sync
async def test_queue_a_preset_from_the_picker(make_app, scripted, fake_ops):
    ws, _ids = scripted
    calls, _mod = fake_ops
    (ws.presets_dir / "mine.toml").write_text(fake_ws.PRESET.format(name="mine", depth=1, epochs=3))
    (ws.presets_dir / "broken.toml").write_text("name = 'x'\n[data]\nsource = 3\n")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, PresetPicker)
        broken = next(c for c in picker.choices if c.path.name == "broken.toml")
        assert broken.error and "broken.toml" in broken.error
        mine = next(i for i, c in enumerate(picker.choices) if c.path.name == "mine.toml")
        picker.query_one("#preset-list").highlighted = mine
        await pilot.press("enter")
        await settle(pilot)
        assert calls == [("add", ws.presets_dir / "mine.toml", {})]
        assert "r0009" in shown_ids(app)
        assert any("queued 1 run: r0009" in n.message and "warning: BatchNorm" in n.message for n in app._notifications)


@sync
async def test_open_preset_starts_on_the_picker_with_it_highlighted(make_app, tmp_path):
    demo = tmp_path / "demo" / "demo.toml"
    demo.parent.mkdir()
    demo.write_text(fake_ws.PRESET.format(name="demo", depth=0, epochs=2))
    app = make_app(open_preset=demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, PresetPicker)
        highlighted = picker.query_one("#preset-list").highlighted
        assert picker.choices[highlighted].path == demo
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


@sync
async def test_help_lists_the_keys_of_this_screen_and_of_the_app(make_app, scripted):
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = plain(app.screen.query_one("#help-text", Static))
        for words in (
            "This screen: Runs",
            "Compare",
            "runs.cancel",
            "Reverse sort",
            "runs.inference",
            "App: every screen",
            "app.quit",
            "Command palette",
        ):
            assert words in text  # hidden from the footer (S, i) is not hidden from the help
        assert "Log-y loss" not in text  # the run screen's keys: on its own help
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        app.open_run(ids["running"])
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        text = plain(app.screen.query_one("#help-text", Static))
        assert "This screen: Run" in text and "Log-y loss" in text and "run.logy" in text
        assert "runs.cancel" not in text and "app.help" in text


@sync
async def test_help_shows_the_keys_the_keymap_sets(make_app, scripted):
    ws, _ids = scripted
    (ws.root / "keymap.toml").write_text('"runs.compare" = "k"\n')
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.action_help()
        await pilot.pause()
        lines = plain(app.screen.query_one("#help-text", Static)).splitlines()
        assert [line.split() for line in lines if "runs.compare" in line] == [["k", "Compare", "runs.compare"]]


@sync
async def test_command_palette_runs_actions(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        titles = {key.description for key in palette_keys(app.screen)}
        assert {
            "Queue",
            "Compare",
            "Cancel",
            "Resume",
            "Delete",
            "Open",
            "Presets",
            "Freeze map",
            "Inference",
            "GPU",
            "Help",
        } <= titles  # the home screen's keys and the app's, from their bindings
        await run_from_palette(pilot, "Compare")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), "the compare screen")


@pytest.mark.parametrize(
    ("key", "cls", "run_id"),
    [("p", PresetsScreen, None), ("f", FreezeMapScreen, "r0001"), ("i", InferenceScreen, "r0001")],
)
@sync
async def test_keys_open_the_presets_freeze_map_and_inference_screens(make_app, key, cls, run_id):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(key)
        await pilot.pause()
        assert isinstance(app.screen, cls)
        assert getattr(app.screen, "run_id", None) == run_id  # the run under the cursor
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


@sync
async def test_runs_queued_on_the_presets_screen_are_read_at_once(make_app, scripted, monkeypatch):
    """The presets screen says it queued runs (a message); the app re-reads the registry then."""
    ws, _ids = scripted

    def queue(qws, path):
        return qws.create_runs([("from-presets", path.read_text(), {})], preset_name="from-presets")

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        refreshes: list[str] = []
        read = app.refresh_now
        monkeypatch.setattr(app, "refresh_now", lambda: (refreshes.append("now"), read()))
        await app.push_screen(PresetsScreen(workspace=ws, queue=queue))
        await pilot.pause()
        await pilot.press("ctrl+r")
        await until(pilot, lambda: refreshes, "the app's registry read")
        new = [r.id for r in ws.list_runs() if r.name == "from-presets"]
        assert len(new) == 1 and new[0] in app.store.ids


@sync
async def test_inference_opens_on_a_completed_run_only(make_app, scripted):
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, ids["running"])
        await pilot.press("i")
        await pilot.pause()
        assert isinstance(app.screen, InferenceScreen) and app.screen.run_id is None


@sync
async def test_g_toggles_the_gpu_pane(make_app, monkeypatch):
    monkeypatch.setattr(gpu_pane, "system_sampler", lambda *a, **k: gpu_pane.PaneSample)  # no NVML
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await pilot.pause()
        assert len(app.screen.query(gpu_pane.GpuPane)) == 1
        await pilot.press("g")
        await pilot.pause()
        assert len(app.screen.query(gpu_pane.GpuPane)) == 0


@sync
async def test_keymap_file_remaps_bindings_by_id(make_app, scripted):
    ws, _ids = scripted
    (ws.root / "keymap.toml").write_text('"runs.compare" = "k"\n')
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("k")
        await pilot.pause()
        assert isinstance(app.screen, CompareScreen)


@sync
async def test_run_screen_toggles(make_app, scripted):
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(ids["running"])
        await pilot.pause()
        screen = app.screen
        loss = screen.query_one("#chart-loss", MetricChart)
        assert [s.label for s in loss.series] == ["train", "val"]
        assert not screen.query_one("#chart-val_loss", MetricChart).display

        await pilot.press("v")
        assert screen.six and screen.query_one("#chart-val_loss", MetricChart).display
        assert [s.label for s in loss.series] == ["train"]

        raw = loss.series[0].ys
        await pilot.press("s")
        assert screen.smooth and loss.series[0].ys != raw and len(loss.series[0].ys) == len(raw)

        await pilot.press("t")
        assert screen.xmode == "step" and loss.series[0].xs[0] == 50.0
        await pilot.press("t", "t")
        assert screen.xmode == "epoch"

        await pilot.press("l")
        assert screen.logy and loss._logy and not screen.query_one("#chart-acc", MetricChart)._logy


@sync
async def test_run_screen_tabs_show_preset_and_log(make_app, scripted):
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(ids["failed"])
        await pilot.pause()
        screen = app.screen
        failure = plain(screen.query_one("#run-failure", Static))
        assert "failed: ResourceExhaustedError: OOM" in failure and "shape [32,2048,7,7]" in failure
        tabs = screen.query_one("#run-tabs")
        assert [str(tab.label) for tab in tabs.query("Tab")] == ["1 Charts", "2 Freeze map", "3 Preset", "4 Log"]
        await pilot.press("4")  # the tabs' titles say their keys
        await pilot.pause()
        assert tabs.active == "tab-log"
        log = screen.query_one("#log-view")
        assert any("Traceback" in line.text for line in log.lines)
        screen.query_one("#run-tabs").active = "tab-preset"
        await pilot.pause()
        assert screen.query_one("#preset-view", Static).display


@sync
async def test_live_events_reach_the_charts_at_a_bounded_rate(make_app, scripted):
    ws, ids = scripted
    rid = ids["running"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(rid)
        await pilot.pause()
        screen = app.screen
        chart = screen.query_one("#chart-loss", MetricChart)
        xs_before = chart.series[0].xs
        shows_before, builds_before = chart.shows, chart.builds

        def batches(n: int, loss: float) -> None:
            with open(ws.run_paths(rid).events, "a") as f:
                for i in range(n):
                    f.write(
                        protocol.encode(
                            Batch(t=fake_ws.NOW, epoch=3, step=26 + i % 24, steps=50, metrics={"loss": loss})
                        )
                    )
            app.ticker.poll()
            app.redraw_now()

        # batches only, right after the charts were drawn: they wait (at most LIVE_CHART_SECONDS)
        screen._chart_at = run_mod.time.monotonic() + 3600  # "just drawn", however slow this machine
        batches(10, 1.25)
        await pilot.pause()
        assert chart.shows == shows_before
        # once that interval is over, the next redraw hands everything over, thinned
        screen._chart_at = float("-inf")
        batches(1000, 1.5)
        await pilot.pause()
        xs = chart.series[0].xs
        assert len(xs_before) < len(xs) <= len(xs_before) + curves.MAX_LIVE_POINTS
        assert chart.series[0].ys[-1] == 1.5  # the latest batch is always among them
        # redraw ticks hand the data over (timers may add a tick on a slow machine) and the
        # plot is rebuilt once per handover at most: never once per event
        assert 1 <= chart.shows - shows_before <= 3
        assert chart.builds - builds_before <= chart.shows - shows_before
        # an epoch's end is drawn at once, whatever the interval
        shows = chart.shows
        screen._chart_at = run_mod.time.monotonic() + 3600
        with open(ws.run_paths(rid).events, "a") as f:
            f.write(
                protocol.encode(
                    protocol.EpochEnd(t=fake_ws.NOW, epoch=3, metrics=fake_ws.metrics(3, 0.7), epoch_seconds=60.0)
                )
            )
        app.ticker.poll()
        app.redraw_now()
        await pilot.pause()
        assert chart.shows == shows + 1


@sync
async def test_new_and_removed_runs_appear_after_a_registry_tick(make_app, scripted):
    ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        ws.create_runs([("late", fake_ws.PRESET.format(name="late", depth=0, epochs=1), {})], preset_name="late")
        ws.delete(ids["queued"])
        app.refresh_now()
        await pilot.pause()
        assert "r0009" in shown_ids(app) and ids["queued"] not in shown_ids(app)


@sync
async def test_compare_shows_curves_bars_table_and_exports(make_app, scripted):
    ws, ids = scripted
    sweep = [f"r{i:04d}" for i in range(2, 6)]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(CompareScreen(sweep))
        await pilot.pause()
        screen = app.screen
        curves_chart = screen.query_one("#compare-curves", MetricChart)
        assert [s.label.split()[0] for s in curves_chart.series] == sweep
        assert len({s.color for s in curves_chart.series}) >= 2
        assert screen.query_one("#compare-bars", MetricChart).display
        assert screen.query_one("#results").row_count == 4
        await pilot.press("m")
        assert curves_chart.chart_title == "Validation top-5 accuracy"
        await pilot.press("e")
        await pilot.pause()
        exports = list((ws.root / "exports").glob("compare-*.csv"))
        assert len(exports) == 1 and exports[0].read_text().count("\n") == 5
        assert any(str(exports[0]) in n.message for n in app._notifications)


@sync
async def test_compare_hides_a_run_from_the_charts_and_widens_names_with_the_terminal(make_app, scripted):
    sweep = [f"r{i:04d}" for i in range(2, 6)]
    app = make_app()
    async with app.run_test(size=(200, 40)) as pilot:
        app.push_screen(CompareScreen(sweep))
        await pilot.pause()
        screen = app.screen
        curves_chart = screen.query_one("#compare-curves", MetricChart)
        bars = screen.query_one("#compare-bars", MetricChart)
        await pilot.press("down", "h")  # the second run of the results table
        await pilot.pause()
        assert [s.label.split()[0] for s in curves_chart.series] == [sweep[0], *sweep[2:]]
        assert len(bars._bars.labels) == 3
        assert "(1 hidden)" in str(screen.query_one("#compare-title", Static).content)
        assert screen.query_one("#results").row_count == 4  # still listed, dimmed
        await pilot.press("h")
        await pilot.pause()
        assert [s.label.split()[0] for s in curves_chart.series] == sweep
        table = screen.query_one("#results")
        assert any("freeze-sweep[depth=1]" in str(cell) for cell in table.get_row(sweep[1]))  # not cut at 200


@sync
async def test_a_run_deleted_elsewhere_closes_its_screen_and_what_is_over_it(make_app, scripted):
    ws, ids = scripted
    rid = ids["completed"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(rid)
        await pilot.pause()
        app.action_help()
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        ws.delete(rid)  # e.g. `tltui runs rm` in another terminal
        app.refresh_now()
        for _ in range(20):
            await pilot.pause()
            if isinstance(app.screen, RunsScreen):
                break
        assert isinstance(app.screen, RunsScreen) and len(app.screen_stack) == 1
        assert any("was deleted" in n.message for n in app._notifications)


@sync
async def test_compare_redraws_for_epochs_not_for_batches(make_app, scripted):
    ws, ids = scripted
    rid = ids["running"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(CompareScreen([ids["completed"], rid]))
        await pilot.pause()
        chart = app.screen.query_one("#compare-curves", MetricChart)
        shows = chart.shows

        def append(event) -> None:
            with open(ws.run_paths(rid).events, "a") as f:
                f.write(protocol.encode(event))
            app.ticker.poll()
            app.redraw_now()

        append(Batch(t=fake_ws.NOW, epoch=3, step=40, steps=50, metrics={"loss": 1.0}))
        await pilot.pause()
        assert chart.shows == shows  # the compare curves are per epoch: a batch changes nothing here
        append(protocol.EpochEnd(t=fake_ws.NOW, epoch=3, metrics=fake_ws.metrics(3, 0.7), epoch_seconds=60.0))
        await pilot.pause()
        assert chart.shows == shows + 1
        assert len(next(s for s in chart.series if s.label.startswith(rid)).xs) == 3


@sync
async def test_compare_of_unrelated_runs_has_no_bars(make_app, scripted):
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(CompareScreen([ids["completed"], ids["failed"]]))
        await pilot.pause()
        assert not app.screen.query_one("#compare-bars", MetricChart).display


@sync
async def test_first_frame_loads_no_finished_events(make_app, scripted):
    """Lazy: the table needs registry rows only; finished runs load in the background."""
    app = make_app(background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert len(shown_ids(app)) == 8
        loaded = {rid for rid in app.store.ids if app.store.row(rid).loaded}
        assert loaded <= {scripted[1]["running"]}


@sync
async def test_closing_the_app_never_touches_runs(make_app, scripted):
    ws, _ids = scripted
    before = [(r.id, r.status, r.pid) for r in ws.list_runs()]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
    assert [(r.id, r.status, r.pid) for r in ws.list_runs()] == before


FREEZE_MAP = {
    "backbone": "resnet50",
    "depth": 1,
    "batchnorm": "frozen",
    "stages": [
        {"name": "conv2", "layers": 2, "frozen": 2, "trainable": 0},
        {"name": "head", "layers": 1, "frozen": 0, "trainable": 1},
    ],
    "layers": [
        {
            "name": "conv2_block1_1_conv",
            "type": "Conv2D",
            "stage": "conv2",
            "trainable": False,
            "params": 4160,
            "output_shape": [None, 56, 56, 64],
        },
        {
            "name": "conv2_block1_1_bn",
            "type": "BatchNormalization",
            "stage": "conv2",
            "trainable": False,
            "params": 256,
            "output_shape": [None, 56, 56, 64],
        },
        {
            "name": "predictions",
            "type": "Dense",
            "stage": "head",
            "trainable": True,
            "params": 204900,
            "output_shape": [None, 100],
        },
    ],
    "totals": {"layers": 3, "trainable_params": 204900},
}


@pytest.mark.parametrize("readable", [True, False])
@sync
async def test_freeze_map_tab_shows_the_recorded_map(make_app, scripted, readable):
    """The layer map; a map it cannot read (an older or damaged one) falls back to the stage table."""
    import json

    ws, ids = scripted
    damaged = {**FREEZE_MAP, "layers": [{"name": "conv2_block1_1_conv", "params": "n/a"}]}
    ws.run_paths(ids["completed"]).freeze_map.write_text(json.dumps(FREEZE_MAP if readable else damaged))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(ids["completed"])
        await pilot.pause()
        screen = app.screen
        screen.query_one("#run-tabs").active = "tab-freeze"
        await pilot.pause()
        if readable:
            assert len(screen.query("#layer-map")) == 1 and not screen.query_one("#freeze-fallback").display
        else:
            assert len(screen.query("#layer-map")) == 0 and screen.query_one("#freeze-fallback").display
            text = plain(screen.query_one("#freeze-view", Static))
            assert "resnet50" in text and "conv2" in text and "trainable_params 204900" in text


@sync
async def test_freeze_map_tab_shows_the_map_a_starting_run_writes_after_the_tab_opened(make_app, scripted):
    import json

    ws, ids = scripted
    rid = ids["running"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.open_run(rid)
        await pilot.pause()
        screen = app.screen
        screen.query_one("#run-tabs").active = "tab-freeze"
        await until(pilot, lambda: "No freeze map" in plain(screen.query_one("#freeze-view", Static)), "no map yet")
        ws.run_paths(rid).freeze_map.write_text(json.dumps(FREEZE_MAP))  # the worker built its model
        with open(ws.run_paths(rid).events, "a") as f:  # and goes on (a batch: no epoch needs to end)
            f.write(protocol.encode(Batch(t=fake_ws.NOW, epoch=3, step=30, steps=50, metrics={"loss": 1.0})))
        await until(pilot, lambda: len(screen.query("#layer-map")) == 1, "the layer map")
        assert not screen.query_one("#freeze-fallback").display


@sync
async def test_clicking_a_header_sorts_by_that_column(make_app, scripted):
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(RunTable)
        name_x = sum(col.get_render_width(table) for col in table.ordered_columns[:2]) + 2
        await pilot.click(RunTable, offset=(name_x, 0))
        await pilot.pause()
        assert app.screen.sort_key == "name" and shown_ids(app)[0] == ids["failed"]
        await pilot.click(RunTable, offset=(name_x, 0))
        await pilot.pause()
        assert app.screen.sort_reverse and shown_ids(app)[0] == ids["queued"]


@sync
async def test_run_header_shows_the_test_split_next_to_the_kept_validation_epoch(make_app, scripted):
    """The epoch model.keras holds ("kept" once saved; the best so far while running), then the test split
    evaluated on those weights."""
    ws, ids = scripted
    app = make_app()
    async with app.run_test(size=(200, 40)) as pilot:
        app.open_run(ids["completed"])
        await pilot.pause()
        text = plain(app.screen.query_one("#run-header", Static))
        m = fake_ws.metrics(10, 0.78)
        assert f"kept {100 * m['val_acc']:.1f}%  top-5 {100 * m['val_top5_acc']:.1f}% @ 10" in text
        assert f"test {100 * (m['val_acc'] - 0.012):.1f}%  top-5 {100 * (m['val_top5_acc'] - 0.01):.1f}%" in text
        app.open_run(ids["running"])  # no test evaluation until training ended
        await pilot.pause()
        text = plain(app.screen.query_one("#run-header", Static))
        assert "test " not in text and " best " in text and "kept" not in text


@sync
async def test_the_app_queues_to_the_workspace_default_executor(make_app, scripted, monkeypatch):
    """The app and `queue add` resolve `[executor] default` through the same function (queue_ops.add)."""
    from tltui.client import queue_ops

    ws, _ids = scripted
    monkeypatch.delenv("TLTUI_EXECUTOR", raising=False)
    monkeypatch.setattr(queue_ops, "ensure_runner", lambda ws: 1)  # no runner process in a unit test
    (ws.root / "settings.toml").write_text('[executor]\ndefault = "ray"\n')
    preset = ws.presets_dir / "mine.toml"
    preset.write_text(fake_ws.PRESET.format(name="mine", depth=1, epochs=3))
    before = {r.id for r in ws.list_runs()}
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.queue(preset)
        await settle(pilot)
    new = [r for r in ws.list_runs() if r.id not in before]
    assert [r.executor for r in new] == ["ray"]


@sync
async def test_run_header_and_table_show_a_download_in_progress(make_app, scripted):
    ws, ids = scripted
    rid = ids["running"]
    with open(ws.run_paths(rid).events, "a") as f:
        f.write(
            protocol.encode(
                protocol.Progress(
                    t=fake_ws.NOW,
                    phase="download",
                    done=70.1e6,
                    total=162.2e6,
                    unit="bytes",
                    eta=12.4,
                    message="downloading tfds:cifar100",
                )
            )
        )
    app = make_app()
    async with app.run_test(size=(200, 40)) as pilot:
        await settle(pilot)
        assert "download 43%" in "".join(str(c) for c in app.screen.query_one(RunTable).get_row(rid))
        app.open_run(rid)
        await pilot.pause()
        assert "downloading tfds:cifar100: 43% (70.1 / 162.2 MB, 0:12 left)" in plain(
            app.screen.query_one("#run-header", Static)
        )


@sync
async def test_freeze_tab_shows_how_far_each_layer_moved_and_flags_a_frozen_one_that_did(make_app, scripted):
    import json

    ws, ids = scripted
    run_dir = ws.run_paths(ids["completed"]).dir
    ws.run_paths(ids["completed"]).freeze_map.write_text(json.dumps(FREEZE_MAP))
    (run_dir / "moved.json").write_text(
        json.dumps(
            {
                "version": 1,
                "epoch": 10,
                "since": "run start",
                "errors": ["conv2_block1_1_bn"],
                "layers": [
                    {"name": "conv2_block1_1_conv", "trainable": False, "moved": 0.0, "bn_drift": None},
                    {"name": "conv2_block1_1_bn", "trainable": False, "moved": 0.0, "bn_drift": 0.0123},
                    {"name": "predictions", "trainable": True, "moved": 0.42, "bn_drift": None},
                ],
            }
        )
    )
    app = make_app()
    async with app.run_test(size=(160, 40)) as pilot:
        app.open_run(ids["completed"])
        await pilot.pause()
        screen = app.screen
        screen.query_one("#run-tabs").active = "tab-freeze"
        await pilot.pause()
        from tltui.tui.widgets.layer_map import LayerMap

        layer_map = screen.query_one(LayerMap)
        layer_map.expand_all()
        await pilot.pause()
        labels = [str(n.label) for n in layer_map._tree_nodes.values()]
        assert any("conv2_block1_1_conv" in l and "moved 0" in l for l in labels)
        assert any("conv2_block1_1_bn" in l and "moved 1.2e-02  frozen but moved!" in l for l in labels)
        assert any("predictions" in l and "moved 4.2e-01" in l for l in labels)
        assert "after epoch 10: 1 frozen layer(s) moved" in str(screen.query_one("#layer-map-summary", Static).render())


def _make_phased(ws, rid: str, boundary: int = 6) -> None:
    """Rewrite a scripted run's events as a two-phase run: phase 2 begins after epoch ``boundary``."""
    path = ws.run_paths(rid).events
    events = protocol.read_events(path)
    out = []
    for ev in events:
        if isinstance(ev, protocol.EpochBegin) and ev.epoch in (1, boundary + 1):
            index = 1 if ev.epoch == 1 else 2
            out.append(
                protocol.TrainPhase(
                    t=ev.t,
                    index=index,
                    count=2,
                    name="head" if index == 1 else "fine-tune",
                    start_epoch=0 if index == 1 else boundary,
                    epochs=boundary if index == 1 else 4,
                    total_epochs=boundary + 4,
                    freeze_depth="all" if index == 1 else 2,
                    optimizer="adam",
                    learning_rate=1e-3 if index == 1 else 1e-5,
                )
            )
        out.append(ev)
    path.write_text("".join(protocol.encode(e) for e in out))


@sync
async def test_a_phased_run_shows_its_phase_marks_the_boundary_and_compares_aligned(make_app, scripted):
    ws, ids = scripted
    rid = ids["completed"]
    _make_phased(ws, rid)
    app = make_app()
    async with app.run_test(size=(200, 40)) as pilot:
        app.open_run(rid)
        await pilot.pause()
        assert "epoch 10/10 · phase 2/2 fine-tune" in plain(app.screen.query_one("#run-header", Static))
        loss = app.screen.query_one("#chart-loss", MetricChart)
        assert loss._marks == (6.0,)  # between epoch 6 (phase 1's last) and 7
        await pilot.press("escape")
        app.push_screen(CompareScreen([rid, ids["running"]]))
        await pilot.pause()
        screen = app.screen
        await pilot.press("t")  # time
        await pilot.press("t")  # aligned on each run's last phase
        assert screen.xmode == "phase"
        chart = screen.query_one("#compare-curves", MetricChart)
        phased = next(s for s in chart.series if s.label.startswith(rid))
        assert phased.xs[:7] == (-5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0)  # epoch 7 = phase 2's first
        await pilot.press("t")
        assert screen.xmode == "epoch"


def test_the_runs_table_shows_a_running_runs_phase(scripted):
    from tltui.tui.store import RunStore

    ws, ids = scripted
    rid = ids["running"]
    with open(ws.run_paths(rid).events, "a") as f:
        f.write(
            protocol.encode(
                protocol.TrainPhase(t=fake_ws.NOW, index=2, count=2, start_epoch=3, epochs=2, total_epochs=5)
            )
        )
    store = RunStore(ws, clock=lambda: fake_ws.NOW)
    store.refresh()
    store.load(rid)
    row = store.row(rid)
    assert row.detail == "phase 2/2" and row.epochs == 5


@sync
async def test_a_run_before_its_first_batch_says_what_it_does_in_the_table_and_its_screen(make_app, scripted):
    """The walk: 85-118 s of "(no data yet)" and "eta -" while TensorFlow traced the first step."""
    ws, ids = scripted
    rid = ids["running"]
    with open(ws.run_paths(rid).events, "a") as f:
        for ev in (
            protocol.Phase(t=fake_ws.NOW, name="train", message="training for 10 epochs of 50 steps"),
            protocol.EpochBegin(t=fake_ws.NOW, epoch=4),
        ):
            f.write(protocol.encode(ev))
    app = make_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        assert str(app.screen.query_one(RunTable).get_cell(rid, "status")) == "first step"
        # the run screen's header shows the long form (tests/tui/test_store.py: snapshot.preparing)
        assert "tracing the first step" in (app.store.snapshot(rid).preparing or "")
