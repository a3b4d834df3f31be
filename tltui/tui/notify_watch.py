"""What the queue runner notifies (``[notify]``: a failed run, a sweep's end, the queue emptied), in an
open app: the terminal bell and a toast. The runner appends each notification to
``WORKSPACE/notifications.jsonl`` (:mod:`tltui.core.notifications`); the app reads what comes after
the moment it opened, once a second (a ``stat`` when nothing changed).
"""

from __future__ import annotations

from textual.app import App

from tltui.core import notifications
from tltui.core.workspace import Workspace

POLL_SECONDS = 1.0
TITLES = {"run_failed": "run failed", "sweep_done": "sweep done", "queue_empty": "queue empty"}


def watch(app: App[None], ws: Workspace) -> None:
    """Ring and toast every notification appended from now on, unless ``[notify] bell = false``."""
    from tltui.core.settings import Settings  # pydantic: not at the app's import (start-up time)

    if not Settings.load(ws, strict=False).notify.bell:
        return
    offset = notifications.end_offset(ws.root)

    def poll() -> None:
        nonlocal offset
        notes, offset = notifications.read_new(ws.root, offset)
        for note in notes:
            app.bell()
            app.notify(
                note.text.partition(": ")[2] or note.text,
                title=TITLES.get(note.event, note.event),
                severity="error" if note.event == "run_failed" else "information",
                timeout=10,
            )

    app.set_interval(POLL_SECONDS, poll)
