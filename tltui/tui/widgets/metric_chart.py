"""A plotext chart that draws the series handed to it, and nothing else.

Callers hand over immutable :class:`Series` with :meth:`MetricChart.show`; the plot
is built only when Textual repaints the widget, so many updates between two frames
cost one build. Screens call ``show`` from their redraw timer (a bounded rate),
never per event.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from tltui.tui import downsample
from tltui.tui.widgets.plot_canvas import figure_text

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Series:
    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    color: RGB | str | None = None
    marker: str = "braille"


@dataclass(frozen=True)
class Bars:
    labels: tuple[str, ...]
    values: tuple[float, ...]
    color: RGB | str | None = None


def ema(values: Sequence[float], weight: float = 0.6) -> tuple[float, ...]:
    """TensorBoard-style exponential smoothing (debiased, so the start is not pulled to 0)."""
    out, last, n = [], 0.0, 0
    for v in values:
        n += 1
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight**n))
    return tuple(out)


#: The colour of a chart's vertical marks (phase boundaries).
MARK_COLOR = (150, 150, 150)
#: x buckets of a chart not laid out yet (a curve is drawn whole up to twice as many points).
MIN_BUCKETS = 64


class MetricChart(PlotextPlot):
    """One panel: line series (or bars) with a title, optional log-y and a legend."""

    DEFAULT_CSS = """
    MetricChart {
        height: 1fr;
        min-height: 6;
    }
    """

    def __init__(self, title: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.chart_title = title
        self._series: tuple[Series, ...] = ()
        self._bars: Bars | None = None
        self._xlabel = ""
        self._logy = False
        self._ylim: tuple[float, float] | None = None
        self._marks: tuple[float, ...] = ()
        self._note: str | None = None
        # how often data arrived and the plot was built (tests check the redraw rate)
        self.shows = 0
        self.builds = 0
        self._cache: tuple[tuple[Any, ...], RenderResult] | None = None

    def show(
        self,
        series: Sequence[Series] = (),
        *,
        title: str | None = None,
        xlabel: str = "",
        logy: bool = False,
        ylim: tuple[float, float] | None = None,
        bars: Bars | None = None,
        marks: Sequence[float] = (),
        note: str | None = None,
    ) -> None:
        """Replace what the chart draws; the plot is rebuilt at the next repaint. ``marks``: x values
        drawn as vertical lines (a phased run's phase boundaries). ``note``: drawn under the title
        instead of an empty plot when there is no data (why there never will be)."""
        self.shows += 1
        self._series = tuple(series)
        self._marks = tuple(marks)
        self._note = note
        self._bars = bars
        if title is not None:
            self.chart_title = title
        self._xlabel = xlabel
        self._logy = logy
        self._ylim = ylim
        self.refresh()

    @property
    def series(self) -> tuple[Series, ...]:
        return self._series

    def render(self) -> RenderResult:
        # Textual repaints for many reasons (layout, focus, a sibling's update); the plot
        # itself only changes with its data, size or theme.
        key = (self.shows, self.size, self.app.theme, self.theme)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        self.builds += 1
        if self._note is not None and not self._has_data():
            note = Text.assemble((self.chart_title, "bold"), "\n\n", (self._note, "dim"), justify="center")
            self._cache = (key, note)
            return note
        plt = self.plt
        plt.clear_figure()
        has_data = False
        if self._bars is not None and self._bars.labels:
            plt.bar(list(self._bars.labels), list(self._bars.values), color=self._bars.color, width=0.6)
            has_data = True
        buckets = max(MIN_BUCKETS, self.size.width)  # a cell's lowest and highest: its two braille dot columns
        for s in self._series:
            pts = downsample.minmax(s.xs, s.ys, buckets, positive=self._logy)  # each column's extremes
            if not pts:
                continue
            xs, ys = zip(*pts)
            kind = plt.scatter if len(pts) == 1 else plt.plot
            kind(list(xs), list(ys), label=s.label or None, color=s.color, marker=s.marker)
            has_data = True
        if has_data:
            for x in self._marks:
                plt.vline(x, MARK_COLOR)
        plt.title(self.chart_title if has_data else f"{self.chart_title} (no data yet)")
        if self._xlabel:
            plt.xlabel(self._xlabel)
        if has_data and self._logy:
            plt.yscale("log")
        if self._ylim is not None:
            plt.ylim(*self._ylim)
        # PlotextPlot.render, without plotext's ANSI string and rich decoding it again
        width, height = self.size.width, self.size.height
        plt.plotsize(width, height)
        plt._set_size(width, height)  # textual-plotext's belt and braces (its issue 5)
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        result = figure_text(plt)
        self._cache = (key, result)
        return result

    def _has_data(self) -> bool:
        return bool(self._bars is not None and self._bars.labels) or any(
            _finite(y) and (not self._logy or y > 0) for s in self._series for y in s.ys
        )


def _finite(y: float | None) -> bool:
    return isinstance(y, (int, float)) and math.isfinite(y)
