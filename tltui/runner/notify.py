"""The queue runner's notifications: a command and/or a webhook when a run fails, a sweep ends and
the queue empties (``[notify]`` in ``settings.toml``, :class:`tltui.core.settings.NotifySettings`).

The runner calls :meth:`Notifier.ended` for every run that ends and :meth:`Notifier.step` once per
loop; both return at once. Each notification is appended to ``WORKSPACE/notifications.jsonl`` (an
open app rings the bell and shows it) and sent, in order, from one background thread: the command runs without
a shell (the message as its last argument, the digest as JSON on its standard input), the webhook
gets a JSON POST through ``urllib``, each bounded by ``timeout``. A failing hook is one line in the
runner's log and nothing more: it never stops or slows the runner. The log names a webhook by its
host only (its path often holds a secret token).
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from http.client import HTTPException
from urllib.parse import urlsplit

from tltui.core import notifications
from tltui.core.notifications import Notification
from tltui.core.settings import NotifySettings, Settings
from tltui.core.status import FINAL, RunStatus
from tltui.core.workspace import RunRecord, Workspace

log = logging.getLogger("tltui.runner")


class Notifier:
    """Decides when to notify and sends in the background. ``where`` names this machine in messages."""

    def __init__(self, ws: Workspace, settings: NotifySettings | None = None, *, where: str | None = None) -> None:
        self.ws = ws
        self.settings = settings if settings is not None else Settings.load(ws, strict=False).notify
        self.where = where or socket.gethostname()
        self._ended: list[str] = []  # runs that ended since the queue was last empty, in order
        #: budgeted sweeps whose runs have all ended but some wait at a rung: done once the runner stops them
        self._waiting: set[str] = set()
        self._outbox: queue.Queue[Notification | None] = queue.Queue()
        self._sender: threading.Thread | None = None

    # ------------------------------------------------------------ what the runner calls

    def ended(self, run_id: str, status: str) -> None:
        """A run ended with ``status``: a failure notifies; so does the last run of a sweep to end."""
        try:
            self._ended.append(run_id)
            rec = self.ws.get(run_id)
            if status == RunStatus.FAILED:
                self.emit(notifications.run_failed(rec, self.where))
            if rec.sweep is not None:
                self._sweep_check(rec.sweep, self.ws.list_runs())
        except Exception as e:  # noqa: BLE001 - a notification never costs the runner anything
            log.warning("notify: %s ended, but no notification: %s", run_id, e)

    def _sweep_check(self, sweep: str, everyone: list[RunRecord]) -> None:
        """Notify ``sweep_done`` when every run of ``sweep`` has ended. A run paused at a rung of a budgeted sweep
        waits for the runner's decision: not an end; when only such runs keep the sweep from its end, it is
        checked again each step (the runner stops them where no worker ends)."""
        runs = [r for r in everyone if r.sweep == sweep]
        self._waiting.discard(sweep)
        if not all(r.status in FINAL for r in runs):
            return  # a run still queued or running: its end checks again
        if any(_waits_at_rung(r) for r in runs):
            self._waiting.add(sweep)
            return
        self.emit(notifications.sweep_done(runs, self.where))

    def step(self, busy: bool) -> None:
        """Once per loop; ``busy``: the runner watches a worker. Notifies when a sweep whose last runs waited at a
        rung is done (the runner stopped them, after :meth:`ended`), and when the queue has emptied."""
        if self._waiting:
            try:
                everyone = self.ws.list_runs()
                for sweep in sorted(self._waiting):
                    self._sweep_check(sweep, everyone)
            except Exception as e:  # noqa: BLE001
                self._waiting.clear()
                log.warning("notify: a sweep may have ended, but no notification: %s", e)
        if not self._ended or busy:
            return
        try:
            if self.ws.queue():
                return
            runs = _records(self.ws, self._ended)
            self._ended = []
            self.emit(notifications.queue_empty(runs, self.where))
        except Exception as e:  # noqa: BLE001
            self._ended = []
            log.warning("notify: the queue emptied, but no notification: %s", e)

    def close(self, wait: float = 5.0) -> None:
        """Give the sends in flight up to ``wait`` seconds (the runner is exiting)."""
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join(wait)
            self._sender = None

    # ------------------------------------------------------------ sending

    def emit(self, note: Notification) -> None:
        """Record ``note`` for open apps and send it, if ``[notify] on`` lists its event."""
        if note.event not in self.settings.on:
            return
        log.info("notify: %s", note.text)
        try:
            notifications.append(self.ws.root, note)
        except OSError as e:
            log.warning("notify: cannot append to %s: %s", self.ws.root / notifications.FILE, e)
        if self.settings.command or self.settings.webhook:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_all, name="tltui-notify", daemon=True)
                self._sender.start()
            self._outbox.put(note)

    def _send_all(self) -> None:
        """The sender thread: one notification after another, in the order they came."""
        while (note := self._outbox.get()) is not None:
            self.send(note)

    def send(self, note: Notification) -> None:
        """Run the command and post to the webhook (blocking, each within ``timeout``); failures are logged."""
        if self.settings.command:
            run_command(self.settings.command, note, self.settings.timeout)
        if self.settings.webhook:
            post(self.settings.webhook, note, self.settings.timeout)


def run_command(command: list[str], note: Notification, timeout: float) -> bool:
    """``command + [note.text]``, the digest on stdin, no shell; ``False`` (and one log line) on failure."""
    try:
        p = subprocess.run(
            [*command, note.text],
            input=json.dumps({"event": note.event, "text": note.text, "digest": note.digest}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        log.warning("notify: %s took more than %g s: stopped", command[0], timeout)
        return False
    except OSError as e:
        log.warning("notify: cannot run %s: %s", command[0], e.strerror or e)
        return False
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or [""])[-1][:200]
        log.warning("notify: %s exited with code %d%s", command[0], p.returncode, f": {last}" if last else "")
        return False
    return True


def post(url: str, note: Notification, timeout: float) -> bool:
    """POST the notification as JSON; ``False`` (and one log line naming the host only) on failure."""
    body = json.dumps({"text": note.text, "event": note.event, "digest": note.digest}).encode()
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "tltui"}
    )
    host = urlsplit(url).netloc.rpartition("@")[2]
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only (settings check)
            resp.read(4096)
        return True
    except urllib.error.HTTPError as e:
        log.warning("notify: webhook %s answered %d %s", host, e.code, e.reason)
    except (urllib.error.URLError, HTTPException, OSError, ValueError) as e:
        why = e.reason if isinstance(e, urllib.error.URLError) else e
        log.warning("notify: webhook %s failed: %s", host, why)
    return False


def _records(ws: Workspace, ids: Iterable[str]) -> list[RunRecord]:
    wanted = list(dict.fromkeys(ids))
    by_id = {r.id: r for r in ws.list_runs()}
    return [by_id[i] for i in wanted if i in by_id]


def _waits_at_rung(rec: RunRecord) -> bool:
    """A budgeted sweep's run paused at a rung until the runner promotes or stops it (``[sweep.budget]``)."""
    return rec.status == RunStatus.PAUSED and (rec.reason or "").startswith("paused at rung")
