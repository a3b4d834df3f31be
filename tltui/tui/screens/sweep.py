"""The sweep screen: what a budgeted sweep's stopper did, as ``tltui sweep show`` prints it.

``SweepScreen(ref, workspace=ws)`` (``ref``: the sweep's id, one of its runs, or its preset's name): one
row per run, one column per rung with the metric there and what was decided (``+`` promoted past it,
``x`` stopped there, ``=`` waiting there), the epochs spent against the full sweep's and the leader.
It reads :func:`tltui.client.sweeps.show` again every few seconds (the runner decides; this only shows);
Enter opens the run under the cursor.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Static

from tltui.core.errors import TltuiError, one_line
from tltui.core.workspace import Workspace
from tltui.tui.widgets.key_footer import KeyFooter

REFRESH_SECONDS = 2.0


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


class SweepScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="sweep.back"),
        Binding("enter", "open", "Open run", id="sweep.open"),
        Binding("r", "reload", "Reload", id="sweep.reload"),
    ]
    DEFAULT_CSS = """
    SweepScreen #sweep-head { height: auto; padding: 0 1; }
    SweepScreen #sweep-table { height: 1fr; }
    SweepScreen #sweep-foot { height: auto; padding: 0 1; }
    """

    def __init__(self, ref: str, *, workspace: Workspace) -> None:
        super().__init__()
        self.ref = ref
        self.workspace = workspace

    def compose(self) -> ComposeResult:
        # plain text: run names carry their overrides in brackets ("s[seed=1]"), which markup would eat
        yield Static(id="sweep-head", markup=False)
        yield DataTable(id="sweep-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="sweep-foot", markup=False)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.action_reload()
        self.set_interval(REFRESH_SECONDS, self.action_reload)

    def _cursor_run(self) -> str | None:
        table = self.query_one("#sweep-table", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return None if key is None else str(key)

    async def action_open(self) -> None:
        await self._open(self._cursor_run())

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        await self._open(event.row_key.value)

    async def _open(self, run_id: str | None) -> None:
        if run_id is not None:
            await self.app.run_action(f"app.open_run({run_id!r})")

    def action_reload(self) -> None:
        from tltui.client import sweeps

        head = self.query_one("#sweep-head", Static)
        table = self.query_one("#sweep-table", DataTable)
        foot = self.query_one("#sweep-foot", Static)
        try:
            view = sweeps.show(self.workspace, self.ref)
        except (TltuiError, OSError) as e:  # e.g. the sweep's runs were deleted: no rows of what was
            head.update(one_line(e))
            table.clear(columns=True)
            foot.update("")
            return
        doc = view.as_dict()
        head.update(
            f"sweep {view.key} ({view.preset}): {view.metric} ({view.mode}), eta {view.eta}, {view.rungs_text()}"
        )
        keep = self._cursor_run()  # the cursor stays on its run across reloads
        table.clear(columns=True)
        table.add_columns(
            "run", "status", *[f"rung {i + 1}" for i in range(len(view.rungs))], "final", "epochs", "name"
        )
        for r in view.rows:
            cells = {c["rung"]: f"{_num(c['value'])}{c['mark']}" for c in r.rungs}
            table.add_row(
                r.id + ("*" if r.id == view.leader else ""),
                r.state or r.status,
                *[cells.get(i + 1, "") for i in range(len(view.rungs))],
                _num(r.final),
                f"{r.epochs}/{r.full_epochs}",
                Text(r.name),
                key=r.id,
            )
        if keep is not None and keep in [r.id for r in view.rows]:
            table.move_cursor(row=table.get_row_index(keep), animate=False)
        pct = 100 * view.epochs / view.full_epochs if view.full_epochs else 0.0
        foot.update(
            f"epochs {view.epochs} of {view.full_epochs} for the full sweep ({pct:.0f}%); "
            f"{doc['hours']:.2f} h spent ({doc['gpu_hours']:.2f} GPU-h), the full sweep ~{doc['full_hours_estimate']:.2f} h\n"
            f"leader: {view.leader or '-'}   (+ promoted past the rung, x stopped there, = waiting there)"
        )
