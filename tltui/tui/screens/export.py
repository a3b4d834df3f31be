"""The export dialog of a completed run: pick a format and a quantization, export, read the figures.

The export worker runs in its own process (:class:`tltui.client.export.ExportJob`; TensorFlow and the
converters live there) and a thread here hands its records to the UI one at a time: the step and a
progress bar while it converts and verifies, then what the artifact measured against the Keras model
on the run's own splits (green when within ``max drop``, red when kept and marked as over it), or
the one line that says why nothing was exported. Dismisses with the :class:`ExportResult` (or ``None``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, ProgressBar, Select, Static
from textual.worker import get_current_worker

from tltui.client.export import ExportError, ExportNote, ExportProgress, ExportResult, result_lines
from tltui.core import exports
from tltui.core.errors import one_line

#: ``source(run_dir, format, quantize, max_drop) -> records``; the default runs the export worker.
Source = Callable[[Path, str, str | None, float], Iterable[Any]]

NO_QUANTIZATION = "none"
DEFAULT_FORMAT = "litert"


def quantize_options(fmt: str) -> list[tuple[str, str]]:
    """The quantize choices of a format, "no quantization" first."""
    return [("no quantization", NO_QUANTIZATION), *((q, q) for q in exports.QUANTIZE_BY_FORMAT[fmt])]


def default_source(run_dir: Path, fmt: str, quantize: str | None, max_drop: float) -> Iterable[Any]:
    from tltui.client.export import ExportJob

    return ExportJob(run_dir, fmt, quantize, max_drop=max_drop)


class ExportDialog(ModalScreen[ExportResult | None]):
    """Export run ``run_id`` (its folder ``run_dir``); ``ctrl+r`` starts, ``escape`` stops or closes."""

    DEFAULT_CSS = """
    ExportDialog { align: center middle; }
    ExportDialog > #export-box {
        width: 110; max-width: 95%; height: auto; max-height: 90%; padding: 1 2;
        border: thick $primary; background: $surface;
    }
    ExportDialog #export-choices { height: auto; }
    ExportDialog #export-choices Select { width: 22; margin-right: 2; }
    ExportDialog #export-choices Input { width: 14; }
    ExportDialog #export-step { height: auto; margin-top: 1; }
    ExportDialog #export-bar { margin: 0 0 1 0; }
    ExportDialog #export-result { height: auto; }
    """

    BINDINGS = [
        Binding("ctrl+r", "start", "Export", id="export.start"),
        Binding("escape", "close", "Stop / close", id="export.close"),
    ]

    def __init__(self, run_id: str, run_dir: Path, *, source: Source | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.run_dir = run_dir
        self._source = source or default_source
        self._job: Any = None
        self.running = False
        self.result: ExportResult | None = None
        self.error: str | None = None
        self.notes: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box"):
            yield Label(f"Export {self.run_id}: a deployable model, verified against the run on its own images")
            with Horizontal(id="export-choices"):
                yield Select(
                    [(f, f) for f in exports.FORMATS],
                    value=DEFAULT_FORMAT,
                    allow_blank=False,
                    compact=True,
                    id="export-format",
                )
                yield Select(
                    quantize_options(DEFAULT_FORMAT),
                    value=NO_QUANTIZATION,
                    allow_blank=False,
                    compact=True,
                    id="export-quantize",
                )
                yield Input(f"{exports.DEFAULT_MAX_DROP:g}", placeholder="max drop", compact=True, id="export-max-drop")
            yield Static(
                "ctrl+r exports · max drop: points of top-1 the export may lose · esc closes", id="export-step"
            )
            yield ProgressBar(total=None, show_eta=False, id="export-bar")
            yield Static("", id="export-result")

    def on_mount(self) -> None:
        self.query_one("#export-bar", ProgressBar).display = False

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "export-format" and isinstance(event.value, str):
            select = self.query_one("#export-quantize", Select)
            select.set_options(quantize_options(event.value))
            select.value = NO_QUANTIZATION

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_start()

    # ------------------------------------------------------------ running

    def choice(self) -> tuple[str, str | None, float]:
        """The format, quantization and max drop chosen; :class:`ExportError` for a max drop that is no number."""
        fmt = str(self.query_one("#export-format", Select).value)
        q = self.query_one("#export-quantize", Select).value
        quantize = None if q in (NO_QUANTIZATION, Select.BLANK) else str(q)
        text = self.query_one("#export-max-drop", Input).value.strip()
        max_drop = exports.parse_max_drop(text)
        exports.check_combination(fmt, quantize)
        return fmt, quantize, max_drop

    def action_start(self) -> None:
        if self.running:
            return
        try:
            fmt, quantize, max_drop = self.choice()
        except ExportError as e:
            self._show_error(str(e))
            return
        self.running, self.result, self.error, self.notes = True, None, None, []
        self.query_one("#export-result", Static).update("")
        bar = self.query_one("#export-bar", ProgressBar)
        bar.update(total=None, progress=0)
        bar.display = True
        self._step(f"exporting {self.run_id} to {exports.variant(fmt, quantize)}: starting the export worker")
        self._run(fmt, quantize, max_drop)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def _run(self, fmt: str, quantize: str | None, max_drop: float) -> None:
        worker = get_current_worker()
        error: str | None = None
        job: Any = None
        try:
            job = self._job = self._source(self.run_dir, fmt, quantize, max_drop)
            for rec in job:
                if worker.is_cancelled:
                    break
                self.app.call_from_thread(self._take, rec)
        except ExportError as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001 - a broken source must end in a line here, not a crash
            error = one_line(e)
        finally:
            self._job = None
            close = getattr(job, "close", None)
            if callable(close):
                close()
        if not worker.is_cancelled:
            self.app.call_from_thread(self._finish, error)

    def _take(self, rec: Any) -> None:
        if not self.is_attached:
            return
        if isinstance(rec, ExportProgress):
            self._step(rec.message)
            bar = self.query_one("#export-bar", ProgressBar)
            bar.update(total=rec.total, progress=rec.done or 0)
        elif isinstance(rec, ExportNote):
            self.notes.append(f"{rec.level}: {rec.message}")
        elif isinstance(rec, ExportResult):
            self.result = rec

    def _finish(self, error: str | None) -> None:
        if not self.is_attached:
            return
        self.running = False
        self.query_one("#export-bar", ProgressBar).display = False
        if error is not None or self.result is None:
            self._show_error(error or "the export worker ended without a result")
            return
        result = self.result
        style = "green" if result.passed else "bold red"
        text = Text("\n".join(result_lines(result)), style=style)
        for note in self.notes:
            text.append("\n" + note, style="yellow")
        self.query_one("#export-result", Static).update(text)
        self._step("exported and verified" if result.passed else "exported, but over the threshold: kept and marked")
        self.notify(
            f"{self.run_id}: {exports.variant(result.format, result.quantize)} "
            + ("verified" if result.passed else "NOT verified"),
            severity="information" if result.passed else "error",
        )

    def _show_error(self, message: str) -> None:
        self.error = message
        self._step("nothing exported")
        self.query_one("#export-result", Static).update(Text(message, style="bold red"))

    def _step(self, message: str) -> None:
        self.query_one("#export-step", Static).update(Text(message))  # a path, not markup

    def action_close(self) -> None:
        """Stop a running export (the worker removes its temporary folder as it stops), else close."""
        if self.running:
            cancel = getattr(self._job, "cancel", None)
            if callable(cancel):
                cancel()
            self.workers.cancel_group(self, "export")
            self.running = False
            self.query_one("#export-bar", ProgressBar).display = False
            self._step("stopped; nothing exported")
            return
        self.dismiss(self.result)
