"""A minimal app that hosts one screen, so screens are tested without the full app."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from textual.app import App
from textual.screen import Screen

from tltui.core.workspace import Workspace


class HostApp(App[None]):
    """Pushes ``make_screen()`` on mount and records what it dismisses with in ``results``."""

    def __init__(self, make_screen: Callable[[], Screen[Any]], ws: Workspace | None = None) -> None:
        super().__init__()
        self.ws = ws
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
