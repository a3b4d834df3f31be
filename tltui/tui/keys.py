"""The keys of a screen and of the app, read from their bindings, with the keymap's remaps.

One list, two views: the help screen shows it as tables (:mod:`tltui.tui.screens.help`) and the
command palette offers each key as a command (:class:`KeyCommands`, in the app's ``COMMANDS``).
So a screen's keys are in both as soon as its ``BINDINGS`` declare them with a description,
including the keys that open other screens (the home screen's ``p``, ``f``, ``i``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from textual.app import App
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen


@dataclass(frozen=True)
class Key:
    """One binding with a description, as the help and the palette show it."""

    keys: str  #: the keys as displayed, remaps applied ("k"; "+ =" for a binding of two keys)
    description: str
    id: str  #: the id ``keymap.toml`` remaps it by ("" if it has none)
    action: str
    tooltip: str  #: a longer explanation ("" if it has none)
    node: Screen[Any] | App[Any]  #: where its action runs: the screen for a screen's key, else the app

    @property
    def help(self) -> str:
        """What the palette shows under the command: the explanation, then the keys."""
        return " · ".join(part for part in (self.tooltip, f"key {self.keys}") if part)

    def run(self) -> Awaitable[Any]:
        """Do what pressing the key does (the action's own namespace, ``app.`` or none, applies)."""
        return self.node.run_action(self.action)


def keys_of(
    app: App[Any], node: Screen[Any] | App[Any], bindings: list[BindingType], live: dict[str, list[Binding]]
) -> list[Key]:
    """One :class:`Key` per binding with a description (hidden ones too: the footer has no room for them).

    ``live``: the active bindings by id, so a key remapped in the keymap shows as remapped; a
    binding not active now (its key taken by the focused widget) shows its declared keys.
    """
    out = []
    for entry in bindings:
        declared = list(Binding.make_bindings([entry]))  # "plus,equals_sign": one per key
        first = declared[0]
        if first.description:
            shown = live.get(first.id or "") or declared
            keys = " ".join(app.get_key_display(b) for b in shown)
            out.append(Key(keys, first.description, first.id or "", first.action, first.tooltip, node))
    return out


def screen_title(screen: Screen[Any]) -> str:
    """``InferenceScreen`` -> ``Inference``, ``FreezeMapScreen`` -> ``Freeze map``."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", type(screen).__name__.removesuffix("Screen")).capitalize()


def key_sections(screen: Screen[Any]) -> list[tuple[str, list[Key]]]:
    """The keys ``screen`` declares, then the app's (every screen), with the command palette's own."""
    app = screen.app
    live: dict[str, list[Binding]] = {}
    for active in screen.active_bindings.values():
        if active.binding.id:
            live.setdefault(active.binding.id, []).append(active.binding)
    app_bindings = list(app.BINDINGS)
    if app.ENABLE_COMMAND_PALETTE:
        app_bindings.append(
            Binding(
                app.COMMAND_PALETTE_BINDING,
                "command_palette",
                "Command palette",
                key_display=app.COMMAND_PALETTE_DISPLAY,
            )
        )
    return [
        (f"This screen: {screen_title(screen)}", keys_of(app, screen, list(screen.BINDINGS), live)),
        ("App: every screen", keys_of(app, app, app_bindings, live)),
    ]


def palette_keys(screen: Screen[Any]) -> list[Key]:
    """What the command palette offers on ``screen``: the keys the help lists, less the palette's own
    key and those Textual's commands already offer (its Quit is the app's ``q``), one per description."""
    taken = {command.title for command in screen.app.get_system_commands(screen)}
    out = []
    for _section, keys in key_sections(screen):
        for key in keys:
            if key.action != "command_palette" and key.description not in taken:
                taken.add(key.description)
                out.append(key)
    return out


class KeyCommands(Provider):
    """The command palette's commands: every key of the screen it opened on and of the app
    (:func:`palette_keys`); running one does what pressing the key does."""

    async def discover(self) -> Hits:
        for key in palette_keys(self.screen):
            yield DiscoveryHit(key.description, key.run, help=key.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for key in palette_keys(self.screen):
            score = matcher.match(key.description)
            if score > 0:
                yield Hit(score, matcher.highlight(key.description), key.run, help=key.help)
