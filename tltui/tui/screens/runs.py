"""The home screen: every run of the workspace in a filterable, sortable table."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Input, Static

from tltui.tui import formatting as fmt
from tltui.tui.screens.base import RunsView
from tltui.tui.store import RunRow
from tltui.tui.widgets.key_footer import KeyFooter
from tltui.tui.widgets.run_table import COLUMN_KEYS, RunTable, matches, sort_rows

SORTABLE = COLUMN_KEYS[1:]


class RunsScreen(RunsView):
    """Runs (home). Reads rows from ``app.store``; the app tells it what changed."""

    DEFAULT_CSS = """
    RunsScreen .title { height: 1; padding: 0 1; background: $boost; }
    RunsScreen #filter { height: 3; margin: 0 1; }
    RunsScreen #runs-status { height: 1; padding: 0 1; color: $text-muted; }
    """

    BINDINGS = [
        Binding("enter", "open", "Open", id="runs.open"),
        Binding("space", "toggle_select", "Select", id="runs.select"),
        Binding("a", "app.queue_preset", "Queue", id="runs.queue"),
        Binding("x", "app.cancel", "Cancel", id="runs.cancel"),
        Binding("r", "app.resume", "Resume", id="runs.resume"),
        Binding("d", "app.delete", "Delete", id="runs.delete"),
        Binding("c", "app.compare", "Compare", id="runs.compare"),
        Binding("w", "sweep", "Sweep", id="runs.sweep"),  # a run of a sweep only (check_action)
        Binding("slash", "filter", "Filter", id="runs.filter"),
        Binding("s", "sort", "Sort", id="runs.sort"),
        Binding("S", "sort_reverse", "Reverse sort", show=False, id="runs.sort_reverse"),
        Binding("escape", "clear", "Clear", show=False, id="runs.clear"),
        Binding("p", "app.presets", "Presets", id="runs.presets"),
        Binding("f", "app.freeze_map", "Freeze map", id="runs.freeze_map"),
        Binding("i", "app.inference", "Inference", id="runs.inference"),
        Binding("g", "app.toggle_gpu", "GPU", id="runs.gpu"),
    ]

    #: the footer's keys hidden first when the terminal is narrow (by action): Enter (open), i, ? and q stay
    FOOTER_DROP = (
        "sweep",
        "sort",
        "app.toggle_gpu",
        "app.delete",
        "app.resume",
        "app.freeze_map",
        "filter",
        "app.presets",
        "toggle_select",
        "app.compare",
        "app.cancel",
        "app.queue_preset",
    )

    def __init__(self) -> None:
        super().__init__()
        self.ready = False  # runs_changed may arrive between push and mount
        self.selected: set[str] = set()
        self.query_text = ""
        self.sort_key = "id"
        self.sort_reverse = False
        self._texts: dict[str, str] = {}
        self._sweep_key: bool | None = None  # whether the footer shows w (the target run is of a sweep)

    def compose(self) -> ComposeResult:
        yield Static(id="runs-title", classes="title")
        yield Input(placeholder="filter: words in id, name, status, preset (esc clears)", id="filter")
        yield RunTable(id="runs")
        with Horizontal(id="runs-status"):
            yield Static(id="runs-summary")
        yield KeyFooter(drop=self.FOOTER_DROP)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.rebuild()
        self.query_one(RunTable).focus()
        self.ready = True

    # ------------------------------------------------------------ data from the app

    @property
    def table(self) -> RunTable:
        return self.query_one(RunTable)

    def visible_rows(self) -> list[RunRow]:
        rows = [r for r in self.app.store.rows() if matches(r, self.query_text)]
        return sort_rows(rows, self.sort_key, self.sort_reverse)

    def rebuild(self) -> None:
        """Re-list every row (after a filter, sort or a run added or removed)."""
        self.selected &= set(self.app.store.ids)
        rows = self.visible_rows()
        self.table.show_rows(rows, self.selected)
        self._update_summary(rows)
        self._update_sweep_key()

    def runs_changed(self, ids: set[str], structural: bool) -> None:
        """Called by the app at its redraw rate with the runs whose view changed."""
        if not self.ready:
            return
        if structural:
            self.rebuild()
            return
        if self.query_text or self.sort_key not in ("id", "name"):
            # a change can move a row or in/out of the filter: rebuild only if it did
            rows = self.visible_rows()
            if [r.id for r in rows] != self.table.run_ids:
                self.table.show_rows(rows, self.selected)
                self._update_summary(rows)
                return
        shown = set(self.table.run_ids)
        for rid in ids & shown:
            self.table.update_run(self.app.store.row(rid), rid in self.selected)
        self._update_summary(None)

    def _update_summary(self, rows: list[RunRow] | None) -> None:
        store = self.app.store
        counts: dict[str, int] = {}
        for rid in store.ids:
            rec = store.record(rid)
            if rec is not None:
                counts[rec.status] = counts.get(rec.status, 0) + 1
        parts = [f"{n} {s}" for s, n in sorted(counts.items())] or ["no runs yet: press a to queue a preset"]
        shown = len(rows) if rows is not None else len(self.table.run_ids)
        extra = []
        if self.query_text:
            extra.append(f"filter {self.query_text!r}: {shown} shown")
        if self.selected:
            extra.append(f"{len(self.selected)} selected")
        arrow = "↓" if self.sort_reverse else "↑"
        extra.append(f"sort {self.sort_key}{arrow}")
        # Static.update relayouts the screen: only when the text changes (not at every redraw)
        if "#runs-title" not in self._texts:  # the workspace path does not change (resolve() is syscalls)
            path = fmt.home_relative(self.app.ws.root)
            self._set_text("#runs-title", f"tltui  {path}", Text.assemble(("tltui", "bold"), f"  {path}"))
        summary = "  ·  ".join(parts + extra)
        self._set_text("#runs-summary", summary, Text(summary))  # the filter's text is not markup ("s[a=1")

    def _set_text(self, selector: str, key: str, text: Text) -> None:
        if self._texts.get(selector) != key:
            self._texts[selector] = key
            self.query_one(selector, Static).update(text)

    # ------------------------------------------------------------ targets for app actions

    def target_ids(self) -> list[str]:
        """The selected runs, else the run under the cursor."""
        if self.selected:
            return [rid for rid in self.app.store.ids if rid in self.selected]
        rid = self.table.cursor_run_id
        return [rid] if rid else []

    def _of_a_sweep(self) -> bool:
        ids = self.target_ids()
        rec = self.app.store.record(ids[0]) if ids else None
        return rec is not None and rec.sweep is not None

    def _update_sweep_key(self) -> None:
        """Show ``w`` in the footer while the run it would open is of a sweep (rebuilt only on a change)."""
        shown = self._of_a_sweep()
        if shown != self._sweep_key:
            self._sweep_key = shown
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "sweep":
            return self._of_a_sweep()
        return True

    # ------------------------------------------------------------ actions

    def action_sweep(self) -> None:
        self.app.action_sweep()  # type: ignore[attr-defined]

    def on_run_table_row_highlighted(self, event: RunTable.RowHighlighted) -> None:
        self._update_sweep_key()

    def action_open(self) -> None:
        rid = self.table.cursor_run_id
        if rid:
            self.app.open_run(rid)

    def on_run_table_row_selected(self, event: RunTable.RowSelected) -> None:
        event.stop()
        if event.run_id:
            self.app.open_run(event.run_id)

    def on_run_table_header_selected(self, event: RunTable.HeaderSelected) -> None:
        key = event.column_key
        if key in SORTABLE:
            self.sort_reverse = not self.sort_reverse if key == self.sort_key else False
            self.sort_key = key
            self.rebuild()

    def action_toggle_select(self) -> None:
        rid = self.table.cursor_run_id
        if rid is None:
            return
        self.selected ^= {rid}
        self.table.update_run(self.app.store.row(rid), rid in self.selected)
        self._update_summary(None)
        self.table.action_cursor_down()
        self._update_sweep_key()

    def action_sort(self) -> None:
        i = SORTABLE.index(self.sort_key) if self.sort_key in SORTABLE else -1
        self.sort_key = SORTABLE[(i + 1) % len(SORTABLE)]
        self.rebuild()

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.rebuild()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value.strip()
        self.rebuild()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.table.focus()

    def action_clear(self) -> None:
        """Esc: clear the filter, else the selection."""
        box = self.query_one("#filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.query_text = ""
            self.table.focus()
            self.rebuild()
        elif self.selected:
            self.selected.clear()
            self.rebuild()
