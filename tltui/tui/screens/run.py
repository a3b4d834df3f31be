"""One run, live: header, charts of the notebook's six metrics, freeze map, preset and log."""

from __future__ import annotations

import contextlib
import os
import re
import time
from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, VerticalScroll
from textual.widgets import RichLog, Static, TabbedContent, TabPane

from tltui.core.errors import PresetError
from tltui.core.protocol import top_k_na
from tltui.core.status import RunStatus
from tltui.tui import curves, gc_pause
from tltui.tui import formatting as fmt
from tltui.tui.screens.base import RunsView
from tltui.tui.store import RunSnapshot
from tltui.tui.widgets.key_footer import KeyFooter
from tltui.tui.widgets.metric_chart import MetricChart, Series, ema

if TYPE_CHECKING:
    from tltui.tui.widgets.layer_map import LayerMap

TRAIN_COLOR = (31, 119, 180)
VAL_COLOR = (255, 127, 14)
FAILED = (RunStatus.FAILED, RunStatus.INTERRUPTED)
FAILURE_LOG_LINES = 8
#: TensorFlow's and Keras's start-up lines, which read like errors to a newcomer but are not (a CPU
#: box's failed cuInit, CPU instruction notes, oneDNN, absl, a tf.data shuffle warning): the Log tab
#: leaves them out and says how many it left out (worker.log keeps everything)
NOISE = re.compile(
    r"failed call to cuInit|cpu_feature_guard|This TensorFlow binary is optimized|To enable the following "
    r"instructions|rebuild TensorFlow with the appropriate compiler flags|oneDNN custom operations|"
    r"All log messages before absl::InitializeLog|Unable to register cu(DNN|FFT|BLAS) factory|"
    r"computation placer already registered|`shuffle=True` was passed, but will be ignored|^\s*warnings\.warn\("
)


def quiet_log(lines: list[str]) -> tuple[list[str], int]:
    """``lines`` without TensorFlow's start-up noise (:data:`NOISE`), and how many were left out."""
    kept = [line for line in lines if not NOISE.search(line)]
    return kept, len(lines) - len(kept)


#: the tabs in order, by pane id: their titles start with their key (1-4)
TABS = (("tab-charts", "Charts"), ("tab-freeze", "Freeze map"), ("tab-preset", "Preset"), ("tab-log", "Log"))
#: while only batches arrive, the charts are rebuilt at most this often (three plotext builds
#: cost ~0.1 s of CPU); an epoch's end, the run's end or a toggle redraws them at once
LIVE_CHART_SECONDS = 1.0


def preset_summary(text: str) -> str:
    """One line: backbone, data, freeze policy, optimizer, batch, image size."""
    from tltui.core import presets

    try:
        p = presets.loads(text)
    except PresetError:
        return "preset: (does not validate; see the Preset tab)"
    if p.phases:  # per phase: its freeze, optimizer and rate
        qs = p.phase_presets()
        one_bn = len({q.freeze.batchnorm for q in qs}) == 1
        steps = " → ".join(
            f"{q.train.epochs} ep freeze {q.freeze.depth}{'' if one_bn else f' (BN {q.freeze.batchnorm})'} "
            f"{q.train.optimizer} lr {q.train.learning_rate:g}"
            for q in qs
        )
        train = f"{len(qs)} phases: {steps}" + (f" (BN {qs[0].freeze.batchnorm})" if one_bn else "")
    else:
        train = f"freeze {p.freeze.depth} (BN {p.freeze.batchnorm}) · {p.train.optimizer} lr {p.train.learning_rate:g}"
    return (
        f"{p.model.backbone} ({p.model.weights}) · {p.data.source} · {train} · batch {p.data.batch_size}"
        f" · {p.data.image_size[0]}x{p.data.image_size[1]}"
    )


