"""The Textual app: timers that feed the data layer, actions, and screen navigation.

Orchestration only. One tick drives everything: event tails (~10 Hz) and, every
tenth tick, the registry (~1 Hz). Tails and registry reads only collect the ids of
runs whose view changed and ask for a redraw, which hands those to every screen that
shows runs (``runs_changed``) at once, or at the first poll tick after the minimum
redraw interval when the last one was more recent; so new events reach the screen
within a poll or two and the drawing rate is bounded whatever the event rate.
Changes nobody reads at 10 Hz (batch events: a step counter and live metrics;
elapsed times) wait for a longer interval, which an epoch or status change cuts short. The first frame is drawn before the
background summaries start, and screens other than the home screen are imported
on first use (start-up time). Blocking work (queue operations, deletes, summaries) runs in thread
workers; :meth:`TltuiApp.on_worker_state_changed` is the one place that turns
their failures into notifications. Closing the app never touches a run.
"""

from __future__ import annotations

import asyncio
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from tltui.core.errors import PresetError
from tltui.tui.data import Clock, RunStore, load_summary
from tltui.tui.screens.runs import RunsScreen
from tltui.core.workspace import ACTIVE, RESUMABLE, Workspace, WorkspaceError

POLL_SECONDS = 0.1
REGISTRY_SECONDS = 1.0
#: at most one redraw per this interval; a screen may ask for a longer one (``redraw_seconds``)
REDRAW_SECONDS = 0.1
#: the interval when only batch events or clocks moved (half the app's CPU when runs stream)
BATCH_REDRAW_SECONDS = 0.5
REDRAW_SLACK = 0.02
SUMMARY_BATCH = 25
#: the background summaries wait for the first frame (at most this long)
FIRST_FRAME_WAIT = 2.0


