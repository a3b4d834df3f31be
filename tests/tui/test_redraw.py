"""How new events reach the screen: at once after a poll, at a bounded rate, one row repainted."""

from __future__ import annotations

import asyncio
import dataclasses
import functools

from tests.tui import fake_ws
from tltui import protocol
from tltui.protocol import EpochBegin
from tltui.tui import app as app_mod
from tltui.tui.screens.runs import RunsScreen
from tltui.tui.widgets.run_table import RunTable

SIZE = (120, 30)


def sync(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))

    return wrapper


def append(ws, rid: str, event) -> None:
    with open(ws.run_paths(rid).events, "a") as f:
        f.write(protocol.encode(event))


def long_ago(app) -> None:
    """As if the last redraw was long ago and none is pending (start-up may have deferred one)."""
    if app._redraw_timer is not None:
        app._redraw_timer.stop()
        app._redraw_timer = None
    app._last_redraw = float("-inf")


def count_redraws(monkeypatch, screen: RunsScreen) -> list[set[str]]:
    calls: list[set[str]] = []
    original = screen.runs_changed

    def spy(ids, structural):
        calls.append(set(ids))
        original(ids, structural)

    monkeypatch.setattr(screen, "runs_changed", spy)
    return calls


@sync
async def test_a_poll_that_finds_events_redraws_without_waiting_for_a_tick(make_app, scripted, monkeypatch):
    ws, ids = scripted
    rid = ids["running"]
    app = make_app(background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        calls = count_redraws(monkeypatch, app.screen)
        long_ago(app)
        append(ws, rid, EpochBegin(t=fake_ws.NOW, epoch=7))
        app._poll()
        assert calls == [{rid}]
        await pilot.pause()
        assert "7/10" in app.screen.query_one(RunTable).get_cell(rid, "epoch").plain
        assert "7/10" in app.export_screenshot()


@sync
async def test_redraws_are_rate_limited_and_the_last_change_is_not_lost(make_app, scripted, monkeypatch):
    ws, ids = scripted
    rid = ids["running"]
    monkeypatch.setattr(app_mod, "REDRAW_SECONDS", 3600.0)
    app = make_app(background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        calls = count_redraws(monkeypatch, app.screen)
        long_ago(app)
        append(ws, rid, EpochBegin(t=fake_ws.NOW, epoch=7))
        app._poll()
        append(ws, rid, EpochBegin(t=fake_ws.NOW, epoch=8))
        app._poll()
        assert len(calls) == 1  # the second one waits for the interval...
        assert app._redraw_timer is not None  # ...on a timer, so it is not dropped
        app._redraw_timer.stop()
        app._deferred_redraw()
        assert len(calls) == 2 and rid in calls[1]
        await pilot.pause()
        assert "8/10" in app.screen.query_one(RunTable).get_cell(rid, "epoch").plain


@sync
async def test_an_unchanged_file_costs_no_redraw(make_app, scripted, monkeypatch):
    app = make_app(background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app._poll()  # whatever was pending
        calls = count_redraws(monkeypatch, app.screen)
        long_ago(app)
        app._poll()
        assert calls == []


@sync
async def test_patching_a_row_repaints_that_row_only(make_app, scripted):
    _ws, ids = scripted
    rid, other = ids["running"], ids["completed"]
    app = make_app(background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one(RunTable)
        await pilot.pause()
        assert any(k[0] == other for k in table._cell_render_cache.keys())  # the other row was drawn
        generation = table._update_count  # every render cache of DataTable is keyed on it
        row = app.store.row(rid)
        table.update_run(dataclasses.replace(row, elapsed=4 * 3600.0), False)
        assert table.get_cell(rid, "elapsed").plain == "4h00m"
        # no table-wide invalidation (update_cell would re-render every visible cell)
        assert table._update_count == generation
        await pilot.pause()
        assert "4h00m" in app.export_screenshot()
        # same visible text (elapsed within the same second): nothing is rebuilt
        table.update_run(dataclasses.replace(row, elapsed=4 * 3600.0 + 0.2), False)
        assert table.get_cell(rid, "elapsed").plain == "4h00m"
