"""The runs table: one row per :class:`~tltui.tui.data.RunRow`, updated cell by cell."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from tltui.tui import formatting as fmt
from tltui.tui.data import RunRow

BAR_WIDTH = 6


def _epoch_cell(r: RunRow) -> Text:
    ep = f"{r.epoch}/{r.epochs}" if r.epochs else (str(r.epoch) if r.epoch else "-")
    style = fmt.STATUS_STYLES.get(r.status, "")
    return Text.assemble((f"{ep:>7} ", ""), (fmt.bar(r.progress, BAR_WIDTH), style or "dim"))


def _right(s: str, style: str = "") -> Text:
    return Text(s, style=style, justify="right")


#: (key, label, cell, sort key). Sort keys put missing values last.
Column = tuple[str, str, Callable[[RunRow, bool], Any], Callable[[RunRow], Any]]

_LOW = float("-inf")

COLUMNS: tuple[Column, ...] = (
    ("sel", " ", lambda r, s: Text("●" if s else " ", style="bold magenta" if s else ""), lambda r: 0),
    ("id", "ID", lambda r, s: Text(r.id, style="bold"), lambda r: r.id),
    ("name", "Name", lambda r, s: Text(r.name if len(r.name) <= 28 else r.name[:27] + "…"), lambda r: r.name.lower()),
    ("status", "Status", lambda r, s: Text(r.status, style=fmt.STATUS_STYLES.get(r.status, "")), lambda r: r.status),
    ("epoch", "Epoch", lambda r, s: _epoch_cell(r), lambda r: r.progress),
    ("val_acc", "Val acc", lambda r, s: _right(fmt.pct(r.val_acc)), lambda r: r.val_acc if r.val_acc is not None else _LOW),
    ("best", "Best", lambda r, s: _right(fmt.pct(r.best_val_acc), "bold"),
     lambda r: r.best_val_acc if r.best_val_acc is not None else _LOW),
    ("top5", "Top-5", lambda r, s: _right(fmt.pct(r.val_top5_acc)),
     lambda r: r.val_top5_acc if r.val_top5_acc is not None else _LOW),
    ("best5", "Best-5", lambda r, s: _right(fmt.pct(r.best_val_top5_acc)),
     lambda r: r.best_val_top5_acc if r.best_val_top5_acc is not None else _LOW),
    ("elapsed", "Elapsed", lambda r, s: _right(fmt.duration(r.elapsed)), lambda r: r.elapsed or 0.0),
    ("eta", "ETA", lambda r, s: _right(fmt.duration(r.eta)), lambda r: r.eta if r.eta is not None else float("inf")),
    ("gpu", "GPU", lambda r, s: Text(r.gpus), lambda r: r.gpus),
)
COLUMN_KEYS = tuple(c[0] for c in COLUMNS)
_BY_KEY = {c[0]: c for c in COLUMNS}


def sort_rows(rows: Sequence[RunRow], key: str, reverse: bool = False) -> list[RunRow]:
    """Rows ordered by a column (ties keep id order)."""
    getter = _BY_KEY[key][3]
    return sorted(sorted(rows, key=lambda r: r.id), key=getter, reverse=reverse)


def matches(row: RunRow, query: str) -> bool:
    """Filter: every word of ``query`` appears in the id, name, status, preset or GPU."""
    hay = f"{row.id} {row.name} {row.status} {row.preset_name} gpu:{row.gpus}".lower()
    return all(word in hay for word in query.lower().split())


class RunTable(DataTable):
    """Rows keyed by run id. :meth:`show_rows` rebuilds; :meth:`update_run` patches cells."""

    DEFAULT_CSS = """
    RunTable {
        height: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._cells: dict[str, tuple[str, ...]] = {}

    def on_mount(self) -> None:
        for key, label, _cell, _sort in COLUMNS:
            self.add_column(label, key=key)

    @property
    def cursor_run_id(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:
            return None

    @property
    def run_ids(self) -> list[str]:
        return [rk.value for rk in self.rows if rk.value is not None]

    def show_rows(self, rows: Sequence[RunRow], selected: set[str]) -> None:
        """Replace every row, keeping the cursor on the same run when it is still shown."""
        keep = self.cursor_run_id
        self.clear()
        self._cells.clear()
        for r in rows:
            cells = [col[2](r, r.id in selected) for col in COLUMNS]
            self._cells[r.id] = tuple(c.markup if isinstance(c, Text) else str(c) for c in cells)
            self.add_row(*cells, key=r.id)
        if keep is not None and keep in self._cells:
            self.move_cursor(row=self.get_row_index(keep), animate=False)

    def update_run(self, r: RunRow, selected: bool) -> None:
        """Patch the cells of one shown run that changed (cheap; no relayout of other rows)."""
        old = self._cells.get(r.id)
        if old is None:
            return
        cells = [col[2](r, selected) for col in COLUMNS]
        sig = tuple(c.markup if isinstance(c, Text) else str(c) for c in cells)
        for (key, *_), cell, a, b in zip(COLUMNS, cells, old, sig, strict=True):
            if a != b:
                try:
                    self.update_cell(r.id, key, cell, update_width=True)
                except (CellDoesNotExist, RowDoesNotExist):
                    return
        self._cells[r.id] = sig
