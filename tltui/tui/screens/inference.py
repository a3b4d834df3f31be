"""The inference screen: classify a folder of images with a completed run.

Pick a run and a folder (typed, or browsed with a directory tree); the predict
worker runs in its own process (:class:`tltui.client.predict.PredictJob`) and a
thread here hands its records to the UI a batch at a time, so results fill in
as batches finish. The selected image is drawn in the terminal with its top-5
as bars. Filters show only misclassified (labelled folders) or skipped files;
``e`` exports the predictions as CSV next to the run. Images go through the training data's
native size when it is smaller than the model's input, as the training images did (``f``: full
resolution); the status says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, DirectoryTree, Input, Select, Static
from textual.worker import get_current_worker

from tltui.client.predict import PredictError, PredictionRow, PredictReport, PredictStarted, Progress, Skipped
from tltui.core.errors import one_line
from tltui.core.protocol import top_k_na
from tltui.core.status import RunStatus
from tltui.core.workspace import Workspace, atomic_write
from tltui.tui.widgets.key_footer import KeyFooter
from tltui.tui.widgets.thumbnail import Thumbnail

#: ``source(run_dir, folder, low_res) -> records``; the default runs the predict worker. ``low_res``:
#: ``None`` as the training images were (the worker decides), ``False`` full resolution.
Source = Callable[[Path, Path, bool | None], Iterable[Any]]

#: Records handed to the UI at once at most (a Progress record also flushes).
FLUSH_EVERY = 64


#: ``cam_source(run_dir, image, out_file, low_res) -> out_file``: the Grad-CAM overlay of one image's
#: top-1 class, written to ``out_file``, with the images at the resolution they were classified at.
#: The default keeps a worker per run while the screen is open, started (``warm``) once a run's predictions show
#: (:class:`~tltui.client.cam_server.CamServers`); a source with a ``close()`` is closed with the screen.
CamSource = Callable[[Path, Path, Path, bool | None], str]


def default_source(run_dir: Path, folder: Path, low_res: bool | None = None) -> Iterable[Any]:
    from tltui.client.predict import PredictJob

    return PredictJob(run_dir, folder, top_k=5, low_res=low_res)


def cam_file(cams_dir: Path, run_id: str, folder: Path, rel: str, low_res: bool) -> Path:
    """Where the screen keeps one image's Grad-CAM: per run, per classified folder and resolution,
    at the image's path relative to that folder. ``a/01.png`` and ``b/01.png``, the same name in
    two folders, and one image under two runs never share an overlay."""
    digest = hashlib.sha256(f"{Path(folder).absolute()}\0{low_res}".encode()).hexdigest()[:12]
    return cams_dir / run_id / digest / f"{rel}.cam.png"


#: Classes up to which the confusion panel draws the whole matrix (beyond: the top pairs only).
MAX_MATRIX = 12


def _short(label: str, labels: list[str], width: int = 6) -> str:
    """A column header of ``width`` cells that tells ``label`` apart from the others: its start, or its start
    and end when another label starts the same (``maple_tree``, ``maple_leaf``: ``map…ee``, ``map…af``)."""
    if len(label) <= width or not any(o != label and o[:width] == label[:width] for o in labels):
        return label[:width]
    half = (width - 1) // 2
    return f"{label[: width - 1 - half]}…{label[-half:]}"


def confusion_view(score: Any, width: int = 80, note: str | None = None) -> Any:
    """The confusion panel: a heat matrix (rows true, columns predicted; up to :data:`MAX_MATRIX`
    classes), the most confused pairs and the lowest per-class accuracies. ``note``: why a folder
    is not labelled (:meth:`~tltui.client.predict.PredictReport.label_note`)."""
    from rich.console import Group
    from rich.table import Table

    if score is None or not score.total:
        return Text(f"no labels: {note or 'the folder needs one subfolder per class of the run'}", style="dim")
    parts: list[Any] = [
        Text.assemble(
            ("accuracy ", "dim"), (f"{100 * score.accuracy:.1f}%", "bold"), f" of {score.total} labelled images"
        )
    ]
    conf = score.confusion()
    labels = conf["labels"]
    if len(labels) <= MAX_MATRIX:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
        table.add_column("true \\ pred", no_wrap=True)
        for lbl in labels:
            table.add_column(Text(_short(lbl, labels)), justify="right", no_wrap=True)
        for lbl, row in zip(labels, conf["matrix"], strict=True):
            n = sum(row) or 1
            cells = []
            for j, k in enumerate(row):
                share = k / n
                if k == 0:
                    cells.append(Text("·", style="dim"))
                    continue
                diag = labels[j] == lbl
                level = int(55 + 200 * share)
                bg = f"rgb(0,{level // 2},{level // 3})" if diag else f"rgb({level},{level // 5},0)"
                cells.append(Text(str(k), style=f"bold white on {bg}"))
            table.add_row(Text(lbl[:16]), *cells)
        parts.append(table)
    else:
        parts.append(
            Text(
                f"{len(labels)} classes: the whole matrix is in the CSV/JSON (tltui predict "
                "--confusion-csv); the most confused pairs:",
                style="dim",
            )
        )
    worst = sorted(score.per_class(), key=lambda r: (r["accuracy"], r["label"]))[:5]
    if worst:
        parts.append(
            Text(
                "lowest per-class accuracy: "
                + ", ".join(f"{r['label']} {100 * r['accuracy']:.0f}% ({r['correct']}/{r['images']})" for r in worst),
                style="dim",
            )
        )
    if score.confused_pairs(1):
        parts.append(Text("most confused (true → predicted); Enter shows a pair's images:", style="bold"))
    return Group(*parts)


#: the results table's columns that keep their width (key, label, cells); file and top-1 share the rest
FIXED_COLUMNS = (("prob", "prob", 6), ("ok", "", 4))
VS_WIDTH = 16


def table_columns(width: int, vs: str | None = None) -> list[tuple[str, str, int]]:
    """The results table's columns for a table ``width`` cells wide: the probability, its mark and
    a second run's column (``vs``: its id) keep their width, so they are never the ones cut; the
    file and top-1 columns share what is left (3:2), within bounds."""
    fixed = [*FIXED_COLUMNS, *((("vs", f"vs {vs}", VS_WIDTH),) if vs else ())]
    padding = 2 * (len(fixed) + 2)  # DataTable pads each cell by one each side
    spare = width - 2 - padding - sum(w for *_, w in fixed)  # 2: the vertical scrollbar
    file_w = max(12, min(60, spare * 3 // 5))
    label_w = max(8, min(30, spare - file_w))
    return [("file", "file", file_w), ("label", "top-1", label_w), *fixed]


def topk_bars(row: PredictionRow | Skipped | None, width: int) -> Text:
    """The top-k of one prediction as labelled bars (or why a file was skipped)."""
    if row is None:
        return Text("select an image", style="dim")
    if isinstance(row, Skipped):
        return Text(f"skipped: {row.reason}", style="yellow")
    t = Text(no_wrap=True, overflow="ellipsis")
    if row.true_label is not None:
        ok = row.correct
        t.append(f"true: {row.true_label} ", style="bold")
        t.append("✓\n" if ok else "✗\n", style="green" if ok else "red")
    label_w = max(6, min(16, max(len(lbl) for lbl, _ in row.top_k)))
    bar_w = max(4, width - label_w - 8)
    for i, (label, prob) in enumerate(row.top_k[:5]):
        cells = prob * bar_w
        full = int(cells)
        part = " ▏▎▍▌▋▊▉"[int((cells - full) * 8)] if full < bar_w else ""
        hit = row.true_label is not None and label == row.true_label
        style = "green" if hit else ("bold" if i == 0 else "")
        t.append(f"{label[:label_w]:<{label_w}} ", style=style)
        t.append(("█" * full + part.strip()).ljust(bar_w), style="cyan" if i == 0 else "blue")
        t.append(f" {100 * prob:5.1f}%")
        if i < min(5, len(row.top_k)) - 1:
            t.append("\n")
    return t


class FolderInput(Input):
    """The folder field. A path started in the results (:meth:`InferenceScreen.on_key`) arrives
    with its first character and the cursor after it: not selected, so the next key adds to it."""

    def start_path(self, first: str) -> None:
        """Focus the field holding ``first``, the cursor after it (this focus selects nothing)."""
        self.select_on_focus = False
        self.value = first
        self.cursor_position = len(first)
        self.focus()

    def on_focus(self) -> None:
        if not self.select_on_focus:  # later focuses (tab) select the path again, as before
            self.call_later(setattr, self, "select_on_focus", True)


class InferenceScreen(Screen[None]):
    """Classify a folder with a completed run and browse the results."""

    DEFAULT_CSS = """
    InferenceScreen { layout: vertical; }
    InferenceScreen #inf-controls { height: 1; margin: 0 1; }
    InferenceScreen #inf-run { width: 32; margin-right: 1; }
    InferenceScreen #inf-against { width: 24; margin-right: 1; }
    InferenceScreen #inf-folder { width: 1fr; }
    InferenceScreen #inf-status { height: auto; max-height: 2; padding: 0 1; background: $boost;
                                  text-wrap: nowrap; text-overflow: ellipsis; }
    InferenceScreen #inf-status.-error { color: $error; }
    InferenceScreen #inf-body { height: 1fr; }
    InferenceScreen #inf-browser { width: 32; display: none; border-right: vkey $primary 40%; }
    InferenceScreen.-browsing #inf-browser { display: block; }
    InferenceScreen #inf-table { width: 3fr; }
    InferenceScreen #inf-preview { width: 2fr; min-width: 30; padding: 0 1; border-left: vkey $primary 40%; }
    InferenceScreen #inf-thumb { height: 1fr; }
    InferenceScreen #inf-topk { height: auto; max-height: 12; }
    InferenceScreen #inf-confusion { display: none; width: 2fr; min-width: 30; padding: 0 1;
                                     border-left: vkey $primary 40%; }
    InferenceScreen.-confusion #inf-confusion { display: block; }
    InferenceScreen.-confusion #inf-preview { display: none; }
    InferenceScreen #inf-matrix { height: auto; }
    InferenceScreen #inf-pairs { height: 1fr; }
    """

    BINDINGS = [
        Binding("ctrl+r", "start", "Classify", id="inference.start"),
        Binding("ctrl+o", "browse", "Browse", id="inference.browse"),
        Binding("m", "filter('misclassified')", "Misclassified", id="inference.misclassified"),
        Binding("c", "confusion", "Confusions", id="inference.confusion"),
        Binding("g", "cam", "Grad-CAM", id="inference.cam"),
        Binding("f", "full_res", "Full resolution", show=False, id="inference.full_res"),
        Binding("s", "filter('skipped')", "Skipped", id="inference.skipped"),
        Binding("d", "filter('disagree')", "Disagree", id="inference.disagree"),
        Binding("e", "export", "Export CSV", id="inference.export"),
        Binding("x", "stop", "Stop", id="inference.stop"),
        Binding("escape", "close", "Back", id="inference.back"),
        # from the folder field (which keeps the focus after Enter): into the results
        # (shown only then: the table's own down key hides it)
        Binding("down", "results", "Results", key_display="↓", id="inference.results"),
    ]
    #: the footer's keys hidden first when the terminal is narrow (by action): Classify, Browse, Back, ? and q stay
    FOOTER_DROP = (
        "stop",
        "full_res",
        "export",
        "filter('disagree')",
        "filter('skipped')",
        "confusion",
        "filter('misclassified')",
        "cam",
    )

    def __init__(
        self,
        run_id: str | None = None,
        *,
        workspace: Workspace,
        source: Source | None = None,
        folder: str | None = None,
        cam_source: CamSource | None = None,
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.workspace = workspace
        self._source = source or default_source
        if cam_source is None:
            from tltui.client.cam_server import CamServers

            cam_source = CamServers()
        self._cam_source = cam_source
        self.pair: tuple[str, str] | None = None  # the confused pair whose images the table shows
        self.against: PredictReport | None = None  # the second run's predictions, side by side
        self._rows_of: dict[str, int] = {}  # image path -> index in self.items
        self.b_rows: dict[str, PredictionRow] = {}  # the second run's predictions by image path
        # (run id, path relative to the classified folder) -> its Grad-CAM overlay (None: failed)
        self.cams: dict[tuple[str, str], str | None] = {}
        self.showing_cam = False
        self.warmed: tuple[str, bool | None] | None = None  # (run id, low_res) whose Grad-CAM worker is warm
        self.full_res = False  # True: images resized straight to the model's input (f)
        self._initial_folder = folder or ""
        self.items: list[PredictionRow | Skipped] = []
        self.report: PredictReport | None = None
        self.started: PredictStarted | None = None
        self.progress: Progress | None = None
        self.filter = "all"
        self.running = False
        self._job: Any = None
        self._error: str | None = None
        self._folder: Path | None = None
        self._columns: list[tuple[str, str, int]] = []

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="inf-controls"):
            yield Select([], prompt="completed run", compact=True, id="inf-run")
            yield Select([], prompt="vs run (optional)", compact=True, id="inf-against")
            yield FolderInput(
                self._initial_folder, placeholder="folder of images (Enter classifies)", compact=True, id="inf-folder"
            )
        yield Static("", id="inf-status")
        with Horizontal(id="inf-body"):
            table: DataTable[Any] = DataTable(id="inf-table", cursor_type="row", zebra_stripes=True)
            yield table
            with Vertical(id="inf-preview"):
                yield Thumbnail(id="inf-thumb")
                yield Static("", id="inf-topk")
            with Vertical(id="inf-confusion"):
                yield Static("", id="inf-matrix")
                pairs: DataTable[Any] = DataTable(id="inf-pairs", cursor_type="row")
                yield pairs
        yield KeyFooter(drop=self.FOOTER_DROP)

    def _set_columns(self, width: int) -> None:
        """Lay the results table's columns out for ``width``; rows already shown are drawn again."""
        vs = self.against.run_id if self.against is not None else None
        columns = table_columns(width, vs)
        if columns == self._columns:
            return
        self._columns = columns
        table = self.query_one("#inf-table", DataTable)
        table.clear(columns=True)
        for key, label, cells in columns:
            table.add_column(label, key=key, width=cells)
        if self.items:
            self._rebuild()

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit_columns)

    def _fit_columns(self) -> None:
        if self.is_attached:
            width = self.query_one("#inf-table", DataTable).size.width
            if width:
                self._set_columns(width)

    def _browse_root(self) -> Path:
        """Where browsing starts: the parent of the typed folder, else the working directory."""
        raw = self.query_one("#inf-folder", Input).value.strip()
        if not raw:
            return Path.cwd()
        p = Path(raw).expanduser().absolute()
        if p.is_dir():
            return p.parent if p.parent != p else p
        return p.parent if p.parent.is_dir() else Path.cwd()

    def on_mount(self) -> None:
        # until laid out, the table's width as the layout will make it: 3/5 of the body beside the preview
        self._set_columns(max(self.app.size.width - max(30, self.app.size.width * 2 // 5), 40))
        pairs = self.query_one("#inf-pairs", DataTable)
        pairs.add_column("true", key="true", width=16)
        pairs.add_column("predicted", key="pred", width=16)
        pairs.add_column("images", key="n", width=6)
        self._load_runs()
        self._show_status()
        self.query_one("#inf-folder", Input).focus()

    def _load_runs(self) -> None:
        runs = [r for r in self.workspace.list_runs([RunStatus.COMPLETED])]
        select = self.query_one("#inf-run", Select)
        # Text: a sweep's run names carry brackets ("s[lr=0.1,seed=2]"), which markup would eat or fail on
        select.set_options([(Text(f"{r.id} {r.name}"[:40]), r.id) for r in reversed(runs)])
        self.query_one("#inf-against", Select).set_options(
            [(Text(f"vs {r.id} {r.name}"[:30]), r.id) for r in reversed(runs)]
        )
        if self.run_id is not None:
            try:
                rid = self.workspace.get(self.run_id).id
            except Exception as e:  # noqa: BLE001 - an unknown id: say so, let the user pick
                self._set_error(one_line(e))
                return
            if rid in {r.id for r in runs}:
                select.value = rid
            else:
                self._set_error(f"{rid} is not completed: pick a completed run")
        elif runs:
            select.value = runs[-1].id
        else:
            self._set_error("no completed runs yet: train one first")

    # ------------------------------------------------------------ status

    def _set_error(self, message: str | None) -> None:
        self._error = message
        self._show_status()

    def _show_status(self) -> None:
        status = self.query_one("#inf-status", Static)
        status.set_class(self._error is not None, "-error")
        if self._error is not None:
            status.update(Text(f"✗ {self._error}"))
            return
        if self.report is None:
            status.update(Text("pick a run and a folder, then Enter (ctrl+o browses)", style="dim"))
            return
        rows = self.report.rows
        skipped = len(self.report.skipped)
        done = len(rows) + skipped
        total = self.started.total if self.started else (self.progress.total if self.progress else None)
        t = Text(no_wrap=True, overflow="ellipsis")
        if self.filter != "all":
            what = f"{self.pair[0]} → {self.pair[1]}" if self.filter == "pair" and self.pair else self.filter
            t.append(f"showing {what} ({sum(1 for it in self.items if self._keep(it))}) · ", style="bold cyan")
        t.append("classifying… " if self.running else "done · ", style="bold" if self.running else "")
        t.append(f"{done}/{total} images" if total is not None else f"{done} images")
        if total == 0 and not self.running:
            from tltui.core.images import IMAGE_EXTENSIONS

            kinds = " ".join(sorted(IMAGE_EXTENSIONS))
            t.append(f" · no images in {self.report.folder} or its subfolders ({kinds})", style="yellow")
        if skipped:
            t.append(f" · {skipped} skipped", style="yellow")
        labelled = [r for r in rows if r.true_label is not None]
        if labelled:
            top1 = sum(1 for r in labelled if r.correct)
            top5 = sum(1 for r in labelled if r.true_label in [lbl for lbl, _ in r.top_k[:5]])
            na = top_k_na(len(self.started.classes) if self.started else None, why=False)  # 100% by construction
            top5_text = na or f"top-5 {100 * top5 / len(labelled):.1f}%"
            t.append(f" · top-1 {100 * top1 / len(labelled):.1f}% · {top5_text}")
            t.append(f" ({len(labelled)} labelled)", style="dim")
        if self.against is not None and self.against.rows:
            b = self.b_rows
            both = [r for r in rows if r.path in b]
            agree = sum(1 for r in both if b[r.path].label == r.label)
            t.append(f" · vs {self.against.run_id}: agree {agree}/{len(both)}", style="bold")
        note = self._resolution_note()
        if note is not None:
            t.append(f"\n{note}", style="dim")
        status.update(t)

    def _resolution_note(self) -> str | None:
        """What the images went through, when not straight to the model's input as a user would
        assume: shrunk to the training data's size first (the default), or full size on request."""
        started = self.started
        if started is None:
            return None
        note = started.low_res_note()
        notes = [note] if note else []
        b = self.against.started if self.against is not None and self.against.started is not None else None
        b_note = b.low_res_note() if b is not None else None
        if self.against is not None and b_note and b_note != note:  # the second run trained at another size
            notes.append(f"{self.against.run_id}: {b_note}")
        if notes:
            return "; ".join(notes) + " (f: full resolution)"
        if self.full_res:
            h, w = started.image_size
            return f"images resized straight to {h}x{w}, the model's input (f: as the training images were)"
        return None

    # ------------------------------------------------------------ running

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "inf-folder":
            event.stop()
            self.action_start(focus_results=False)  # typing goes on in the field, never into keys

    def action_start(self, focus_results: bool = True) -> None:
        """Classify the folder with the run (``ctrl+r`` also moves into the results; Enter in the
        folder field leaves the focus there: down or tab moves into them)."""
        select = self.query_one("#inf-run", Select)
        if select.value is Select.NULL:
            self._set_error("pick a completed run first")
            return
        run_id = str(select.value)
        raw = self.query_one("#inf-folder", Input).value.strip()
        if not raw:
            self._set_error("type a folder of images (or ctrl+o to browse)")
            return
        folder = Path(raw).expanduser()
        if not folder.is_dir():
            self._set_error(f"{folder}: no such folder")
            return
        paths = self.workspace.run_paths(run_id)
        if not paths.model.exists():
            self._set_error(f"{run_id} has no exported model ({paths.model.name}); it cannot classify")
            return
        against = self.query_one("#inf-against", Select).value
        b_dir: Path | None = None
        if against is not Select.NULL and str(against) != run_id:
            b_dir = self.workspace.run_paths(str(against)).dir
            if not (b_dir / "model.keras").exists():
                self._set_error(f"{against} has no exported model; it cannot classify")
                return
        self.action_stop()
        self.workers.cancel_group(self, "cam")  # a Grad-CAM of the previous results is not wanted now
        self.items, self.started, self.progress = [], None, None
        self.cams, self.showing_cam, self.pair, self._rows_of, self.b_rows = {}, False, None, {}, {}
        if self.filter in ("pair", "disagree"):
            self.filter = "all"
        self.against = PredictReport(str(against), str(folder)) if b_dir is not None else None
        table = self.query_one("#inf-table", DataTable)
        self._set_columns(table.size.width or sum(w + 2 for *_, w in self._columns) + 2)  # with or without vs
        self.report = PredictReport(run_id, str(folder))
        self._folder = folder
        self.query_one("#inf-table", DataTable).clear()
        self.query_one(Thumbnail).path = None
        self.query_one("#inf-topk", Static).update("")
        self.running = True
        self._error = None
        self._show_status()
        if focus_results:
            self.query_one("#inf-table", DataTable).focus()
        self._run(paths.dir, folder, b_dir, False if self.full_res else None)

    @work(thread=True, exclusive=True, group="inference", exit_on_error=False)
    def _run(self, run_dir: Path, folder: Path, b_dir: Path | None = None, low_res: bool | None = None) -> None:
        worker = get_current_worker()
        error: str | None = None
        batch: list[Any] = []
        job: Any = None  # this thread's own: a newer run's thread may have put its job in self._job by now
        try:
            for directory, take in ((run_dir, self._take), *(((b_dir, self._take_b),) if b_dir else ())):
                job = self._source(directory, folder, low_res)
                self._job = job
                for rec in job:
                    if worker.is_cancelled:
                        break
                    batch.append(rec)
                    if isinstance(rec, Progress) or len(batch) >= FLUSH_EVERY:
                        pending, batch = batch, []
                        # blocks until the UI took the batch: a slow UI slows the reader, never floods
                        self.app.call_from_thread(take, pending)
                if batch and not worker.is_cancelled:  # cancelled: a newer run's rows are on screen now
                    self.app.call_from_thread(take, batch)
                    batch = []
                close = getattr(job, "close", None)
                if callable(close):
                    close()
                if worker.is_cancelled:
                    break
        except PredictError as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001 - a broken source must end in a status line, not a crash
            error = one_line(e)
        finally:
            if self._job is job:
                self._job = None
            close = getattr(job, "close", None)
            if callable(close):
                close()
        if not worker.is_cancelled:
            self.app.call_from_thread(self._finish, batch, error)

    def _take(self, records: list[Any]) -> None:
        if not self.is_attached or self.report is None:  # closed meanwhile
            return
        table = self.query_one("#inf-table", DataTable)
        for rec in records:
            self.report.add(rec)
            if isinstance(rec, PredictStarted):
                self.started = rec
            elif isinstance(rec, Progress):
                self.progress = rec
            elif isinstance(rec, (PredictionRow, Skipped)):
                self.items.append(rec)
                self._rows_of[rec.path] = len(self.items) - 1
                if self._keep(rec):
                    self._add_row(table, len(self.items) - 1, rec)
        self._show_status()
        self._warm_cams()

    def _warm_cams(self) -> None:
        """Once a run's predictions show, start its Grad-CAM worker in the background (TensorFlow
        has proven useful by then; a screen that never classifies costs nothing), so that the first
        ``g`` is as quick as the next ones instead of paying TensorFlow's import and the model load."""
        warm = getattr(self._cam_source, "warm", None)
        if not callable(warm) or self.report is None or self.started is None:
            return
        if not any(isinstance(item, PredictionRow) for item in self.items[-FLUSH_EVERY:]):
            return
        key = (self.report.run_id, self.started.low_res)
        if key == self.warmed:
            return
        self.warmed = key  # the source keeps this run's worker only (a worker holds TensorFlow and a model)
        self._warm(warm, self.workspace.run_paths(key[0]).dir, key[1])

    @work(thread=True, group="cam-warm", exit_on_error=False)
    def _warm(self, warm: Callable[[Path, bool | None], None], run_dir: Path, low_res: bool | None) -> None:
        try:
            warm(run_dir, low_res)
        except Exception:  # noqa: BLE001, S110 - the first g says why (it starts the worker again)
            pass

    def _take_b(self, records: list[Any]) -> None:
        """The second run's predictions: its top-1 next to the first run's, row by row."""
        if not self.is_attached or self.against is None:
            return
        table = self.query_one("#inf-table", DataTable)
        arrived = set()
        for rec in records:
            self.against.add(rec)
            if isinstance(rec, PredictionRow):
                self.b_rows[rec.path] = rec
                arrived.add(rec.path)
                key = str(self._rows_of.get(rec.path))
                if key in table.rows:
                    table.update_cell(key, "vs", self._vs_cell(self.items[int(key)]))
        selected = self.selected
        if selected is not None and selected.path in arrived:  # its preview gets the second run's bars
            self._preview(selected)
        self._show_status()

    def _vs_cell(self, item: PredictionRow | Skipped) -> Text:
        b = self.b_rows.get(item.path)
        if b is None or not isinstance(item, PredictionRow):
            return Text("")
        style = (
            ""
            if b.label == item.label
            else ("bold green" if b.correct else "bold red" if b.correct is False else "bold")
        )
        return Text(f"{b.label} {100 * b.probability:.0f}%", style=style)

    def _finish(self, records: list[Any], error: str | None) -> None:
        if not self.is_attached:
            return
        self._take(records)
        self.running = False
        if error is not None:
            self._set_error(error)
        else:
            self._show_status()
        if self.has_class("-confusion"):
            self._fill_confusion()

    def action_stop(self) -> None:
        job = self._job
        cancel = getattr(job, "cancel", None)
        if callable(cancel):
            cancel()
        self.workers.cancel_group(self, "inference")
        if self.running:
            self.running = False
            self._show_status()

    # ------------------------------------------------------------ table

    def _keep(self, item: PredictionRow | Skipped) -> bool:
        if self.filter == "skipped":
            return isinstance(item, Skipped)
        if self.filter == "pair":
            return isinstance(item, PredictionRow) and (item.true_label, item.label) == self.pair
        if self.filter == "disagree":
            b = self.b_rows.get(item.path)
            return isinstance(item, PredictionRow) and b is not None and b.label != item.label
        if self.filter == "misclassified":
            return isinstance(item, PredictionRow) and item.correct is False
        return True

    def _display_name(self, item: PredictionRow | Skipped) -> str:
        if item.rel:
            return item.rel
        if self._folder is not None:
            try:
                return str(Path(item.path).relative_to(self._folder))
            except ValueError:
                pass
        return Path(item.path).name

    def _add_row(self, table: DataTable[Any], index: int, item: PredictionRow | Skipped) -> None:
        name = Text(self._display_name(item), no_wrap=True, overflow="ellipsis")
        if isinstance(item, Skipped):
            extra = [""] if "vs" in table.columns else []
            table.add_row(name, Text("skipped", style="yellow"), "", Text("⊘", style="yellow"), *extra, key=str(index))
            return
        ok = item.correct
        mark = Text("") if ok is None else Text("✓", style="green") if ok else Text("✗", style="bold red")
        prob = Text(f"{100 * item.probability:.1f}%", justify="right")
        cells = [name, Text(item.label), prob, mark]  # Text: a label is not markup ("[dog]")
        if "vs" in table.columns:
            cells.append(self._vs_cell(item))
        table.add_row(*cells, key=str(index))

    def _rebuild(self) -> None:
        table = self.query_one("#inf-table", DataTable)
        table.clear()
        for i, item in enumerate(self.items):
            if self._keep(item):
                self._add_row(table, i, item)
        if table.row_count == 0:
            self._preview(None)

    def action_filter(self, which: str) -> None:
        if which == "disagree" and self.against is None:
            self.notify("pick a second run (vs run) and classify again to compare", severity="warning")
            return
        self.filter = "all" if self.filter == which else which
        self.pair = None
        if (
            self.filter == "misclassified"
            and self.items
            and not any(isinstance(i, PredictionRow) and i.true_label is not None for i in self.items)
        ):
            self.notify("no labels: the folder has no subfolder per class of the run", severity="warning")
        self._rebuild()
        self._show_status()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "inf-table":
            return
        key = event.row_key.value
        self._preview(self.items[int(key)] if key is not None else None)

    def _preview(self, item: PredictionRow | Skipped | None) -> None:
        cam = self.cams.get(self._cam_key(item)) if item is not None and self.showing_cam else None
        self.query_one(Thumbnail).path = cam or (item.path if item is not None else None)
        width = self.query_one("#inf-preview").content_size.width or 30
        bars = topk_bars(item, width)
        b = self.b_rows.get(item.path) if item is not None else None
        if b is not None and self.against is not None:
            bars = Text.assemble(
                bars,
                (f"\nvs {self.against.run_id}:\n", "bold"),
                topk_bars(PredictionRow(b.path, b.top_k[:3], None, b.rel), width),
            )
        if cam is not None and isinstance(item, PredictionRow):
            bars = Text.assemble((f"Grad-CAM of {item.label} (g: the image)\n", "bold magenta"), bars)
        self.query_one("#inf-topk", Static).update(bars)

    # ------------------------------------------------------------ confusions

    def action_confusion(self) -> None:
        """Show (or hide) the confusion panel: matrix, most confused pairs, per-class accuracy."""
        showing = not self.has_class("-confusion")
        self.set_class(showing, "-confusion")
        self.call_after_refresh(self._fit_columns)  # the panel took (or gave back) the table's width
        if showing:
            self._fill_confusion()
            self.query_one("#inf-pairs", DataTable).focus()
        else:
            self.query_one("#inf-table", DataTable).focus()

    def _fill_confusion(self) -> None:
        score = self.report.score if self.report is not None else None
        width = self.query_one("#inf-confusion").content_size.width or 40
        note = self.report.label_note() if self.report is not None else None
        self.query_one("#inf-matrix", Static).update(confusion_view(score, width, note))
        table = self.query_one("#inf-pairs", DataTable)
        table.clear()
        for p in score.confused_pairs() if score is not None else []:
            table.add_row(
                Text(p["true_label"]), Text(p["predicted"]), str(p["count"]), key=f"{p['true_label']}\0{p['predicted']}"
            )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id != "inf-pairs" or event.row_key.value is None:
            return
        event.stop()
        true, pred = event.row_key.value.split("\0")
        self.filter, self.pair = "pair", (true, pred)  # the gallery of that pair's misclassified images
        self.set_class(False, "-confusion")
        self._rebuild()
        self._show_status()
        table = self.query_one("#inf-table", DataTable)
        table.focus()
        if table.row_count:
            self._preview(self.selected)

    # ------------------------------------------------------------ Grad-CAM

    def action_cam(self) -> None:
        """Where the model looked: the selected image's Grad-CAM (computed once, in the worker);
        pressed on an image whose Grad-CAM shows, the image again."""
        item = self.selected
        if not isinstance(item, PredictionRow) or self.report is None:
            self.notify("select a classified image first", severity="warning")
            return
        key = self._cam_key(item)
        if self.showing_cam and self.cams.get(key):  # its overlay is what shows: back to the image
            self.showing_cam = False
            self._preview(item)
            return
        self.showing_cam = True
        if item.cam is not None:
            self.cams[key] = item.cam
        if key in self.cams:
            self._preview(item)
            return
        self.query_one("#inf-topk", Static).update(Text("computing Grad-CAM…", style="dim"))
        low_res = self.started.low_res if self.started is not None else None
        out = cam_file(
            self.workspace.cache_dir / "cams", self.report.run_id, Path(self.report.folder), key[1], bool(low_res)
        )
        self._compute_cam(self.workspace.run_paths(self.report.run_id).dir, item, out, low_res, self.report)

    def _cam_key(self, item: PredictionRow | Skipped) -> tuple[str, str]:
        """An image's Grad-CAM is its run's and its own: (run id, path relative to the classified
        folder), never the bare file name that ``a/01.png`` and ``b/01.png`` share."""
        return (self.report.run_id if self.report is not None else "", self._display_name(item))

    @work(thread=True, exclusive=True, group="cam", exit_on_error=False)
    def _compute_cam(
        self, run_dir: Path, item: PredictionRow, out: Path, low_res: bool | None, report: PredictReport
    ) -> None:
        try:
            path, error = self._cam_source(run_dir, Path(item.path), out, low_res), None
        except Exception as e:  # noqa: BLE001 - the worker's one line (a hub backbone has no feature map, ...)
            path, error = None, one_line(e)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._cam_done, item, path, error, report)

    def _cam_done(self, item: PredictionRow, path: str | None, error: str | None, report: PredictReport) -> None:
        if not self.is_attached or report is not self.report:  # classified again meanwhile
            return
        if error is not None:
            self.showing_cam = False
            self.notify(f"no Grad-CAM: {error}", severity="error")
        self.cams[self._cam_key(item)] = path
        if self.selected is item:
            self._preview(item)

    @property
    def selected(self) -> PredictionRow | Skipped | None:
        table = self.query_one("#inf-table", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.items[int(key)] if key is not None else None

    # ------------------------------------------------------------ browse, export, close

    def action_browse(self) -> None:
        """Show (mounting it the first time) or hide the directory tree."""
        browsing = not self.has_class("-browsing")
        self.set_class(browsing, "-browsing")
        self.call_after_refresh(self._fit_columns)  # the tree took (or gave back) the table's width
        if not browsing:
            self.query_one("#inf-folder", Input).focus()
            return
        trees = self.query("#inf-browser")
        if trees:
            trees.first().focus()
            return
        tree = DirectoryTree(self._browse_root(), id="inf-browser")
        self.query_one("#inf-body").mount(tree, before=0)
        self.call_after_refresh(tree.focus)

    def on_directory_tree_directory_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        self.query_one("#inf-folder", Input).value = str(event.path)

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.query_one("#inf-folder", Input).value = str(event.path.parent)

    def export_path(self) -> Path | None:
        if self.report is None:
            return None
        import hashlib

        full = Path(self.report.folder).resolve()
        tag = hashlib.sha1(str(full).encode()).hexdigest()[:6]  # /a/test and /b/test: two files, not one
        return self.workspace.run_paths(self.report.run_id).dir / f"predictions-{full.name or 'folder'}-{tag}.csv"

    def action_full_res(self) -> None:
        """Resize images straight to the model's input, or (again, the default) first to the size
        the training images had; classifies again when there are results."""
        self.full_res = not self.full_res
        self.notify(
            "full resolution: images resized straight to the model's input"
            if self.full_res
            else "images go through the training data's size first, as the training images did",
            timeout=3,
        )
        if self.report is not None:
            self.action_start()

    def action_export(self) -> None:
        path = self.export_path()
        if self.report is None or path is None or not self.report.rows:
            self.notify("nothing to export yet", severity="warning")
            return
        try:
            atomic_write(path, self.report.to_csv(), mode=0o644)
        except OSError as e:
            self.notify(f"{path}: not written: {one_line(e)}", severity="error")
            return
        partial = " (partial: still classifying)" if self.running else ""
        self.notify(f"wrote {len(self.report.rows)} predictions to {path}{partial}")

    def action_results(self) -> None:
        self.query_one("#inf-table", DataTable).focus()

    def on_key(self, event: events.Key) -> None:
        """A character no key of this screen takes, typed in the results, starts a new folder path
        there (``/``, ``~``, ``.`` or a letter): typing a path never drives the table."""
        table = self.query_one("#inf-table", DataTable)
        if self.focused is not table or event.character is None or not event.is_printable:
            return
        if event.key in self.active_bindings or event.character == " ":
            return
        event.stop()
        event.prevent_default()
        self.query_one("#inf-folder", FolderInput).start_path(event.character)

    def action_close(self) -> None:
        """Escape closes the innermost thing open: the folder browser, the confusion panel, then the screen."""
        if self.has_class("-browsing"):
            self.action_browse()
            return
        if self.has_class("-confusion"):
            self.action_confusion()
            return
        self.action_stop()
        self.dismiss(None)

    def on_unmount(self) -> None:
        cancel = getattr(self._job, "cancel", None)
        if callable(cancel):  # the predict worker must not outlive the screen
            cancel()
        close = getattr(self._cam_source, "close", None)
        if callable(close):  # nor the Grad-CAM workers
            close()
