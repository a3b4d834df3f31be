"""RunTable on its own: cursor keys, one-row repaints, re-ordering, clicks, the pinned header."""

from __future__ import annotations

import dataclasses

from textual.app import App, ComposeResult
from textual.geometry import Region

from tests.tui.screen_host import asynctest, screen_text
from tltui.tui.store import RunRow
from tltui.tui.widgets.run_table import COLUMNS, TABLE_WIDTH, RunTable

SIZE = (130, 11)  # the header and 10 rows; the table is 123 columns wide
NAME_X = sum(c.get_render_width() for c in COLUMNS[:2]) + 2  # inside the Name header


def row(i: int, **kw) -> RunRow:
    base = dict(
        id=f"r{i:04d}",
        name=f"run-{i:02d}",
        status="completed",
        preset_name="p",
        epoch=5,
        epochs=5,
        progress=1.0,
        val_acc=0.5,
        val_top5_acc=0.8,
        best_val_acc=0.5,
        best_val_top5_acc=0.8,
        elapsed=60.0,
        eta=None,
        gpus="0",
        reason=None,
        created=float(i),
        loaded=True,
    )
    return RunRow(**{**base, **kw})


class TableApp(App[None]):
    def __init__(self, rows: list[RunRow]) -> None:
        super().__init__()
        self.rows, self.messages = rows, []

    def compose(self) -> ComposeResult:
        yield RunTable(id="runs")

    def on_mount(self) -> None:
        table = self.query_one(RunTable)
        table.show_rows(self.rows, set())
        table.focus()

    def on_run_table_row_selected(self, event: RunTable.RowSelected) -> None:
        self.messages.append(("selected", event.run_id))

    def on_run_table_row_highlighted(self, event: RunTable.RowHighlighted) -> None:
        self.messages.append(("highlighted", event.run_id))

    def on_run_table_header_selected(self, event: RunTable.HeaderSelected) -> None:
        self.messages.append(("header", event.column_key))


def lines(app: App) -> list[str]:
    return screen_text(app).splitlines()


ROWS = [row(i) for i in range(1, 31)]


@asynctest
async def test_keys_move_the_cursor_and_scroll_it_into_view_under_a_pinned_header():
    app = TableApp(ROWS)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(RunTable)
        assert table.cursor_row == 0 and table.cursor_run_id == "r0001"
        await pilot.press("down", "down")
        assert table.cursor_run_id == "r0003" and ("highlighted", "r0003") in app.messages
        await pilot.press("up")
        assert table.cursor_row == 1
        await pilot.press("end")
        await pilot.pause()
        assert table.cursor_run_id == "r0030" and table.scroll_y > 0
        shown = lines(app)
        assert shown[0].split()[:3] == ["ID", "Name", "Status"]  # the header stays on top
        assert "r0030" in shown[-1] and "r0001" not in screen_text(app)
        await pilot.press("pageup")
        assert table.cursor_row == 30 - 1 - 10
        await pilot.press("home")
        await pilot.pause()
        assert table.cursor_row == 0 and table.scroll_y == 0 and "r0001" in lines(app)[1]
        await pilot.press("pagedown")
        assert table.cursor_row == 10
        await pilot.press("up", "enter")
        await pilot.pause()
        assert app.messages[-1] == ("selected", "r0010")


@asynctest
async def test_scrolling_moves_the_rows_under_the_header():
    app = TableApp(ROWS)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(RunTable)
        await pilot.pause()
        table.scroll_to(y=5, animate=False)
        await pilot.pause()
        shown = lines(app)
        assert shown[0].split()[:2] == ["ID", "Name"] and "r0006" in shown[1]