def freeze_map_view(data: dict[str, Any] | None) -> RenderableType:
    """The recorded freeze map as a stage table (the full explorer is the Freeze map screen)."""
    if not data:
        return Text(
            "No freeze map recorded for this run yet (the worker writes it once the model is built).\n"
            "Press f for the freeze map explorer.",
            style="dim",
        )
    head = Text.assemble(
        ("backbone ", "dim"),
        (str(data.get("backbone", "?")), "bold"),
        ("  depth ", "dim"),
        str(data.get("depth", "?")),
        ("  batchnorm ", "dim"),
        str(data.get("batchnorm", "?")),
    )
    phase = data.get("phase")
    if isinstance(phase, dict):  # a phased run records the map of the phase it trains now
        name = f" {phase['name']}" if phase.get("name") else ""
        head.append_text(Text.assemble(("  phase ", "dim"), f"{phase.get('index')}/{phase.get('count')}{name}"))
    table = Table(box=None, expand=False, pad_edge=False)
    stages = [s for s in data.get("stages", []) if isinstance(s, dict)]
    cols = [k for k in (stages[0] if stages else {}) if not isinstance(stages[0][k], (dict, list))]
    for c in cols:
        table.add_column(c, justify="right" if isinstance(stages[0][c], (int, float)) else "left")
    for s in stages:
        style = "green" if s.get("trainable") or s.get("frozen") == 0 else ""
        table.add_row(*(str(s.get(c, "")) for c in cols), style=style)
    totals = data.get("totals")
    tail = Text(
        "totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()) if isinstance(totals, dict) else "",
        style="bold",
    )
    return Group(head, table, tail, Text("Press f for the freeze map explorer.", style="dim"))


