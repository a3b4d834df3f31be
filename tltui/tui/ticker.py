"""When the app reads the runs and when it redraws them.

One tick drives everything: event tails (~10 Hz) and, every tenth tick, the registry
(~1 Hz). Tails and registry reads only collect the ids of runs whose view changed and
ask for a redraw, which hands those over at once, or at the first poll tick after the
minimum redraw interval when the last one was more recent; so new events reach the
screen within a poll or two and the drawing rate is bounded whatever the event rate.
Changes nobody reads at 10 Hz (batch events: a step counter and live metrics; elapsed
times) wait for a longer interval, which an epoch or status change cuts short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from textual.app import App

from tltui.core.status import RunStatus
from tltui.tui.store import RunStore

POLL_SECONDS = 0.1
REGISTRY_SECONDS = 1.0
#: at most one redraw per this interval; a screen may ask for a longer one (``redraw_seconds``)
REDRAW_SECONDS = 0.1
#: the interval when only batch events or clocks moved (half the app's CPU when runs stream)
BATCH_REDRAW_SECONDS = 0.5
REDRAW_SLACK = 0.02


class Ticker:
    """The tick chain and the redraw rate limit of ``app``.

    ``redraw(ids, structural)`` hands the runs that changed to the screens;
    ``min_interval()`` is the longer interval the screen on top asks for, or ``None``
    while the app has no screen yet (then a redraw is never deferred).
    """

    def __init__(
        self,
        app: App[Any],
        store: RunStore,
        *,
        redraw: Callable[[set[str], bool], None],
        min_interval: Callable[[], float | None],
    ) -> None:
        self.app = app
        self.store = store
        self._redraw = redraw
        self._min_interval = min_interval
        self._dirty: set[str] = set()
        self._structural = False
        self._last_redraw = float("-inf")
        self._redraw_due = float("inf")  # when a rate-limited redraw is pending

    def start(self) -> None:
        """Poll the tails every ``POLL_SECONDS`` and the registry every ``REGISTRY_SECONDS``.

        One plain asyncio ``call_at`` chain on the app's loop rather than two Textual
        timers: a Textual timer tick (a task, an event wait, a context switch into the
        callback) costs ~0.2 % of a core at 10 Hz on its own, a tenth of the idle budget.
        An error ends the app as a timer's would (re-raised in the app's message loop);
        the chain stops when the app does.
        """
        loop = asyncio.get_running_loop()
        every = max(1, round(REGISTRY_SECONDS / POLL_SECONDS))
        count = 0
        due = loop.time() + POLL_SECONDS

        def tick() -> None:
            nonlocal count, due
            if not self.app.is_running:
                return
            count += 1
            try:
                self.poll()
                if count % every == 0:
                    self.tick_registry()
            except Exception as e:  # noqa: BLE001 - the app's own error path, as for a timer
                self.app.call_later(_reraise, e)
                return
            # a fixed schedule (work inside a tick, e.g. a chart rebuild, does not stretch the
            # period); after a stall, skip the missed ticks rather than run them back to back
            due += POLL_SECONDS
            now = loop.time()
            if due < now:
                due = now + POLL_SECONDS
            loop.call_at(due, tick)

        loop.call_at(due, tick)

    def poll(self) -> None:
        """Read the event tails."""
        changed, urgent = self.store.poll()
        self._dirty |= changed
        # also the tick that carries out a redraw deferred by the rate limit
        self.request_redraw(urgent=bool(urgent))

    def tick_registry(self, force: bool = False) -> None:
        """Read the registry (runs added, removed or with a new status)."""
        before = set(self.store.ids)
        changed = self.store.refresh(force)
        self._dirty |= changed
        ids = set(self.store.ids)
        if ids != before:
            self._structural = True
        # running rows show elapsed time, which moves without events
        self._dirty |= {rid for rid in ids if (rec := self.store.record(rid)) and rec.status == RunStatus.RUNNING}
        self.request_redraw(urgent=bool(changed) or self._structural)

    def changed(self, ids: Iterable[str]) -> None:
        """Runs changed outside a tick (summaries loaded in the background): redraw them."""
        self._dirty.update(ids)
        self.request_redraw()

    def request_redraw(self, urgent: bool = True) -> None:
        """Redraw now if the minimum interval since the last redraw has passed
        (``REDRAW_SECONDS``, or ``BATCH_REDRAW_SECONDS`` when nothing ``urgent`` changed);
        else the first poll tick after that does. No timer per redraw: creating one costs
        more than the redraw it schedules."""
        if not self._dirty and not self._structural:
            return
        floor = self._min_interval()
        if floor is not None:
            base = REDRAW_SECONDS if urgent else BATCH_REDRAW_SECONDS
            interval = max(base, floor)
        else:
            interval = 0.0
        self._redraw_due = min(self._redraw_due, self._last_redraw + interval)
        if self._redraw_due - time.monotonic() <= REDRAW_SLACK:  # a tick a little early still counts
            self.redraw_now()

    def redraw_now(self) -> None:
        """Hand the runs that changed since the last redraw over, whatever the interval."""
        if not self.app.is_running or (not self._dirty and not self._structural):
            return  # is_running: shutdown prunes screens while timers may still fire
        self._last_redraw = time.monotonic()
        self._redraw_due = float("inf")
        ids, structural = self._dirty, self._structural
        self._dirty, self._structural = set(), False
        self._redraw(ids, structural)

    def refresh_now(self) -> None:
        """Re-read the registry now (after an action) instead of at the next tick."""
        self.tick_registry(force=True)
        self.redraw_now()


def _reraise(error: Exception) -> None:
    raise error
