"""The runs table: one row per :class:`~tltui.tui.data.RunRow`, updated cell by cell."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, CellKey, ColumnKey, RowDoesNotExist, RowKey

from tltui.tui import formatting as fmt
from tltui.tui.data import RunRow

BAR_WIDTH = 6


def _epoch_cell(r: RunRow) -> Text:
    ep = f"{r.epoch}/{r.epochs}" if r.epochs else (str(r.epoch) if r.epoch else "-")
    style = fmt.STATUS_STYLES.get(r.status, "")
    return Text.assemble((f"{ep:>7} ", ""), (fmt.bar(r.progress, BAR_WIDTH), style or "dim"))


def _right(s: str, style: str = "") -> Text:
    return Text(s, style=style, justify="right")


#: (key, label, width, cell, sort key). Fixed widths: measuring 500 rows per update is not free.
Column = tuple[str, str, int, Callable[[RunRow, bool], Any], Callable[[RunRow], Any]]

_LOW = float("-inf")
NAME_WIDTH = 24


def _name(r: RunRow) -> Text:
    return Text(r.name if len(r.name) <= NAME_WIDTH else r.name[: NAME_WIDTH - 1] + "…")


def _low(x: float | None) -> float:
    return x if x is not None else _LOW


COLUMNS: tuple[Column, ...] = (
    ("sel", " ", 1, lambda r, s: Text("●" if s else " ", style="bold magenta" if s else ""), lambda r: 0),
    ("id", "ID", 5, lambda r, s: Text(r.id, style="bold"), lambda r: r.id),
    ("name", "Name", NAME_WIDTH, lambda r, s: _name(r), lambda r: r.name.lower()),
    ("status", "Status", 12, lambda r, s: Text(r.detail or r.status, style=fmt.STATUS_STYLES.get(r.status, "")),
     lambda r: r.status),
    ("epoch", "Epoch", 8 + BAR_WIDTH, lambda r, s: _epoch_cell(r), lambda r: r.progress),
    ("val_acc", "Val acc", 7, lambda r, s: _right(fmt.pct(r.val_acc)), lambda r: _low(r.val_acc)),
    ("best", "Best", 6, lambda r, s: _right(fmt.pct(r.best_val_acc), "bold"), lambda r: _low(r.best_val_acc)),
    ("top5", "Top-5", 6, lambda r, s: _right(fmt.pct(r.val_top5_acc)), lambda r: _low(r.val_top5_acc)),
    ("best5", "Best-5", 6, lambda r, s: _right(fmt.pct(r.best_val_top5_acc)),
     lambda r: _low(r.best_val_top5_acc)),
    ("elapsed", "Elapsed", 7, lambda r, s: _right(fmt.duration(r.elapsed)), lambda r: r.elapsed or 0.0),
    ("eta", "ETA", 6, lambda r, s: _right(fmt.duration(r.eta)), lambda r: r.eta if r.eta is not None else float("inf")),
    ("gpu", "GPU", 5, lambda r, s: Text(r.gpus), lambda r: r.gpus),
)
COLUMN_KEYS = tuple(c[0] for c in COLUMNS)
_BY_KEY = {c[0]: c for c in COLUMNS}


def _looks(r: RunRow, selected: bool) -> tuple[Any, ...]:
    """Everything the cells show, cheaply: equal tuples mean equal cells (no Text built)."""
    return (r.id, r.name, r.status, r.detail, selected, r.epoch, r.epochs, fmt.bar(r.progress, BAR_WIDTH),
            r.val_acc, r.best_val_acc, r.val_top5_acc, r.best_val_top5_acc,
            fmt.duration(r.elapsed), fmt.duration(r.eta), r.gpus)


def sort_rows(rows: Sequence[RunRow], key: str, reverse: bool = False) -> list[RunRow]:
    """Rows ordered by a column (ties keep id order)."""
    getter = _BY_KEY[key][4]
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
        self._shown: dict[str, tuple[RunRow, bool]] = {}

    def on_mount(self) -> None:
        for key, label, width, _cell, _sort in COLUMNS:
            self.add_column(label, key=key, width=width)

    # Every column has a fixed width, rows have height 1 and no labels: DataTable's
    # measuring of each new or updated cell (12 x 500 Rich measures on a rebuild) cannot
    # change a width, so only the virtual size is recomputed.

    def _fixed_layout(self) -> bool:
        return not self._labelled_row_exists and all(not c.auto_width for c in self.columns.values())

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        if not self._fixed_layout() or any(
            (row := self.rows.get(k)) is not None and (row.auto_height or row.label is not None) for k in new_rows
        ):
            super()._update_dimensions(new_rows)
            return
        width = sum(c.get_render_width(self) for c in self.columns.values()) + self._row_label_column_width
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(width, self._total_row_height + header)

    def _update_column_widths(self, updated_cells: set[CellKey]) -> None:
        if not self._fixed_layout():
            super()._update_column_widths(updated_cells)

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
        self._shown.clear()
        for r in rows:
            sel = r.id in selected
            self._shown[r.id] = (r, sel)
            self.add_row(*(col[3](r, sel) for col in COLUMNS), key=r.id)
        if keep is not None and keep in self._shown:
            self.move_cursor(row=self.get_row_index(keep), animate=False)

    def update_run(self, r: RunRow, selected: bool) -> None:
        """Patch the cells of one shown run that changed (no relayout of the other rows)."""
        old = self._shown.get(r.id)
        if old is None or old == (r, selected):
            return
        if _looks(old[0], old[1]) == _looks(r, selected):
            self._shown[r.id] = (r, selected)  # e.g. elapsed moved within the same second
            return
        restyle = old[0].status != r.status or old[1] != selected
        cells = {}
        for key, _label, _width, cell, _sort in COLUMNS:
            new = cell(r, selected)
            if restyle or new.plain != cell(old[0], old[1]).plain:
                cells[key] = new
        if cells and not self._patch_row(r.id, cells):
            return
        self._shown[r.id] = (r, selected)

    def _patch_row(self, run_id: str, cells: dict[str, Text]) -> bool:
        """Replace cells of one row and repaint only that row.

        ``DataTable.update_cell`` bumps a table-wide counter that every render cache is
        keyed on, so one changed cell re-renders every visible cell (a running run's
        elapsed time changes each second). Here only the changed cells' renders and this
        row's line caches go.
        ``False`` when the row is gone.
        """
        row_key = RowKey(run_id)
        row_index = self._row_locations.get(row_key)
        if row_index is None or not self._fixed_layout():
            try:
                for key, value in cells.items():
                    self.update_cell(run_id, key, value)
            except (CellDoesNotExist, RowDoesNotExist):
                return False
            return True
        data = self._data[row_key]
        columns = {ColumnKey(key) for key in cells}
        for key, value in cells.items():
            data[ColumnKey(key)] = value
        region = self._get_row_region(row_index)
        lines = range(region.y, region.bottom)
        # The caches hold every cell and line drawn so far (up to 10,000 once scrolled): one
        # plain scan each, matching the row by identity with the key object DataTable filled
        # them with (RowKey.__eq__ is Python code; identity is what makes the scan cheap).
        rk = self._row_locations.get_key(row_index)
        cell_cache, row_cache = self._cell_render_cache, self._row_render_cache
        for k in [k for k in cell_cache.keys() if k[0] is rk and k[1] in columns]:
            cell_cache.discard(k)
        for k in [k for k in row_cache.keys() if k[0] is rk]:
            row_cache.discard(k)
        for k in [k for k in self._row_renderable_cache.keys() if k[1] == row_index]:
            self._row_renderable_cache.discard(k)
        for k in [k for k in self._line_cache.keys() if k[0] in lines]:
            self._line_cache.discard(k)
        self._refresh_region(region)
        return True
