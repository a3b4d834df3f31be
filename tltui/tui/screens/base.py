"""The contract between the app and the screens that show runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.screen import Screen

if TYPE_CHECKING:
    from textual import getters

    from tltui.tui.app import TltuiApp


class RunsView(Screen[None]):
    """A screen that shows runs of ``app.store``.

    The app hands every such screen on its stack the runs whose view changed, at its
    redraw rate (:meth:`runs_changed`), and runs its run actions (open, compare, cancel,
    resume, delete, freeze map, inference) on the topmost one's :meth:`target_ids`.
    """

    #: the app redraws while this screen is on top at most this often (seconds); the
    #: app's own minimum interval applies when it is longer
    redraw_seconds: ClassVar[float] = 0.0

    if TYPE_CHECKING:
        #: ``self.app`` is the :class:`TltuiApp` (Textual's typed-app property; for type checkers
        #: only, so it costs nothing at run time and importing the app here makes no cycle)
        app = getters.app(TltuiApp)

    def runs_changed(self, ids: set[str], structural: bool) -> None:
        """The runs ``ids`` changed since the last redraw; ``structural``: runs were added or removed."""

    def target_ids(self) -> list[str]:
        """The runs the app's run actions apply to (in order)."""
        return []
