"""Opening a run's screen costs its charts (issue 31): the other tabs are built when first shown, the
footer rebuilds its keys once per refresh, and the garbage collector waits until the screen is drawn."""

from __future__ import annotations

import gc
import threading
import time

from textual.widgets import Static

from tests.tui.screen_host import asynctest, until
from tltui.tui import gc_pause
from tltui.tui.widgets.key_footer import KeyFooter

SIZE = (160, 48)


@asynctest
async def test_run_screen_builds_its_tabs_when_shown_and_collects_after_drawing(make_app, scripted):
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        assert gc.isenabled()
        app.open_run(ids["completed"])
        assert not gc.isenabled()  # held while the screen is built
        await until(pilot, gc.isenabled, "the collector to resume once the screen is drawn")
        screen = app.screen
        assert screen.query_one("#preset-view", Static).content == ""  # not built yet
        await pilot.press("3")
        await pilot.pause()
        assert "[model]" in screen.query_one("#preset-view", Static).content.code  # type: ignore[union-attr]


def test_gc_hold_is_released_by_its_timer_and_leaves_a_disabled_collector_alone():
    gc.disable()
    try:
        gc_pause.hold()  # someone else (a scroll) holds it: not ours to enable
        gc_pause.resume()
        assert not gc.isenabled()
    finally:
        gc.enable()
    gc_pause.hold()
    assert not gc.isenabled()
    deadline = time.monotonic() + gc_pause.MAX_SECONDS + 30
    while not gc.isenabled() and time.monotonic() < deadline:  # the timer thread releases it
        threading.Event().wait(0.05)
    assert gc.isenabled()


@asynctest
async def test_footer_rebuilds_once_for_many_binding_changes(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        footer = app.screen.query_one(KeyFooter)
        # the app's own start (mount, focus, the first rows) settles first: a loaded machine may still be in it
        await until(pilot, lambda: footer._bindings_ready and not footer._recompose_due, "the footer to settle")
        await pilot.pause()
        rebuilds = 0
        recompose = footer.recompose

        async def counted() -> None:
            nonlocal rebuilds
            rebuilds += 1
            await recompose()

        footer.recompose = counted  # type: ignore[method-assign]
        for _ in range(5):
            app.screen.refresh_bindings()
        await until(pilot, lambda: rebuilds >= 1 and not footer._recompose_due, "the footer's rebuild")
        await pilot.pause()
        await pilot.pause()
        assert rebuilds == 1