@asynctest
async def test_updating_one_run_repaints_only_its_line():
    app = TableApp(ROWS)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(RunTable)
        await pilot.pause()
        refreshed, drawn = [], []
        refresh, render_line = table.refresh, table.render_line
        table.refresh = lambda *regions, **kw: refreshed.append(regions) or refresh(*regions, **kw)
        table.render_line = lambda y: drawn.append(y) or render_line(y)
        table.update_run(dataclasses.replace(ROWS[3], elapsed=4 * 3600.0), False)
        assert table.get_cell("r0004", "elapsed").plain == "4h00m"
        assert refreshed == [(Region(0, 4, max(TABLE_WIDTH, table.size.width), 1),)]
        await pilot.pause()
        assert set(drawn) == {4}  # the other lines are neither rendered nor re-measured
        assert "4h00m" in lines(app)[4]
        refreshed.clear()
        # the same text (elapsed within the same second): nothing to repaint
        table.update_run(dataclasses.replace(ROWS[3], elapsed=4 * 3600.0 + 0.2), False)
        # a run below the visible rows: its line is off screen, nothing to repaint either
        table.update_run(dataclasses.replace(ROWS[25], elapsed=7.0), False)
        assert refreshed == [] and table.get_cell("r0026", "elapsed").plain == "7s"
        table.update_run(row(99), False)  # not shown: ignored
        assert "r0099" not in table.run_ids


@asynctest
async def test_reordering_keeps_the_cursor_on_the_same_run():
    app = TableApp(ROWS)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(RunTable)
        table.move_cursor(row=table.get_row_index("r0005"))
        table.show_rows(list(reversed(ROWS)), {"r0005"})
        await pilot.pause()
        assert table.run_ids[0] == "r0030" and table.cursor_run_id == "r0005" and table.cursor_row == 25
        assert "●" in str(table.get_row("r0005")[0])
        assert any("r0005" in line for line in lines(app)[1:])  # scrolled into view
        table.show_rows([r for r in ROWS if r.id != "r0005"], set())  # gone: back to the top
        assert table.cursor_row == 0 and table.cursor_run_id == "r0001"
        table.show_rows([], set())
        assert table.cursor_run_id is None and table.run_ids == []
        await pilot.press("down", "enter")
        assert table.cursor_run_id is None


@asynctest
async def test_clicks_move_the_cursor_select_its_row_and_sort_by_a_header():
    app = TableApp(ROWS)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(RunTable)
        await pilot.click(RunTable, offset=(NAME_X, 3))
        assert table.cursor_run_id == "r0003" and ("selected", "r0003") not in app.messages
        await pilot.click(RunTable, offset=(NAME_X, 3))
        await pilot.pause()
        assert app.messages[-1] == ("selected", "r0003")
        await pilot.click(RunTable, offset=(NAME_X, 0))
        await pilot.pause()
        assert app.messages[-1] == ("header", "name") and table.cursor_run_id == "r0003"
        await pilot.click(RunTable, offset=(1, 0))
        await pilot.pause()
        assert app.messages[-1] == ("header", "sel")


def test_the_name_column_takes_the_spare_width_and_a_narrow_terminal_drops_columns_first():
    from tltui.tui.widgets.run_table import NAME_MAX, layout

    def widths(width: int) -> dict[str, int]:
        return {c.key: c.width for c in layout(width)}

    assert widths(TABLE_WIDTH)["name"] == 24 and len(layout(TABLE_WIDTH)) == len(COLUMNS)  # as before
    wide = widths(200)
    assert wide["name"] == min(NAME_MAX, 200 - (TABLE_WIDTH - 26) - 2) and len(wide) == len(COLUMNS)
    narrow = widths(80)
    assert sum(c.get_render_width() for c in layout(80)) <= 80
    assert {"id", "name", "status", "epoch", "val_acc", "best"} <= set(narrow)  # Kept stays
    assert "best5" not in narrow and "top5" not in narrow
    assert set(widths(120)) >= {"elapsed", "eta"}


@asynctest
async def test_a_long_name_shows_whole_on_a_wide_terminal():
    long = "d2p-nonedemo-two-phase-copy-seed-1"  # 34 characters: cut at 24 before
    app = TableApp([row(1, name=long)])
    async with app.run_test(size=(200, 5)) as pilot:
        await pilot.pause()
        assert long in lines(app)[1]
    async with TableApp([row(1, name=long)]).run_test(size=(100, 5)) as pilot:
        await pilot.pause()
        line = lines(pilot.app)[1]
        assert long not in line and "d2p-nonedemo-two-phase-copy" in line and "…" in line  # cut, and says so
