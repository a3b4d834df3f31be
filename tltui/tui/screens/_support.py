"""Small helpers shared by the presets, freeze-map and inference screens."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

from tltui.core.workspace import Workspace


def workspace_for(app: Any, explicit: Workspace | None) -> Workspace:
    """The workspace a screen works on: the one it was given, the app's, or the default one."""
    if explicit is not None:
        return explicit
    ws = getattr(app, "ws", None)
    if isinstance(ws, Workspace):
        return ws
    return Workspace()


class ScreenActions(Provider):
    """Command-palette entries for every key binding of the screen the palette opened on."""

    def _bindings(self) -> list[Binding]:
        return [b for b in getattr(self.screen, "BINDINGS", []) if isinstance(b, Binding) and b.description]

    async def discover(self) -> Hits:
        for b in self._bindings():
            yield DiscoveryHit(b.description, partial(self.screen.run_action, b.action), help=f"key {b.key}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for b in self._bindings():
            score = matcher.match(b.description)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(b.description),
                    partial(self.screen.run_action, b.action),
                    help=f"key {b.key}",
                )
