"""How new events reach the screen: at once after a poll, at a bounded rate, one row repainted."""

from __future__ import annotations

import asyncio
import dataclasses
import functools

import pytest

from tests.tui import fake_ws
from tltui.core import protocol
from tltui.core.protocol import Batch, EpochBegin
from tltui.tui import ticker as ticker_mod
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
    app.ticker._last_redraw = float("-inf")
    app.ticker._redraw_due = float("inf")


def time_passes(app) -> None:
    """As if the rate limit's interval was over: the next poll tick redraws what is pending."""
    app.ticker._redraw_due = float("-inf")


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
        app.ticker.poll()
        assert calls == [{rid}]
        await pilot.pause()
        assert "7/10" in app.screen.query_one(RunTable).get_cell(rid, "epoch").plain
        assert "7/10" in app.export_screenshot()


@sync
async def test_redraws_are_rate_limited_and_the_last_change_is_not_lost(make_app, scripted, monkeypatch):
    ws, ids = scripted
    rid = ids["running"]
    monkeypatch.setattr(ticker_mod, "REDRAW_SECONDS", 3600.0)
    app = make_app(background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        calls = count_redraws(monkeypatch, app.screen)
        long_ago(app)
        append(ws, rid, EpochBegin(t=fake_ws.NOW, epoch=7))
        app.ticker.poll()
        append(ws, rid, EpochBegin(t=fake_ws.NOW, epoch=8))
        app.ticker.poll()
        assert len(calls) == 1  # the second one waits for the interval...
        app.ticker.poll()
        assert len(calls) == 1 and app.ticker._redraw_due < float("inf")  # ...pending, not dropped
        time_passes(app)
        app.ticker.poll()  # a tick that finds nothing new still carries out the pending redraw
        assert len(calls) == 2 and rid in calls[1]
        await pilot.pause()
        assert "8/10" in app.screen.query_one(RunTable).get_cell(rid, "epoch").plain


@sync
async def test_batch_events_wait_for_the_longer_interval_and_an_epoch_cuts_it_short(make_app, scripted, monkeypatch):
    ws, ids = scripted
    rid = ids["running"]
    monkeypatch.setattr(ticker_mod, "REDRAW_SECONDS", 600.0)
    monkeypatch.setattr(ticker_mod, "BATCH_REDRAW_SECONDS", 3600.0)
    app = make_app(background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        calls = count_redraws(monkeypatch, app.screen)
        long_ago(app)
        app.ticker._last_redraw = ticker_mod.time.monotonic()  # just redrawn...
        app.ticker._redraw_due = float("inf")  # ...with nothing pending (a tick under load may have left a due)
        app.ticker._dirty.clear()
        app.ticker._structural = False
        append(ws, rid, Batch(t=fake_ws.NOW, epoch=3, step=40, steps=50, metrics={"loss": 1.0}))
        app.ticker.poll()
        assert calls == []
        assert app.ticker._redraw_due - app.ticker._last_redraw == pytest.approx(3600.0)  # a step counter can wait
        append(ws, rid, EpochBegin(t=fake_ws.NOW, epoch=4))
        app.ticker.poll()
        assert app.ticker._redraw_due - app.ticker._last_redraw == pytest.approx(600.0)  # an epoch cannot: due sooner
        append(ws, rid, Batch(t=fake_ws.NOW, epoch=4, step=1, steps=50, metrics={"loss": 1.0}))
        app.ticker.poll()
        # a batch rides along
        assert calls == [] and app.ticker._redraw_due - app.ticker._last_redraw == pytest.approx(600.0)
        time_passes(app)
        app.ticker.poll()
        assert calls == [{rid}] and app.ticker._redraw_due == float("inf")
        await pilot.pause()
        assert "4/10" in app.screen.query_one(RunTable).get_cell(rid, "epoch").plain


@sync
async def test_an_unchanged_file_costs_no_redraw(make_app, scripted, monkeypatch):
    app = make_app(background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.ticker.poll()  # whatever was pending
        calls = count_redraws(monkeypatch, app.screen)
        long_ago(app)
        app.ticker.poll()
        assert calls == []


async def settled(pilot, drawn: list[int]) -> None:
    """Pause until a pause paints no line of the table (first frame, layout and focus are over)."""
    for _ in range(50):
        drawn.clear()
        await pilot.pause()
        if not drawn:
            return
    raise AssertionError(f"the table is still repainting lines {sorted(set(drawn))} with nothing changed")


@sync
async def test_patching_a_row_repaints_that_row_only(make_app, scripted, monkeypatch):
    _ws, ids = scripted
    rid = ids["running"]
    # no tick in this test: a registry tick (every second, so a slow machine's test spans one) redraws
    # the running rows from the store, which undoes the patch and repaints its row a second time
    monkeypatch.setattr(ticker_mod, "POLL_SECONDS", 3600.0)
    app = make_app(background=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one(RunTable)
        refreshed, drawn = [], []
        refresh, render_line = table.refresh, table.render_line
        table.refresh = lambda *regions, **kw: refreshed.append(regions) or refresh(*regions, **kw)
        table.render_line = lambda y: drawn.append(y) or render_line(y)
        await settled(pilot, drawn)
        refreshed.clear()
        row = app.store.row(rid)
        table.update_run(dataclasses.replace(row, elapsed=4 * 3600.0), False)
        assert table.get_cell(rid, "elapsed").plain == "4h00m"
        # one refresh of the row's line (below the header); no table-wide invalidation
        y = table.get_row_index(rid) + 1
        assert [(r.y, r.height) for regions in refreshed for r in regions] == [(y, 1)]
        await pilot.pause()
        assert set(drawn) == {y}  # no other line of the table was rendered again
        assert "4h00m" in app.export_screenshot()
        # same visible text (elapsed within the same second): nothing is repainted
        refreshed.clear()
        table.update_run(dataclasses.replace(row, elapsed=4 * 3600.0 + 0.2), False)
        assert table.get_cell(rid, "elapsed").plain == "4h00m" and refreshed == []


@sync
async def test_one_tick_polls_the_tails_and_every_tenth_reads_the_registry(make_app, monkeypatch):
    monkeypatch.setattr(ticker_mod, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(ticker_mod, "REGISTRY_SECONDS", 0.1)
    app = make_app(background=False)
    polls, refreshes = [], []
    async with app.run_test(size=SIZE) as pilot:
        poll, refresh = app.store.poll, app.store.refresh
        monkeypatch.setattr(app.store, "poll", lambda: polls.append(1) or poll())
        monkeypatch.setattr(app.store, "refresh", lambda force=False: refreshes.append(1) or refresh(force))
        for _ in range(500):  # bounded: a broken chain fails here instead of hanging
            if len(polls) >= 40:
                break
            await pilot.pause(0.02)
        assert len(polls) >= 40
        assert 2 <= len(refreshes) <= len(polls) // 10 + 1


@sync
async def test_a_failing_tick_ends_the_app_with_its_error(make_app, monkeypatch):
    monkeypatch.setattr(ticker_mod, "POLL_SECONDS", 0.01)
    app = make_app(background=False)

    def broken():
        raise RuntimeError("the store broke")

    with pytest.raises(RuntimeError, match="the store broke"):
        async with app.run_test(size=SIZE) as pilot:
            monkeypatch.setattr(app.store, "poll", broken)
            for _ in range(100):
                await pilot.pause(0.02)
