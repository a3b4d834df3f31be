"""The Textual app: screen navigation and the actions on runs.

Orchestration only. :class:`~tltui.tui.ticker.Ticker` decides when the runs are read
and redrawn; a redraw hands the runs that changed to every screen on the stack that
shows runs (a :class:`~tltui.tui.screens.base.RunsView`, ``runs_changed``), and the run
actions apply to the topmost one's ``target_ids``. The first frame is drawn before the
background summaries start, and screens other than the home screen are imported
on first use (start-up time). Blocking work (queue operations, deletes, summaries) runs in thread
workers; :meth:`TltuiApp.on_worker_state_changed` is the one place that turns
their failures into notifications. Closing the app never touches a run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from tltui.core.errors import PresetError, one_line
from tltui.core.status import RunStatus
from tltui.core.workspace import ACTIVE, RESUMABLE, Workspace
from tltui.tui import gc_pause, notify_watch
from tltui.tui.keys import KeyCommands
from tltui.tui.screens.base import RunsView
from tltui.tui.screens.runs import RunsScreen
from tltui.tui.store import Clock, RunStore, load_summary
from tltui.tui.ticker import Ticker

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

    from tltui.tui.screens.presets import PresetsScreen

SUMMARY_BATCH = 25
#: the background summaries wait for the first frame (at most this long)
FIRST_FRAME_WAIT = 2.0


class TltuiApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "tltui"
    #: Textual's commands, then every key of the screen on top and of the app, as the help lists
    #: them: a screen's bindings are in the palette with nothing to add
    COMMANDS = App.COMMANDS | {KeyCommands}
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(
        self, ws: Workspace, *, clock: Clock = time.time, open_preset: str | Path | None = None, background: bool = True
    ) -> None:
        super().__init__()
        self.ws = ws
        self.store = RunStore(ws, clock)
        self.store.refresh()
        self.open_preset = Path(open_preset) if open_preset else None
        self.background = background
        self.ticker = Ticker(self, self.store, redraw=self._runs_changed, min_interval=self._redraw_floor)
        self._first_frame = threading.Event()

    def get_default_screen(self) -> Screen:
        return RunsScreen()

    def on_mount(self) -> None:
        # tltui.core.settings brings pydantic (a tenth of the start-up): before the first frame
        # only when there is a keymap to apply, and the [notify] watch starts after it
        if (self.ws.root / "keymap.toml").exists():
            from tltui.core.settings import load_keymap

            try:
                self.set_keymap(load_keymap(self.ws))  # WORKSPACE/keymap.toml
            except PresetError as e:  # every bad line, each naming its file, line and binding; no remaps
                self.notify("\n".join(e.lines()), title="keymap.toml", severity="warning", timeout=10)
        self.ticker.start()
        # [notify]: the bell and a toast when the runner notifies
        self.call_after_refresh(notify_watch.watch, self, self.ws)
        self.call_after_refresh(self._first_frame.set)
        if self.background:
            self._load_summaries(self.store.unloaded_final())
        if self.open_preset is not None:
            self.action_queue_preset()

    # ------------------------------------------------------------ redraws (the ticker decides when)

    def redraw_now(self) -> None:
        """Hand the runs that changed since the last redraw to the screens, whatever the interval."""
        self.ticker.redraw_now()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification is plain text: they carry run names (``s[seed=1]``), paths and error lines,
        whose brackets markup would eat (or fail on: ``[/x]``); none of tltui's uses markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def refresh_now(self) -> None:
        """Re-read the registry now (after an action) instead of at the next tick."""
        self.ticker.refresh_now()

    def _runs_changed(self, ids: set[str], structural: bool) -> None:
        for screen in list(self.screen_stack):
            if isinstance(screen, RunsView):
                screen.runs_changed(ids, structural)

    def _redraw_floor(self) -> float | None:
        """The interval the screen on top asks for (``None``: no screen yet)."""
        if not self.screen_stack:
            return None
        screen = self.screen
        return screen.redraw_seconds if isinstance(screen, RunsView) else 0.0

    # ------------------------------------------------------------ background summaries

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
        # the run screen's modules (plotext, its widgets): imported now, not when Enter is pressed
        import tltui.tui.screens.run  # noqa: F401

    def _install(self, batch: list[tuple[str, Any, Any]]) -> None:
        self.ticker.changed([rid for rid, state, tail in batch if self.store.install(rid, state, tail)])

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
            self.notify(one_line(worker.error), title="failed", severity="error", timeout=8)
        elif event.state == WorkerState.SUCCESS and worker.group == "actions":
            if worker.result:
                self.notify(str(worker.result))
            self.refresh_now()

    # ------------------------------------------------------------ targets

    def target_ids(self) -> list[str]:
        """The runs the actions apply to: those of the topmost screen that shows runs."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, RunsView):
                return list(screen.target_ids())
        return []

    def _status(self, rid: str) -> str:
        rec = self.store.record(rid)
        return rec.status if rec else "deleted"

    # ------------------------------------------------------------ actions

    def open_run(self, run_id: str) -> None:
        if self.store.record(run_id) is not None:
            from tltui.tui.screens.run import RunScreen

            gc_pause.hold()  # the screen resumes it once drawn
            self.push_screen(RunScreen(run_id))

    def action_open_run(self, run_id: str) -> None:
        """Open ``run_id``'s screen (for screens that show runs of their own, e.g. the sweep's)."""
        self.open_run(run_id)

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
        from tltui.tui.screens.help import HelpScreen

        self.push_screen(HelpScreen.of(self.screen))

    def action_queue_preset(self) -> None:
        from tltui.core.preflight import refuse_unrunnable
        from tltui.core.presets import discover_presets, shipped_presets_dir
        from tltui.tui.screens.preset_picker import Picked, PresetPicker

        choices = discover_presets([("workspace", self.ws.presets_dir), ("shipped", shipped_presets_dir())])
        extra = self.open_preset
        if extra is not None and all(c.path.resolve() != extra.resolve() for c in choices):
            choices = discover_presets([("demo", extra.parent)]) + choices
            choices = [c for c in choices if c.origin != "demo" or c.path.resolve() == extra.resolve()]
        self.open_preset = None
        choices = refuse_unrunnable(choices, self.ws)  # what `tltui check` refuses (a missing folder, ...)

        def picked(choice: Picked | None) -> None:
            if choice is not None:
                self.queue(*choice)

        self.push_screen(PresetPicker(choices, highlight=extra, ws=self.ws), picked)

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

        from tltui.tui.screens.confirm import ConfirmDialog

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._blocking("cancel", op)

        running = [rid for rid in ids if self._status(rid) == RunStatus.RUNNING]
        what = " (a running run stops at its next batch and keeps its checkpoints; r resumes it)" if running else ""
        self.push_screen(ConfirmDialog(f"Cancel {_ids(ids)}?{what}", yes="Cancel", no="Keep"), confirmed)

    def action_resume(self) -> None:
        ids = [rid for rid in self.target_ids() if self._status(rid) in RESUMABLE]
        if not ids:
            self.notify(
                "nothing to resume: only failed, cancelled, interrupted or paused runs resume", severity="warning"
            )
            return

        def op(ws: Workspace) -> str:
            from tltui.client import queue_ops

            for rid in ids:
                queue_ops.resume(ws, rid)
            return f"resumed (queued again): {_ids(ids)}"

        self._blocking("resume", op)

    def action_delete(self) -> None:
        ids = self.target_ids()
        running = [rid for rid in ids if self._status(rid) == RunStatus.RUNNING]
        if running:
            self.notify(f"{_ids(running)} running: cancel first (x), then delete", severity="warning")
            return
        if not ids:
            return
        from tltui.tui.screens.confirm import ConfirmDialog

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._blocking("delete", lambda ws: _delete(ws, ids))

        self.push_screen(ConfirmDialog(f"Delete {_ids(ids)} and all their files?", yes="Delete"), confirmed)

    def action_presets(self) -> None:
        from tltui.tui.screens.presets import PresetsScreen

        self.push_screen(PresetsScreen(workspace=self.ws))

    def action_freeze_map(self) -> None:
        from tltui.tui.screens.freeze_map import FreezeMapScreen

        ids = self.target_ids()
        self.push_screen(FreezeMapScreen(run_id=ids[0] if ids else None, workspace=self.ws))

    def action_inference(self) -> None:
        from tltui.tui.screens.inference import InferenceScreen

        ids = [rid for rid in self.target_ids() if self._status(rid) == RunStatus.COMPLETED]
        self.push_screen(InferenceScreen(run_id=ids[0] if ids else None, workspace=self.ws))

    def action_sweep(self) -> None:
        from tltui.tui.screens.sweep import SweepScreen

        ids = self.target_ids()
        if not ids:
            self.notify(
                "no run selected: the sweep view shows the sweep of the run under the cursor", severity="warning"
            )
            return
        self.push_screen(SweepScreen(ids[0], workspace=self.ws))

    def action_toggle_gpu(self) -> None:
        from tltui.tui.widgets.gpu_pane import GpuPane

        screen = self.screen
        panes = screen.query(GpuPane)
        if panes:
            panes.remove()
            return
        footers = screen.query(Footer)
        screen.mount(GpuPane(workspace=self.ws), before=footers.first() if footers else None)

    def on_presets_screen_queued(self, _message: PresetsScreen.Queued) -> None:
        self.refresh_now()  # the new runs show now, not at the next registry read


def _ids(ids: Iterable[str]) -> str:
    ids = list(ids)
    return ", ".join(ids) if len(ids) <= 4 else f"{', '.join(ids[:3])} and {len(ids) - 3} more"


def _delete(ws: Workspace, ids: list[str]) -> str:
    for rid in ids:
        ws.delete(rid)
    return f"deleted {_ids(ids)}"


def run_app(ws: Workspace, *, open_preset: str | Path | None = None) -> None:
    """Open the app on ``ws``; with ``open_preset``, start on the queue dialog with that preset."""
    from tltui.core.settings import Settings
    from tltui.tui import image_renderer
    from tltui.tui.signals import close_on_signals

    # read once, before the terminal changes: a bad settings.toml (or TLTUI_IMAGES) is a PresetError,
    # which the CLI prints, one line per problem, instead of opening the app
    settings = Settings.load(ws)
    image_renderer.setup(settings.ui.images)  # asks the terminal now: once Textual reads stdin it cannot
    app = TltuiApp(ws, open_preset=open_preset)
    close_on_signals(app)  # SIGTERM / SIGHUP: close cleanly (terminal restored), runs unaffected
    app.run()
