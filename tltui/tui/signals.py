"""SIGTERM and SIGHUP (an SSH drop) close the app as `q` does, instead of killing it mid-frame.

The terminal is restored and the app's own workers (predict, describe) stop. Runs never belong
to the app (the detached queue runner owns them), so they go on. A second signal, or a close
that hangs (a dropped link can block terminal writes), ends the process at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any

#: After the first signal the app gets this long to close itself; then the process ends anyway.
CLOSE_GRACE_SECONDS = 5.0


def close_on_signals(app: Any, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)) -> None:
    """Install the handlers (main thread, before ``app.run()``)."""
    state = {"closing": False}

    def handler(signum: int, frame: Any) -> None:
        if state["closing"]:
            os._exit(128 + signum)
        state["closing"] = True
        timer = threading.Timer(CLOSE_GRACE_SECONDS, os._exit, (128 + signum,))
        timer.daemon = True
        timer.start()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # the app is not running (yet, or any more)
            raise SystemExit(128 + signum) from None
        loop.call_soon_threadsafe(app.exit)

    for sig in signals:
        signal.signal(sig, handler)