class RunScreen(RunsView):
    DEFAULT_CSS = """
    RunScreen #run-header { height: auto; padding: 0 1; background: $boost; }
    RunScreen #run-failure { height: auto; max-height: 10; padding: 0 1; border-left: thick $error; margin: 0 1; }
    RunScreen #run-tabs { height: 1fr; }
    RunScreen #run-tabs TabPane { padding: 0; }
    RunScreen #charts { grid-size: 3 1; grid-gutter: 0 1; height: 1fr; }
    RunScreen #charts.six { grid-size: 3 2; }
    RunScreen #log-view { height: 1fr; }
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="run.back"),
        Binding("v", "panels", "3/6 panels", id="run.panels"),
        Binding("t", "xaxis", "X axis", id="run.xaxis"),
        Binding("s", "smooth", "Smooth", id="run.smooth"),
        Binding("l", "logy", "Log-y loss", id="run.logy"),
        Binding("x", "app.cancel", "Cancel", id="run.cancel"),
        Binding("r", "app.resume", "Resume", id="run.resume"),
        Binding("f", "app.freeze_map", "Freeze map", id="run.freeze_map"),
        Binding("i", "app.inference", "Inference", show=False, id="run.inference"),
        Binding("e", "export", "Export", id="run.export"),  # a completed run only (check_action)
        # the tabs' titles carry their keys; left/right switch too while the tab bar has the focus
        *(
            Binding(str(n), f"tab('{tab}')", f"{title} tab", show=False, id=f"run.tab_{tab.removeprefix('tab-')}")
            for n, (tab, title) in enumerate(TABS, 1)
        ),
    ]
    #: the footer's keys hidden first when the terminal is narrow (by action): Back, ? and q stay
    FOOTER_DROP = ("logy", "smooth", "xaxis", "panels", "app.freeze_map", "app.resume", "export", "app.cancel")
    #: the app redraws this screen at most this often (six plotext charts per redraw)
    redraw_seconds: ClassVar[float] = 0.25

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.ready = False  # runs_changed may arrive between push and mount
        self.run_id = run_id
        self.six = False
        self.xmode = "epoch"
        self.smooth = False
        self.logy = False
        self._log_size = -1
        self._preset_text = ""
        self._preset_summary = ""
        self._chart_sig: tuple[Any, ...] = ()
        self._chart_version = -1
        self._chart_at = float("-inf")
        self._header: tuple[str, str] | None = None
        self._status: str | None = None
        #: the tabs whose content is built: the charts with the screen, the others when first shown
        self._built = {"tab-charts"}
        self._layer_map: LayerMap | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="run-header")
        yield Static(id="run-failure")
        titles = {tab: f"{n} {title}" for n, (tab, title) in enumerate(TABS, 1)}
        with TabbedContent(id="run-tabs"):
            with TabPane(titles["tab-charts"], id="tab-charts"), Grid(id="charts"):
                for key in ("loss", "acc", "top5_acc", "val_loss", "val_acc", "val_top5_acc"):
                    yield MetricChart(id=f"chart-{key}")
            with TabPane(titles["tab-freeze"], id="tab-freeze"), VerticalScroll(id="freeze-fallback"):
                yield Static(id="freeze-view")
            with TabPane(titles["tab-preset"], id="tab-preset"), VerticalScroll():
                yield Static(id="preset-view")
            with TabPane(titles["tab-log"], id="tab-log"):
                yield RichLog(id="log-view", wrap=True, markup=False, highlight=False)
        yield KeyFooter(drop=self.FOOTER_DROP)

    def on_mount(self) -> None:
        store = self.app.store
        store.watch(self.run_id)
        self._preset_text = store.preset_text(self.run_id)
        self._preset_summary = preset_summary(self._preset_text)
        self._apply_layout()
        self.redraw()
        self.ready = True
        self.call_after_refresh(gc_pause.resume)  # held by the app while this screen is built

    def on_unmount(self) -> None:
        self.app.store.unwatch(self.run_id)
        gc_pause.resume()  # closed before it was drawn (the app quit): the collector is not left held

    _moved_epoch: int | None = None
    _freeze_pending = False  # the Freeze map tab was built before the run's map existed

    def _refresh_moved(self) -> None:
        """An epoch ended: the worker wrote a new weights-moved record; show it in the layer map."""
        if self._layer_map is None:  # not shown yet (built with its tab, from the map then) or no map
            return
        data = self.app.store.freeze_map(self.run_id)
        if data is not None:
            with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                self._layer_map.show(data)

    def _build_tab(self, tab: str) -> None:
        """Fill a tab the first time it is shown: the screen opens at the cost of its charts."""
        if tab in self._built:
            return
        self._built.add(tab)
        if tab == "tab-preset":
            from rich.syntax import Syntax  # pygments: only once a preset is shown

            self.query_one("#preset-view", Static).update(
                Syntax(self._preset_text, "toml", theme="ansi_dark", line_numbers=True, word_wrap=False)
            )
        elif tab == "tab-freeze":
            data = self.app.store.freeze_map(self.run_id)
            self._freeze_pending = data is None  # a starting run: shown once its worker writes the map
            self._show_freeze_map(data)

    def _show_freeze_map(self, data: dict[str, Any] | None) -> None:
        """The full layer map when the map reads; else a stage table."""
        if data:
            from tltui.tui.widgets.layer_map import LayerMap  # with its tab (a catalog of backbones)

            layer_map = LayerMap(id="layer-map")
            try:  # before mounting: a map it cannot read fails here, not later in its on_mount
                layer_map.show(data)
            except (KeyError, TypeError, ValueError, AttributeError):
                pass  # the stage table below still reads it
            else:
                self.query_one("#tab-freeze", TabPane).mount(layer_map, before=0)
                self._layer_map = layer_map
                self.query_one("#freeze-fallback").display = False
                return
        self.query_one("#freeze-view", Static).update(freeze_map_view(data))

    def target_ids(self) -> list[str]:
        return [self.run_id]

    def runs_changed(self, ids: set[str], structural: bool) -> None:
        if self.ready and self.run_id in ids:
            if self.app.store.record(self.run_id) is None:
                self.app.notify(f"{self.run_id} was deleted", severity="warning")
                self.ready = False
                if self.app.screen is self:
                    self.dismiss()
                else:  # a dialog or help over it: close those first (dismiss pops the top screen)
                    self.pop_until_active()
                    self.app.call_later(self.dismiss)
                return
            self.redraw()

    # ------------------------------------------------------------ drawing

    def redraw(self) -> None:
        snap = self.app.store.snapshot(self.run_id)
        if snap.row.status != self._status:  # the export key shows once the run completes
            self._status = snap.row.status
            self.refresh_bindings()
        self._draw_header(snap)
        self._draw_charts(snap)
        if snap.history and snap.history[-1]["epoch"] != self._moved_epoch:
            self._moved_epoch = snap.history[-1]["epoch"]
            self._refresh_moved()
        if self._freeze_pending and self.app.ws.run_paths(self.run_id).freeze_map.exists():
            self._freeze_pending = False  # the tab said "not recorded yet" and the worker wrote it since
            self._show_freeze_map(self.app.store.freeze_map(self.run_id))
        if self.query_one(TabbedContent).active == "tab-log":
            self._draw_log()

    def _draw_header(self, snap: RunSnapshot) -> None:
        r = snap.row
        said = r.detail if r.detail and r.detail.split(" ", 1)[0] in fmt.DETAIL_STYLES else None  # pending, ...
        style = fmt.status_style(r.status, said)
        ep = f"epoch {r.epoch}/{r.epochs}" if r.epochs else f"epoch {r.epoch}"
        if snap.phase:
            ep += f" · {snap.phase}"
        line1 = Text.assemble(
            (r.id, "bold"),
            "  ",
            (r.name, "bold"),
            "  ",
            (f"● {said or r.status}", style),
            f"  {ep}",
            ("  gpu ", "dim"),
            r.gpus,
            ("  elapsed ", "dim"),
            fmt.duration(r.elapsed),
            ("  eta ", "dim"),
            fmt.duration(r.eta),
        )
        if snap.kept:  # the epoch model.keras holds (or would hold now) and its numbers
            k = snap.kept
            top5 = top_k_na(snap.model.get("num_classes"), why=False) or f"top-5 {fmt.pct(k.get('val_top5_acc'))}"
            word = "kept" if k["final"] else ("best" if k["rule"] == "best" else "last")
            line1.append_text(
                Text.assemble(
                    (f"  {word} ", "dim"),
                    (fmt.pct(k["val_acc"]), "bold green"),
                    f"  {top5} @ {k['epoch']}",
                )
            )
        if snap.preparing:
            line1.append_text(Text.assemble(("  ", ""), (snap.preparing, "yellow")))
        if snap.test:
            na = top_k_na(snap.model.get("num_classes"), why=False)
            top5 = na or f"top-5 {fmt.pct(snap.test.get('test_top5_acc'))}"
            line1.append_text(
                Text.assemble(("  test ", "dim"), (fmt.pct(snap.test.get("test_acc")), "bold"), f"  {top5}")
            )
        line2 = Text(self._preset_summary, style="dim")
        if snap.model:
            line2.append(
                f" · {fmt.params(snap.model.get('total_params'))} params"
                f" ({fmt.params(snap.model.get('trainable_params'))} trainable)"
                + (" · feature cache" if snap.model.get("feature_cache") else "")
                + (f" · {snap.compute}" if snap.compute else "")
            )
        if snap.cluster:
            line2.append(f" · {snap.cluster}")
        # the header changes every second (elapsed): relayout the screen (and so re-render
        # the charts) only when a line's length changes and with it perhaps its wrapping
        header = (line1.plain, line2.plain)
        if header != self._header:
            layout = self._header is None or [len(x) for x in header] != [len(x) for x in self._header]
            self._header = header
            self.query_one("#run-header", Static).update(Group(line1, line2), layout=layout)
        failure = self.query_one("#run-failure", Static)
        if r.status in FAILED:
            tail = self.app.store.log_tail(self.run_id, FAILURE_LOG_LINES)
            failure.update(
                Group(
                    Text(f"{r.status}: {r.reason or 'no reason recorded'}", style="bold red"), Text(tail, style="dim")
                )
            )
            failure.display = True
        else:
            failure.display = False

    def _draw_charts(self, snap: RunSnapshot) -> None:
        # the header ticks every second (elapsed); the charts only change with events or toggles
        # the registry status too: a killed worker writes no Finished event, and once the run
        # is not running no tick redraws it again
        sig = (
            snap.history_version,
            snap.epoch_in_progress,
            snap.row.status,
            self.six,
            self.xmode,
            self.smooth,
            self.logy,
        )
        now = time.monotonic()
        if sig == self._chart_sig and (
            snap.version == self._chart_version
            # only live batches moved: a later redraw shows them (the app redraws a running
            # run at least every second, so within ~2 s); 0.05 s of slack for tick jitter
            or now - self._chart_at < LIVE_CHART_SECONDS - 0.05
        ):
            return
        self._chart_sig, self._chart_version, self._chart_at = sig, snap.version, now
        xlabel = curves.XLABELS[self.xmode]
        marks = curves.marks(snap, self.xmode)
        # with 5 classes or fewer the worker records no top-5 (100% by construction): say so in its panel
        top5_na = top_k_na(snap.model.get("num_classes"))
        for metric, title in curves.PANELS:
            val = f"val_{metric}"
            logy = self.logy and metric == "loss"
            note = top5_na if metric == "top5_acc" else None
            train_pts = curves.points(snap, metric, self.xmode)
            val_pts = curves.points(snap, val, self.xmode)
            train = self._series("train", train_pts, TRAIN_COLOR)
            valid = self._series("val", val_pts, VAL_COLOR)
            if self.six:
                self.query_one(f"#chart-{metric}", MetricChart).show(
                    [train], title=f"{title} (train)", xlabel=xlabel, logy=logy, marks=marks, note=note
                )
                self.query_one(f"#chart-{val}", MetricChart).show(
                    [valid], title=f"{title} (val)", xlabel=xlabel, logy=logy, marks=marks, note=note
                )
            else:
                self.query_one(f"#chart-{metric}", MetricChart).show(
                    [train, valid], title=title, xlabel=xlabel, logy=logy, marks=marks, note=note
                )

    def _series(self, label: str, pts: curves.Points, color: tuple[int, int, int]) -> Series:
        ys = ema(pts.ys) if self.smooth else pts.ys
        return Series(label, pts.xs, ys, color)

    def _draw_log(self) -> None:
        path = self.app.store.ws.run_paths(self.run_id).log
        try:
            size = os.stat(path).st_size
        except OSError:
            size = 0
        if size == self._log_size:
            return
        self._log_size = size
        log = self.query_one("#log-view", RichLog)
        log.clear()
        lines, hidden = quiet_log(self.app.store.log_tail(self.run_id).splitlines())
        if hidden:
            log.write(Text(f"({hidden} TensorFlow start-up lines left out: not errors; worker.log has them)", "dim"))
        for line in lines or ["(no log yet)"]:
            log.write(Text(line))

    def _apply_layout(self) -> None:
        grid = self.query_one("#charts", Grid)
        grid.set_class(self.six, "six")
        for key in ("val_loss", "val_acc", "val_top5_acc"):
            self.query_one(f"#chart-{key}", MetricChart).display = self.six

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self._build_tab(event.pane.id)
        if event.pane.id == "tab-log":
            self._draw_log()

    # ------------------------------------------------------------ actions

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_panels(self) -> None:
        self.six = not self.six
        self._apply_layout()
        self.redraw()
        self.notify("six panels" if self.six else "three panels (train + val)", timeout=2)

    def action_xaxis(self) -> None:
        self.xmode = curves.XMODES[(curves.XMODES.index(self.xmode) + 1) % len(curves.XMODES)]
        self.redraw()
        self.notify(f"x axis: {self.xmode}", timeout=2)

    def action_smooth(self) -> None:
        self.smooth = not self.smooth
        self.redraw()
        self.notify(f"smoothing {'on' if self.smooth else 'off'}", timeout=2)

    def action_logy(self) -> None:
        self.logy = not self.logy
        self.redraw()
        self.notify(f"log-y loss {'on' if self.logy else 'off'}", timeout=2)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "export":  # only a completed run has a model to export
            rec = self.app.store.record(self.run_id)
            return rec is not None and rec.status == RunStatus.COMPLETED
        return True

    def action_export(self) -> None:
        """The export dialog: format, quantization, then the figures measured against the run."""
        from tltui.tui.screens.export import ExportDialog

        self.app.push_screen(ExportDialog(self.run_id, self.app.ws.run_paths(self.run_id).dir))
