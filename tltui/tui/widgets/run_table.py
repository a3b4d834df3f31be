"""The runs table: one line per :class:`~tltui.tui.store.RunRow`, drawn by the widget itself.

A :class:`~textual.scroll_view.ScrollView` with the line API and only Textual's public API:
fixed-width columns, a header pinned above the scrolled rows, zebra stripes and a row cursor.
Rendered rows live in an LRU cache keyed by what the row shows (:func:`_looks`), its stripe,
cursor, hover, the width and the widget's style; a changed run repaints its one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tltui.tui import formatting as fmt
from tltui.tui.store import RunRow

BAR_WIDTH = 6


def _epoch_cell(r: RunRow) -> Text:
    ep = f"{r.epoch}/{r.epochs}" if r.epochs else (str(r.epoch) if r.epoch else "-")
    style = fmt.STATUS_STYLES.get(r.status, "")
    return Text.assemble((f"{ep:>7} ", ""), (fmt.bar(r.progress, BAR_WIDTH), style or "dim"))


def _right(s: str, style: str = "") -> Text:
    return Text(s, style=style, justify="right")


class Column(NamedTuple):
    """A fixed-width column: measuring 500 rows per update is not free."""

    key: str
    label: str
    width: int
    cell: Callable[[RunRow, bool], Text]
    sort: Callable[[RunRow], Any]

    def get_render_width(self, table: object = None) -> int:
        """Width on screen: the cell plus one space of padding each side."""
        return self.width + 2


_LOW = float("-inf")
NAME_WIDTH = 24
#: the Name column takes the terminal's spare width, between these (cells)
NAME_MIN, NAME_MAX = 16, 64
#: columns a narrow terminal does without, first to last, before Name goes below :data:`NAME_WIDTH`
DROP_FIRST = ("best5", "top5", "gpu", "eta", "elapsed")


def _name(r: RunRow) -> Text:
    return Text(r.name, overflow="ellipsis")  # cut to the column's width, with an ellipsis


def _low(x: float | None) -> float:
    return x if x is not None else _LOW


COLUMNS: tuple[Column, ...] = tuple(
    Column(*c)
    for c in (
        ("sel", " ", 1, lambda r, s: Text("●" if s else " ", style="bold magenta" if s else ""), lambda r: 0),
        ("id", "ID", 5, lambda r, s: Text(r.id, style="bold"), lambda r: r.id),
        ("name", "Name", NAME_WIDTH, lambda r, s: _name(r), lambda r: r.name.lower()),
        (
            "status",
            "Status",
            12,
            lambda r, s: Text(r.detail or r.status, style=fmt.status_style(r.status, r.detail)),
            lambda r: r.status,
        ),
        ("epoch", "Epoch", 8 + BAR_WIDTH, lambda r, s: _epoch_cell(r), lambda r: r.progress),
        ("val_acc", "Val acc", 7, lambda r, s: _right(fmt.pct(r.val_acc)), lambda r: _low(r.val_acc)),
        # the kept epoch's: what model.keras holds (the best val_acc epoch unless train.restore_best = false)
        ("best", "Kept", 6, lambda r, s: _right(fmt.pct(r.best_val_acc), "bold"), lambda r: _low(r.best_val_acc)),
        ("top5", "Top-5", 6, lambda r, s: _right(fmt.pct(r.val_top5_acc)), lambda r: _low(r.val_top5_acc)),
        ("best5", "Kept-5", 6, lambda r, s: _right(fmt.pct(r.best_val_top5_acc)), lambda r: _low(r.best_val_top5_acc)),
        ("elapsed", "Elapsed", 7, lambda r, s: _right(fmt.duration(r.elapsed)), lambda r: r.elapsed or 0.0),
        (
            "eta",
            "ETA",
            6,
            lambda r, s: _right(fmt.duration(r.eta)),
            lambda r: r.eta if r.eta is not None else float("inf"),
        ),
        ("gpu", "GPU", 5, lambda r, s: Text(r.gpus), lambda r: r.gpus),
    )
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
_BY_KEY = {c.key: c for c in COLUMNS}
TABLE_WIDTH = sum(c.get_render_width() for c in COLUMNS)


def _looks(r: RunRow, selected: bool) -> tuple[Any, ...]:
    """Everything the cells show, cheaply: equal tuples mean equal cells (no Text built)."""
    return (
        r.id,
        r.name,
        r.status,
        r.detail,
        selected,
        r.epoch,
        r.epochs,
        fmt.bar(r.progress, BAR_WIDTH),
        r.val_acc,
        r.best_val_acc,
        r.val_top5_acc,
        r.best_val_top5_acc,
        fmt.duration(r.elapsed),
        fmt.duration(r.eta),
        r.gpus,
    )


def sort_rows(rows: Sequence[RunRow], key: str, reverse: bool = False) -> list[RunRow]:
    """Rows ordered by a column (ties keep id order)."""
    getter = _BY_KEY[key].sort
    return sorted(sorted(rows, key=lambda r: r.id), key=getter, reverse=reverse)


def matches(row: RunRow, query: str) -> bool:
    """Filter: every word of ``query`` appears in the id, name, status, preset or GPU."""
    hay = f"{row.id} {row.name} {row.status} {row.preset_name} gpu:{row.gpus}".lower()
    return all(word in hay for word in query.lower().split())


def _cell_segments(text: Text, width: int, console: Any) -> list[Segment]:
    """One cell on one line, padded by a space each side (as Rich lays out a no-wrap cell)."""
    if text.justify == "right":
        text.rstrip()
        text.truncate(width)
        text.pad_left(width - text.cell_len)
    else:
        text.truncate(width)
    segments = list(Segment.apply_style(text.render(console), console.get_style(text.style, default=Style())))
    return [Segment(" "), *Segment.adjust_line_length(segments, width), Segment(" ")]


def layout(width: int) -> tuple[Column, ...]:
    """The columns for a terminal ``width`` cells wide: Name widens into the spare width (up to
    :data:`NAME_MAX`); a narrow one first does without the columns of :data:`DROP_FIRST`."""
    cols = list(COLUMNS)
    others = sum(c.get_render_width() for c in cols if c.key != "name")
    for key in DROP_FIRST:
        if others + NAME_WIDTH + 2 <= width:
            break
        col = _BY_KEY[key]
        cols.remove(col)
        others -= col.get_render_width()
    name = max(NAME_MIN, min(NAME_MAX, width - others - 2))
    return tuple(c._replace(width=name) if c.key == "name" else c for c in cols)


def _column_at(columns: Sequence[Column], x: int) -> int | None:
    for i, col in enumerate(columns):
        x -= col.get_render_width()
        if x < 0:
            return i
    return None


class RunTable(ScrollView, can_focus=True):
    """Rows keyed by run id. :meth:`show_rows` rebuilds; :meth:`update_run` repaints one row."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Open"),  # the footer's first key: what Enter does on a run
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "scroll_top", "Top", show=False),
        Binding("end,ctrl+end", "scroll_bottom", "Bottom", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "runtable--header",
        "runtable--header-hover",
        "runtable--cursor",
        "runtable--hover",
        "runtable--even-row",
        "runtable--odd-row",
    }
    DEFAULT_CSS = """
    RunTable {
        height: 1fr;
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .runtable--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .runtable--header { background-tint: $foreground 5%; }
        }
        &:dark > .runtable--even-row { background: $surface-darken-1 40%; }
        & > .runtable--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .runtable--header { background: ansi_bright_blue; color: ansi_default; }
        & > .runtable--even-row { background: $surface-lighten-1 50%; }
        & > .runtable--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .runtable--header-hover { background: $accent 30%; }
        & > .runtable--hover { background: $block-hover-background; }
    }
    """

    @dataclass
    class _RowMessage(Message):
        table: RunTable
        run_id: str
        cursor_row: int

        @property
        def control(self) -> RunTable:
            return self.table

    class RowHighlighted(_RowMessage):
        """The cursor moved to the run ``run_id`` (at row ``cursor_row``)."""

    class RowSelected(_RowMessage):
        """Enter, or a click on the cursor's row: open the run ``run_id``."""

    @dataclass
    class HeaderSelected(Message):
        """A click on the header of the column ``column_key``."""

        table: RunTable
        column_key: str
        column_index: int
        label: str

        @property
        def control(self) -> RunTable:
            return self.table

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._order: list[str] = []  # run ids, top to bottom
        self._index: dict[str, int] = {}
        self._shown: dict[str, tuple[RunRow, bool]] = {}
        self._looks: dict[str, tuple[Any, ...]] = {}
        self._cursor = 0
        self._hover: int | None = None  # row under the mouse (-1: the header), after a mouse move
        self._cache: LRUCache[tuple[Any, ...], Strip] = LRUCache(maxsize=1024)
        self._style_key: tuple[Any, ...] = ()
        self._columns: tuple[Column, ...] = layout(TABLE_WIDTH)  # laid out again for the real width
        self._width = TABLE_WIDTH  # of the columns shown

    # ------------------------------------------------------------ public API

    @property
    def ordered_columns(self) -> tuple[Column, ...]:
        """The columns shown now (their widths follow the terminal's)."""
        return self._columns

    def on_resize(self) -> None:
        # room kept for the vertical scrollbar: rows arrive after a resize, and a table as wide as the
        # widget would then scroll sideways by the scrollbar's width
        columns = layout(self.size.width - self.styles.scrollbar_size_vertical)
        if columns != self._columns:
            self._columns = columns
            self._width = sum(c.get_render_width() for c in columns)
            self._cache.clear()
            self.virtual_size = Size(self._width, len(self._order) + 1)
            self.refresh()

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def cursor_run_id(self) -> str | None:
        return self._order[self._cursor] if self._order else None

    @property
    def run_ids(self) -> list[str]:
        return list(self._order)

    def get_row_index(self, run_id: str) -> int:
        return self._index[run_id]

    def get_row(self, run_id: str) -> list[Text]:
        """The cells of a shown run, as drawn (KeyError if it is not shown)."""
        r, sel = self._shown[run_id]
        return [col.cell(r, sel) for col in COLUMNS]

    def get_cell(self, run_id: str, column_key: str) -> Text:
        r, sel = self._shown[run_id]
        return _BY_KEY[column_key].cell(r, sel)

    def show_rows(self, rows: Sequence[RunRow], selected: set[str]) -> None:
        """Replace every row, keeping the cursor on the same run when it is still shown."""
        keep = self.cursor_run_id
        self._order = [r.id for r in rows]
        self._index = {rid: i for i, rid in enumerate(self._order)}
        self._shown = {r.id: (r, r.id in selected) for r in rows}
        self._looks = {rid: _looks(r, sel) for rid, (r, sel) in self._shown.items()}
        self.virtual_size = Size(self._width, len(self._order) + 1)
        self.refresh()
        if keep is not None and keep in self._index:
            self.move_cursor(row=self._index[keep])
        else:
            self._cursor = -1  # a new cursor (announced) at the top
            self.scroll_to(x=0, y=0, animate=False)
            self.move_cursor(row=0)

    def update_run(self, r: RunRow, selected: bool) -> None:
        """Take a shown run's new state; repaint its line only when what it shows changed."""
        old = self._shown.get(r.id)
        if old is None or old == (r, selected):
            return
        self._shown[r.id] = (r, selected)
        looks = _looks(r, selected)
        if looks != self._looks[r.id]:  # not e.g. elapsed moving within the same second
            self._looks[r.id] = looks
            self._refresh_row(self._index[r.id])

    def move_cursor(self, *, row: int | None = None, animate: bool = False, scroll: bool = True) -> None:
        """Put the cursor on ``row`` (clamped), announce it and scroll it into view."""
        new = max(0, min(self._cursor if row is None else row, len(self._order) - 1))
        old, self._cursor = self._cursor, new
        if new != old:
            self._refresh_row(old)
            self._refresh_row(new)
            if self._order:
                self.post_message(self.RowHighlighted(self, self._order[new], new))
        if scroll:
            self._scroll_to_cursor()

    # ------------------------------------------------------------ rendering

    def _refresh_row(self, index: int) -> None:
        y = index + 1 - round(self.scroll_y)  # the header is line 0
        if 0 <= index < len(self._order) and 1 <= y < self.size.height:
            self.refresh(Region(0, y, max(self._width, self.size.width), 1))

    def _rows_visible(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_to_cursor(self, defer: bool = True) -> None:
        if defer and not self.size.height:  # not laid out yet
            self.call_after_refresh(self._scroll_to_cursor, False)
            return
        top, rows = round(self.scroll_y), self._rows_visible()
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, force=True)
        elif self._cursor >= top + rows:
            self.scroll_to(y=self._cursor - rows + 1, animate=False, force=True)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    def render_lines(self, crop: Region) -> list[Strip]:
        self._style_key = (self.rich_style, self.get_pseudo_class_state())
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        base = self._style_key[0] if self._style_key else self.rich_style
        index = y - 1 + scroll_y
        if y == 0:
            strip = self._line(-1, width)
        elif index < len(self._order):
            strip = self._line(index, width)
        else:
            return Strip.blank(width, base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _line(self, index: int, width: int) -> Strip:
        """The header (index -1) or a row, full width and unscrolled, from the cache if drawn before."""
        header, cursor, hover = index < 0, index == self._cursor, index == self._hover
        looks = None if header else self._looks[self._order[index]]
        key = (looks, index % 2, cursor, hover, width, self._style_key)
        strip = self._cache.get(key)
        if strip is not None:
            return strip
        component = self.get_component_rich_style
        columns = self._columns
        if header:
            row_style = self.get_component_styles("runtable--header").rich_style
            cells = [Text.from_markup(c.label) for c in columns]
        else:
            stripe = "runtable--odd-row" if index % 2 else "runtable--even-row"
            row_style = self.get_component_styles(stripe).rich_style
            r, sel = self._shown[self._order[index]]
            cells = [c.cell(r, sel) for c in columns]
        extra = Style()
        if hover:
            extra += component("runtable--hover") + (component("runtable--header-hover") if header else Style())
        if cursor and not header:
            extra += component("runtable--cursor")
        pre = row_style + extra
        console = self.app.console
        segments: list[Segment] = []
        for text, col in zip(cells, columns):
            segments += _cell_segments(text, col.width, console)
        segments = list(Segment.apply_style(segments, pre, Style.from_color(color=extra.color)))
        if width > self._width:
            segments.append(Segment(" " * (width - self._width), pre))
        strip = Strip(segments, max(width, self._width)).simplify()
        self._cache[key] = strip
        return strip

    # ------------------------------------------------------------ keys and mouse

    def _keyboard(self) -> None:
        if self._hover is not None:  # the keyboard hides the mouse's hover highlight
            self._set_hover(None)

    def action_cursor_up(self) -> None:
        self._keyboard()
        self.move_cursor(row=self._cursor - 1)

    def action_cursor_down(self) -> None:
        self._keyboard()
        self.move_cursor(row=self._cursor + 1)

    def action_page_up(self) -> None:
        self._keyboard()
        rows = self._rows_visible()
        self.scroll_to(y=self.scroll_y - rows, animate=False, force=True)
        self.move_cursor(row=self._cursor - rows)

    def action_page_down(self) -> None:
        self._keyboard()
        rows = self._rows_visible()
        self.scroll_to(y=self.scroll_y + rows, animate=False, force=True)
        self.move_cursor(row=self._cursor + rows)

    def action_scroll_top(self) -> None:
        self._keyboard()
        self.move_cursor(row=0)

    def action_scroll_bottom(self) -> None:
        self._keyboard()
        self.move_cursor(row=len(self._order) - 1)

    def action_select_cursor(self) -> None:
        self._keyboard()
        if self._order:
            self.post_message(self.RowSelected(self, self._order[self._cursor], self._cursor))

    def _row_at(self, event: events.MouseEvent) -> tuple[int | None, int | None]:
        """(row index or -1 for the header, column index) under the mouse."""
        offset = event.get_content_offset(self)
        if offset is None:
            return None, None
        index = -1 if offset.y == 0 else offset.y - 1 + round(self.scroll_y)
        return (index if index < len(self._order) else None), _column_at(self._columns, offset.x + round(self.scroll_x))

    def _set_hover(self, index: int | None) -> None:
        old, self._hover = self._hover, index
        for i in (old, index):
            if i == -1:
                self.refresh(Region(0, 0, max(self._width, self.size.width), 1))
            elif i is not None:
                self._refresh_row(i)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        index, _col = self._row_at(event)
        if index != self._hover:
            self._set_hover(index)

    def on_leave(self, event: events.Leave) -> None:
        self._set_hover(None)

    def on_click(self, event: events.Click) -> None:
        index, col = self._row_at(event)
        if index == -1:
            if col is not None:
                c = self._columns[col]
                self.post_message(self.HeaderSelected(self, c.key, col, c.label))
        elif index is not None:
            event.stop()
            if index == self._cursor:
                self.post_message(self.RowSelected(self, self._order[index], index))
            else:
                self.move_cursor(row=index)
