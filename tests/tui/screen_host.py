"""A minimal app that hosts one screen, so screens are tested without the full app."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from textual.app import App
from textual.command import CommandList, CommandPalette
from textual.content import Content
from textual.pilot import Pilot
from textual.screen import Screen

from tltui.tui.keys import KeyCommands


class HostApp(App[None]):
    """Pushes ``make_screen()`` on mount and records what it dismisses with in ``results``.

    The screen gets what it needs (its workspace) from its constructor, and the command palette
    offers its keys, as in the real app."""

    COMMANDS = App.COMMANDS | {KeyCommands}

    def __init__(self, make_screen: Callable[[], Screen[Any]]) -> None:
        super().__init__()
        self._make_screen = make_screen
        self.results: list[Any] = []

    def on_mount(self) -> None:
        self.push_screen(self._make_screen(), self.results.append)


def screen_text(app: App[Any]) -> str:
    """What the terminal shows now, as plain text (one line per row)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in strips)


def asynctest(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an ``async def`` test with ``asyncio.run`` (no async pytest plugin is installed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


async def until(pilot: Pilot[Any], condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Pause until ``condition()`` holds (on a loaded machine, background work takes what it takes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.05)


def top_hit(app: App[Any]) -> str | None:
    """The command palette's highlighted hit (its first line), if it shows one."""
    lists = app.screen.query(CommandList)
    if not lists or lists.first().highlighted is None:
        return None
    option = lists.first().get_option_at_index(lists.first().highlighted)
    return Content.from_text(option.prompt).plain.split("\n")[0]


async def run_from_palette(pilot: Pilot[Any], title: str) -> None:
    """Open the command palette, search for ``title`` and run the command when it is the top hit."""
    app = pilot.app
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*title)
    # the palette gathers its hits in a worker and shows them in batches: wait for them, not for a time
    await until(pilot, lambda: top_hit(app) == title, f"the palette's hit {title!r}")
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, CommandPalette), "the palette to close")