def error_line(exc: BaseException) -> str:
    """One line for a failure a user may cause; never a traceback."""
    if isinstance(exc, PresetError) and exc.issues:
        return str(exc.issues[0])
    if isinstance(exc, ModuleNotFoundError):
        return f"{exc.name} is not available in this installation"
    if isinstance(exc, (WorkspaceError, OSError, ValueError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def load_keymap(path: Path) -> dict[str, str]:
    """``WORKSPACE/keymap.toml``: ``binding_id = "key"`` lines (missing file: no remaps)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: cannot read the keymap ({e}); fix or delete it") from None
    return {str(k): str(v) for k, v in raw.items() if isinstance(v, str)}


class TltuiApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "tltui"
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(self, ws: Workspace, *, clock: Clock = time.time, open_preset: str | Path | None = None,
                 background: bool = True) -> None:
        super().__init__()
        self.ws = ws
        self.store = RunStore(ws, clock)
        self.store.refresh()
        self.open_preset = Path(open_preset) if open_preset else None
        self.background = background
        self._dirty: set[str] = set()
        self._structural = False
        self._last_redraw = float("-inf")
        self._redraw_due = float("inf")  # when a rate-limited redraw is pending
        self._first_frame = threading.Event()

    def get_default_screen(self) -> Screen:
        return RunsScreen()

    def on_mount(self) -> None:
        try:
            self.set_keymap(load_keymap(self.ws.root / "keymap.toml"))
        except ValueError as e:
            self.notify(str(e), severity="warning")
        self._start_ticks()
        self.call_after_refresh(self._first_frame.set)
        if self.background:
            self._load_summaries(self.store.unloaded_final())
        if self.open_preset is not None:
            self.action_queue_preset()

    # ------------------------------------------------------------ data timers

    def _start_ticks(self) -> None:
        """Poll the tails every ``POLL_SECONDS`` and the registry every ``REGISTRY_SECONDS``.

        One plain asyncio ``call_at`` chain on the app's loop rather than two Textual
        timers: a Textual timer tick (a task, an event wait, a context switch into the
        callback) costs ~0.2 % of a core at 10 Hz on its own, a tenth of the idle budget.
        Errors end the app as a timer's would; the chain stops when the app does.
        """
        loop = asyncio.get_running_loop()
        every = max(1, round(REGISTRY_SECONDS / POLL_SECONDS))
        count = 0
        due = loop.time() + POLL_SECONDS

        def tick() -> None:
            nonlocal count, due
            if not self.is_running:
                return
            count += 1
            try:
                self._poll()
                if count % every == 0:
                    self._tick_registry()
            except Exception as e:  # noqa: BLE001 - the app's own error path, as for a timer
                self._handle_exception(e)
                return
            # a fixed schedule (work inside a tick, e.g. a chart rebuild, does not stretch the
            # period); after a stall, skip the missed ticks rather than run them back to back
            due += POLL_SECONDS
            now = loop.time()
            if due < now:
                due = now + POLL_SECONDS
            loop.call_at(due, tick)

        loop.call_at(due, tick)

    def _poll(self) -> None:
        changed, urgent = self.store.poll()
        self._dirty |= changed
        # also the tick that carries out a redraw deferred by the rate limit
        self._request_redraw(urgent=bool(urgent))

    def _tick_registry(self, force: bool = False) -> None:
        before = set(self.store.ids)
        changed = self.store.refresh(force)
        self._dirty |= changed
        ids = set(self.store.ids)
        if ids != before:
            self._structural = True
        # running rows show elapsed time, which moves without events
        self._dirty |= {rid for rid in ids if (rec := self.store.record(rid)) and rec.status == "running"}
        self._request_redraw(urgent=bool(changed) or self._structural)

    def _request_redraw(self, urgent: bool = True) -> None:
        """Redraw now if the minimum interval since the last redraw has passed
        (``REDRAW_SECONDS``, or ``BATCH_REDRAW_SECONDS`` when nothing ``urgent`` changed);
        else the first poll tick after that does. No timer per redraw: creating one costs
        more than the redraw it schedules."""
        if not self._dirty and not self._structural:
            return
        if self.screen_stack:
            base = REDRAW_SECONDS if urgent else BATCH_REDRAW_SECONDS
            interval = max(base, getattr(self.screen, "redraw_seconds", 0.0))
        else:
            interval = 0.0
        self._redraw_due = min(self._redraw_due, self._last_redraw + interval)
        if self._redraw_due - time.monotonic() <= REDRAW_SLACK:  # a tick a little early still counts
            self.redraw_now()

    def redraw_now(self) -> None:
        """Hand the runs that changed since the last redraw to every screen that shows runs."""
        if not self.is_running or (not self._dirty and not self._structural):
            return  # is_running: shutdown prunes screens while timers may still fire
        self._last_redraw = time.monotonic()
        self._redraw_due = float("inf")
        ids, structural = self._dirty, self._structural
        self._dirty, self._structural = set(), False
        for screen in list(self.screen_stack):
            runs_changed = getattr(screen, "runs_changed", None)
            if runs_changed is not None:
                runs_changed(ids, structural)

    def refresh_now(self) -> None:
        """Re-read the registry now (after an action) instead of at the next tick."""
        self._tick_registry(force=True)
        self.redraw_now()

    @work(thread=True, group="summaries", exit_on_error=False)
    def _load_summaries(self, ids: list[str]) -> None:
        worker = get_current_worker()
        # the table needs only the registry: draw it first, then compete for the GIL
        self._first_frame.wait(FIRST_FRAME_WAIT)
        for i in range(0, len(ids), SUMMARY_BATCH):
            if worker.is_cancelled:
                return
            batch = [(rid, *load_summary(self.ws.run_paths(rid).events)) for rid in ids[i : i + SUMMARY_BATCH]]
            self.call_from_thread(self._install, batch)

    def _install(self, batch: list[tuple[str, Any, Any]]) -> None:
        for rid, state, tail in batch:
            if self.store.install(rid, state, tail):
                self._dirty.add(rid)
        self._request_redraw()

    # ------------------------------------------------------------ workers: one error path

    @work(thread=True, group="actions", exit_on_error=False)
    def _blocking(self, label: str, fn: Callable[[Workspace], str]) -> str:
        # a connection per thread: SQLite transactions must not interleave on one connection
        ws = Workspace(self.ws.root)
        try:
            return fn(ws)
        finally:
            ws.close()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group not in ("actions", "summaries"):
            return
        if event.state == WorkerState.ERROR and worker.error is not None:
            self.notify(error_line(worker.error), title="failed", severity="error", timeout=8)
        elif event.state == WorkerState.SUCCESS and worker.group == "actions":
            if worker.result:
                self.notify(str(worker.result))
            self.refresh_now()

    # ------------------------------------------------------------ targets

    def target_ids(self) -> list[str]:
        for screen in reversed(self.screen_stack):
            targets = getattr(screen, "target_ids", None)
            if targets is not None:
                return list(targets())
        return []

    def _status(self, rid: str) -> str:
        rec = self.store.record(rid)
        return rec.status if rec else "deleted"

    # ------------------------------------------------------------ actions

    def open_run(self, run_id: str) -> None:
        if self.store.record(run_id) is not None:
            from tltui.tui.screens.run import RunScreen

            self.push_screen(RunScreen(run_id))

    def action_open(self) -> None:
        ids = self.target_ids()
        if ids:
            self.open_run(ids[0])

    def action_compare(self) -> None:
        ids = self.target_ids()
        if not ids:
            self.notify("no runs to compare", severity="warning")
            return
        if len(ids) == 1:
            self.notify("tip: select runs with space to compare several", timeout=3)
        from tltui.tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(ids))

    def action_help(self) -> None:
        from tltui.tui.screens.compare import CompareScreen
        from tltui.tui.screens.help import HelpScreen
        from tltui.tui.screens.run import RunScreen

        sections = [
            ("Runs (home)", RunsScreen.BINDINGS),
            ("Run (live)", RunScreen.BINDINGS),
            ("Compare", CompareScreen.BINDINGS),
            ("Everywhere", [*self.BINDINGS, Binding("ctrl+p", "command_palette", "Command palette")]),
        ]
        self.push_screen(HelpScreen(sections))

    def action_queue_preset(self) -> None:
        from tltui.core.presets import shipped_presets_dir
        from tltui.tui.screens.dialogs import PresetPicker, discover_presets

        choices = discover_presets([("workspace", self.ws.presets_dir), ("shipped", shipped_presets_dir())])
        extra = self.open_preset
        if extra is not None and all(c.path.resolve() != extra.resolve() for c in choices):
            choices = discover_presets([("demo", extra.parent)]) + choices
            choices = [c for c in choices if c.origin != "demo" or c.path.resolve() == extra.resolve()]
        self.open_preset = None

        def picked(path: Path | None) -> None:
            if path is not None:
                self.queue(path)

        self.push_screen(PresetPicker(choices, highlight=extra), picked)

    def queue(self, preset_path: Path, overrides: dict[str, Any] | None = None) -> None:
        """Queue a preset (a sweep queues one run per combination); ``queue_ops`` starts the runner."""

        def op(ws: Workspace) -> str:
            from tltui.client import queue_ops

            warnings: list[str] = []
            recs = queue_ops.add(ws, preset_path, dict(overrides or {}), warn=warnings.append)
            done = f"queued {len(recs)} run{'s' if len(recs) != 1 else ''}: {_ids(r.id for r in recs)}"
            return "\n".join([done, *(f"warning: {w}" for w in warnings)])

        self._blocking(f"queue {preset_path.name}", op)

    def action_cancel(self) -> None:
        ids = [rid for rid in self.target_ids() if self._status(rid) in ACTIVE]
        if not ids:
            self.notify("nothing to cancel: only queued or running runs can be cancelled", severity="warning")
            return

        def op(ws: Workspace) -> str:
            from tltui.client import queue_ops

            for rid in ids:
                queue_ops.cancel(ws, rid)
            return f"cancel requested: {_ids(ids)}"

        self._blocking("cancel", op)

    def action_resume(self) -> None:
        ids = [rid for rid in self.target_ids() if self._status(rid) in RESUMABLE]
        if not ids:
            self.notify("nothing to resume: only failed, cancelled or interrupted runs resume", severity="warning")
            return

        def op(ws: Workspace) -> str:
            from tltui.client import queue_ops

            for rid in ids:
                queue_ops.resume(ws, rid)
            return f"resumed (queued again): {_ids(ids)}"

        self._blocking("resume", op)

    def action_delete(self) -> None:
        ids = self.target_ids()
        running = [rid for rid in ids if self._status(rid) == "running"]
        if running:
            self.notify(f"{_ids(running)} running: cancel first (x), then delete", severity="warning")
            return
        if not ids:
            return
        from tltui.tui.screens.dialogs import ConfirmDialog

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._blocking("delete", lambda ws: _delete(ws, ids))

        self.push_screen(ConfirmDialog(f"Delete {_ids(ids)} and all their files?", yes="Delete"), confirmed)

    def action_presets(self) -> None:
        self._push_optional("tltui.tui.screens.presets", "PresetsScreen")

    def action_freeze_map(self) -> None:
        ids = self.target_ids()
        self._push_optional("tltui.tui.screens.freeze_map", "FreezeMapScreen", run_id=ids[0] if ids else None)

    def action_inference(self) -> None:
        ids = [rid for rid in self.target_ids() if self._status(rid) == "completed"]
        self._push_optional("tltui.tui.screens.inference", "InferenceScreen", run_id=ids[0] if ids else None)

    def _push_optional(self, module: str, name: str, **kwargs: Any) -> None:
        """Screens built separately load lazily; a missing one is a notification, not a crash."""
        import importlib

        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            self.notify(f"{name} is not available: {error_line(e)}", severity="error")
            return
        self.push_screen(cls(**kwargs))

    def action_toggle_gpu(self) -> None:
        try:
            from tltui.tui.widgets.gpu_pane import GpuPane
        except ImportError as e:
            self.notify(f"GPU pane is not available: {error_line(e)}", severity="error")
            return
        screen = self.screen
        panes = screen.query(GpuPane)
        if panes:
            panes.remove()
            return
        footers = screen.query(Footer)
        screen.mount(GpuPane(), before=footers.first() if footers else None)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        commands = (
            ("Queue a preset", "Pick a shipped or workspace preset and queue its runs", self.action_queue_preset),
            ("Open run", "Live charts, freeze map, preset and log of the run", self.action_open),
            ("Compare runs", "Overlay the selected runs' curves; results table; CSV export", self.action_compare),
            ("Cancel runs", "Cancel the selected queued or running runs", self.action_cancel),
            ("Resume runs", "Queue failed, cancelled or interrupted runs again", self.action_resume),
            ("Delete runs", "Delete the selected runs and their files", self.action_delete),
            ("Presets", "Browse and edit presets", self.action_presets),
            ("Freeze map", "What trains and what is frozen, layer by layer", self.action_freeze_map),
            ("Inference", "Classify a folder of images with a finished run", self.action_inference),
            ("GPU pane", "Show or hide GPU (or CPU) utilisation", self.action_toggle_gpu),
            ("Keys", "Every key of every screen", self.action_help),
        )
        for title, help_text, callback in commands:
            yield SystemCommand(title, help_text, callback)


def _ids(ids: Iterable[str]) -> str:
    ids = list(ids)
    return ", ".join(ids) if len(ids) <= 4 else f"{', '.join(ids[:3])} and {len(ids) - 3} more"


def _delete(ws: Workspace, ids: list[str]) -> str:
    for rid in ids:
        ws.delete(rid)
    return f"deleted {_ids(ids)}"


def run_app(ws: Workspace, *, open_preset: str | Path | None = None) -> None:
    """Open the app on ``ws``; with ``open_preset``, start on the queue dialog with that preset."""
    from tltui.tui import image_renderer
    from tltui.tui.signals import close_on_signals
    from tltui.core.workspace import settings_table

    try:
        setting = str(settings_table(ws.root, "ui").get("images", "auto"))
    except Exception:  # noqa: BLE001 - a broken settings file is reported where it matters; images fall back
        setting = "auto"
    image_renderer.setup(setting)  # asks the terminal now: once Textual reads stdin it cannot
    app = TltuiApp(ws, open_preset=open_preset)
    close_on_signals(app)  # SIGTERM / SIGHUP: close cleanly (terminal restored), runs unaffected
    app.run()
