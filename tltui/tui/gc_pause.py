"""Hold Python's cyclic garbage collector while a screen is built and first drawn.

Building a screen allocates many short-lived objects, and once the runs' histories are in memory a
full collection that falls in the middle of it costs more than the screen itself. Textual pauses
collection during smooth scrolls for the same reason (``App.PAUSE_GC_ON_SCROLL``). The collection
is postponed, not skipped: :func:`resume` runs once the screen is drawn, and at the latest after
:data:`MAX_SECONDS`.
"""

from __future__ import annotations

import gc
import threading

#: the longest the collector stays held, whatever happens to the screen
MAX_SECONDS = 1.0

_held = False


def hold() -> None:
    """Disable the collector until :func:`resume` (or :data:`MAX_SECONDS`); nothing if it is off already."""
    global _held
    if _held or not gc.isenabled():
        return
    gc.disable()
    _held = True
    # a thread's timer, not the app's: it fires even if the app quits before the screen is drawn
    timer = threading.Timer(MAX_SECONDS, resume)
    timer.daemon = True
    timer.start()


def resume() -> None:
    """Enable the collector again if :func:`hold` disabled it."""
    global _held
    if _held:
        _held = False
        gc.enable()
