"""Which way the app draws images: a terminal graphics protocol when the terminal has one, else
half-block characters.

- ``kitty``: the Kitty graphics protocol (Kitty, and terminals that implement its placeholders),
  through ``textual-image``;
- ``sixel``: Sixel graphics (foot, WezTerm, mlterm, xterm -ti vt340, Windows Terminal...), through
  ``textual-image``;
- ``halfblock``: tltui's own ``▀`` cells (every true-colour terminal; the fallback).

``[ui] images`` in ``<workspace>/settings.toml`` (or ``$TLTUI_IMAGES``; both read by
:mod:`tltui.core.settings`, which refuses other values) picks one: ``auto`` (the
default) asks the terminal, except inside tmux or screen, which do not pass the protocols through
(half blocks there, as over a plain SSH session whose terminal answers no query). The terminal is
asked once, before the app starts: once Textual reads stdin it would swallow the answer.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

RENDERERS = ("auto", "halfblock", "kitty", "sixel")  # = tltui.core.settings.UiSettings.images

log = logging.getLogger("tltui.tui.images")


@dataclass(frozen=True)
class Choice:
    renderer: str  # halfblock | kitty | sixel
    why: str


def detected_protocol() -> str | None:
    """What ``textual-image`` found when it asked the terminal (on import): ``kitty``, ``sixel`` or
    ``None``. Importing it sends the queries, so call this before the app starts."""
    try:
        from textual_image import renderable
    except Exception as e:  # noqa: BLE001 - a broken optional renderer must not stop the app
        log.warning("textual-image unavailable (%s): half-block images", e)
        return None
    name = renderable.Image.__module__.rsplit(".", 1)[-1]
    return {"tgp": "kitty", "sixel": "sixel"}.get(name)


def choose(
    setting: str,
    env: Mapping[str, str],
    *,
    is_tty: bool,
    probe: Callable[[], str | None] = detected_protocol,
) -> Choice:
    """The renderer for ``setting`` (one of :data:`RENDERERS`: ``[ui] images`` with ``TLTUI_IMAGES``
    applied) in a terminal described by ``env``."""
    setting = setting or "auto"
    if setting not in RENDERERS:
        return Choice("halfblock", f"[ui] images = {setting!r} is not one of {', '.join(RENDERERS)}")
    if setting != "auto":
        return Choice(setting, f"set to {setting}")
    term = env.get("TERM", "")
    if env.get("TMUX") or term.startswith(("screen", "tmux")):
        return Choice("halfblock", "inside tmux/screen, which do not pass graphics protocols through")
    if not is_tty:
        return Choice("halfblock", "not a terminal")
    found = probe()
    if found is None:
        return Choice("halfblock", "the terminal answered no graphics-protocol query")
    return Choice(found, f"the terminal supports {'the Kitty graphics protocol' if found == 'kitty' else 'Sixel'}")


def setup(setting: str = "auto") -> Choice:
    """Decide once, before the app starts, and tell the thumbnail widget."""
    from tltui.tui.widgets import thumbnail

    choice = choose(setting, os.environ, is_tty=bool(sys.__stdout__ and sys.__stdout__.isatty()))
    if choice.renderer != "halfblock":
        try:
            import textual_image.widget  # noqa: F401 - measures the cell size now, while it still can
        except Exception as e:  # noqa: BLE001
            choice = Choice("halfblock", f"textual-image failed ({e})")
    thumbnail.RENDERER = choice.renderer
    log.info("images: %s (%s)", choice.renderer, choice.why)
    return choice
