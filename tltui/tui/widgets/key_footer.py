"""A footer that keeps the keys that matter when the terminal is narrow.

Textual's :class:`~textual.widgets.Footer` draws every shown binding in order and cuts the line
at the terminal's edge, so the app's keys (help, quit), which come last, are the first to go.
:class:`KeyFooter` hides the least important keys first, in the order the screen gives
(``drop``, by action), until the rest fit; whatever it hides stays in the help (``?``) and the
command palette.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey  # Footer's own key widget (not re-exported by Textual)

#: Cells a key takes besides its key and description (Footer's padding: `` k desc ``).
KEY_PADDING = 3


def fit_keys(keys: Sequence[tuple[str, int]], width: int, drop: Sequence[str]) -> set[str]:
    """The actions to hide so that ``keys`` (``(action, cells)``, in footer order) fit in ``width``
    cells, hiding them in the order of ``drop`` (least important first) and nothing else."""
    need = sum(cells for _action, cells in keys)
    hidden: set[str] = set()
    for action in drop:
        if need <= width:
            break
        cells = sum(c for a, c in keys if a == action)
        if cells:
            hidden.add(action)
            need -= cells
    return hidden


class KeyFooter(Footer):
    """A :class:`Footer` that hides the actions of ``drop`` (least important first) that do not fit."""

    def __init__(self, *, drop: Sequence[str] = (), id: str | None = None) -> None:
        super().__init__(id=id)
        self.drop = tuple(drop)
        self._width = -1
        self._recompose_due = False

    def bindings_changed(self, screen: Screen) -> None:
        # A screen's bindings change several times while it opens (mounts, focus, a status);
        # Footer would rebuild its keys after each. One rebuild after the next refresh shows
        # the bindings as they are then.
        self._bindings_ready = True
        if not screen.app.app_focus or not self.is_attached or screen is not self.screen or self._recompose_due:
            return
        self._recompose_due = True
        self.call_after_refresh(self._recompose_once)

    async def _recompose_once(self) -> None:
        self._recompose_due = False
        await self.recompose()

    async def recompose(self) -> None:
        await super().recompose()
        self._width = -1
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        width = self.size.width
        if not width or width == self._width:
            return
        self._width = width
        keys = list(self.query(FooterKey))
        palette = sum(_cells(k) + 1 for k in keys if _palette(k))  # + its border
        hidden = fit_keys([(k.action, _cells(k)) for k in keys if not _palette(k)], width - palette, self.drop)
        for key in keys:
            if not _palette(key):
                key.display = key.action not in hidden


def _cells(key: FooterKey) -> int:
    return cell_len(key.key_display) + cell_len(key.description) + KEY_PADDING


def _palette(key: FooterKey) -> bool:
    return key.has_class("-command-palette")
