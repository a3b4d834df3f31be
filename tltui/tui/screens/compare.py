"""Compare runs: overlaid curves (a stable colour per run), a results table, sweep bars, CSV."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Static

from tltui.tui import curves, store
from tltui.tui import formatting as fmt
from tltui.tui.screens.base import RunsView
from tltui.tui.widgets.key_footer import KeyFooter
from tltui.tui.widgets.metric_chart import Bars, MetricChart, Series, ema

METRICS = (
    ("val_acc", "Validation accuracy"),
    ("val_top5_acc", "Validation top-5 accuracy"),
    ("val_loss", "Validation loss"),
    ("acc", "Training accuracy"),
    ("top5_acc", "Training top-5 accuracy"),
    ("loss", "Training loss"),
)

RESULT_COLUMNS = (
    # held-out numbers first (they fit 80 columns), then the training side
    ("run", "Run"),
    ("epochs", "Epochs"),
    ("val_acc", "Val acc"),
    ("val_top5", "Val top-5"),
    ("test", "Test"),
    ("test5", "Test top-5"),
    ("kept", "Kept ep"),
    ("acc", "Acc"),
    ("top5", "Top-5"),
    ("time", "Time"),
    ("params", "Trainable"),
)


def _label(snap: store.RunSnapshot) -> str:
    name = snap.row.name if len(snap.row.name) <= 24 else snap.row.name[:23] + "…"
    return f"{snap.row.id} {name}"


#: cells the results table takes besides the Run column's names (the other columns, padding, swatch, id)
RESULTS_OTHER_WIDTH = 100


def name_width(width: int) -> int:
    """How much of a run's name the results table shows in a terminal ``width`` cells wide (the other
    columns first: they fit 120 columns)."""
    return max(12, width - RESULTS_OTHER_WIDTH)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class CompareScreen(RunsView):
    DEFAULT_CSS = """
    CompareScreen .title { height: 1; padding: 0 1; background: $boost; }
    CompareScreen #compare-charts { height: 1fr; min-height: 8; }
    CompareScreen #compare-curves { width: 2fr; }
    CompareScreen #compare-bars { width: 1fr; }
    CompareScreen #results { height: auto; max-height: 45%; }
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="compare.back"),
        Binding("m", "metric", "Metric", id="compare.metric"),
        Binding("t", "xaxis", "X axis", id="compare.xaxis"),
        Binding("s", "smooth", "Smooth", id="compare.smooth"),
        Binding("e", "export", "Export CSV", id="compare.export"),
        Binding("h", "hide", "Hide/show run", id="compare.hide"),  # the results table's cursor run
    ]
    #: the footer's keys hidden first when the terminal is narrow (by action)
    FOOTER_DROP = ("smooth", "xaxis", "export", "hide", "metric")

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.ready = False  # runs_changed may arrive between push and mount
        self.run_ids = list(run_ids)
        self.metric = 0
        self.xmode = "epoch"
        self.smooth = False
        self.hidden: set[str] = set()  # runs left out of the charts (still in the table, dimmed)
        self._sig: tuple[object, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static(id="compare-title", classes="title")
        with Horizontal(id="compare-charts"):
            yield MetricChart(id="compare-curves")
            yield MetricChart("Best val acc", id="compare-bars")
        yield DataTable(id="results", cursor_type="row", zebra_stripes=True)
        yield KeyFooter(drop=self.FOOTER_DROP)

    def on_mount(self) -> None:
        table = self.query_one("#results", DataTable)
        for key, label in RESULT_COLUMNS:
            table.add_column(label, key=key)
        for rid in self.run_ids:
            self.app.store.watch(rid)
        self.redraw()
        self.ready = True

    def on_unmount(self) -> None:
        for rid in self.run_ids:
            self.app.store.unwatch(rid)

    def target_ids(self) -> list[str]:
        return list(self.run_ids)

    def runs_changed(self, ids: set[str], structural: bool) -> None:
        if not self.ready:
            return
        gone = [rid for rid in self.run_ids if self.app.store.record(rid) is None]
        if gone:
            self.run_ids = [rid for rid in self.run_ids if rid not in gone]
        if gone or ids & set(self.run_ids):
            self.redraw()

    def snapshots(self) -> list[store.RunSnapshot]:
        return [self.app.store.snapshot(rid) for rid in self.run_ids]

    def redraw(self) -> None:
        snaps = self.snapshots()
        # everything here comes from epoch histories: batch events change nothing on this screen
        sig = (
            tuple((s.row.id, s.row.name, s.history_version) for s in snaps),
            self.metric,
            self.xmode,
            self.smooth,
            frozenset(self.hidden),
            self.size.width,
        )
        if sig == self._sig:
            return
        self._sig = sig
        key, title = METRICS[self.metric]
        series = []
        shown = [s for s in snaps if s.row.id not in self.hidden]
        for s in shown:
            pts = curves.points(s, key, self.xmode, live=False)
            ys = ema(pts.ys) if self.smooth else pts.ys
            series.append(Series(_label(s), pts.xs, ys, store.run_color(s.row.id)))
        self.query_one("#compare-curves", MetricChart).show(series, title=title, xlabel=curves.XLABELS[self.xmode])
        swept, bars = store.sweep_bars(shown)
        bar_chart = self.query_one("#compare-bars", MetricChart)
        bar_chart.display = bool(bars)
        if bars:
            bar_chart.show(
                title=f"Best val acc by {swept}",
                bars=Bars(tuple(b[0] for b in bars), tuple(b[1] for b in bars), (44, 160, 44)),
            )
        self._fill_table(snaps)
        hidden = f" ({len(snaps) - len(shown)} hidden)" if len(shown) < len(snaps) else ""
        self.query_one("#compare-title", Static).update(
            f"[b]Compare[/b] {len(snaps)} runs{hidden}  ·  [dim]m metric · t x axis · s smooth · h hide a run"
            " · e export CSV[/]"
        )

    def on_resize(self) -> None:
        if self.ready:
            self.redraw()  # the Run column's width follows the terminal's

    def _fill_table(self, snaps: list[store.RunSnapshot]) -> None:
        table = self.query_one("#results", DataTable)
        keep = table.cursor_row
        table.clear()
        width = name_width(self.size.width or self.app.size.width)
        for r in store.results(snaps):
            hidden = r.id in self.hidden
            swatch = Text("□ " if hidden else "■ ", style=store.hex_color(store.run_color(r.id)))
            label = Text(f"{r.id} {_cut(r.name, width)}", style="dim strike" if hidden else "")
            table.add_row(
                swatch + label,
                str(r.epochs),
                Text(fmt.pct(r.val_acc), style="bold"),
                fmt.pct(r.val_top5_acc),
                fmt.pct(r.test_acc),
                fmt.pct(r.test_top5_acc),
                str(r.kept_epoch or "-"),
                fmt.pct(r.acc),
                fmt.pct(r.top5_acc),
                fmt.duration(r.seconds),
                fmt.params(r.trainable_params),
                key=r.id,
            )
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1), animate=False)

    # ------------------------------------------------------------ actions

    def action_hide(self) -> None:
        """Leave the run under the results table's cursor out of the charts (again: back in)."""
        table = self.query_one("#results", DataTable)
        if not table.row_count:
            return
        rid = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if rid is None:
            return
        if rid not in self.hidden and len(self.hidden) + 1 >= len(self.run_ids):
            self.notify("one run at least stays in the charts", severity="warning", timeout=3)
            return
        self.hidden ^= {rid}
        self.redraw()

    def action_metric(self) -> None:
        self.metric = (self.metric + 1) % len(METRICS)
        self.redraw()

    def action_xaxis(self) -> None:
        """epoch -> time -> (when a run has phases) phase: aligned where each run's last phase starts."""
        modes = ["epoch", "time"] + (["phase"] if any(s.phase_starts for s in self.snapshots()) else [])
        self.xmode = modes[(modes.index(self.xmode) + 1) % len(modes)] if self.xmode in modes else "epoch"
        self.redraw()

    def action_smooth(self) -> None:
        self.smooth = not self.smooth
        self.redraw()

    def action_export(self) -> None:
        rows = store.results(self.snapshots())
        try:
            path = store.export_results(self.app.store.ws, rows, self.app.store.clock())
        except OSError as e:
            self.notify(f"cannot write the CSV: {e}", severity="error")
            return
        self.notify(f"wrote {path}")
