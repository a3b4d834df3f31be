"""A chart's text read from plotext's matrices is what decoding plotext's ANSI string gives."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text
from textual_plotext.plot import Plot

from tltui.tui.widgets.plot_canvas import figure_text


def _drawn(text: Text) -> str:
    console = Console(width=80, color_system="truecolor", file=io.StringIO(), record=True)
    console.print(text)
    return console.export_text(styles=True)


def _figure(case: str, theme: str) -> Plot:
    plt = Plot()
    xs = list(range(40))
    if case == "lines":
        plt.plot(xs, [1 / (1 + x) for x in xs], label="train", color=(31, 119, 180), marker="braille")
        plt.plot(xs, [0.5 + x / 100 for x in xs], label="val", color=(255, 127, 14), marker="braille")
        plt.vline(10, (150, 150, 150))
        plt.xlabel("epoch")
    elif case == "logy":
        plt.plot(xs, [10 ** (-x / 10) for x in xs], color="red", marker="braille")
        plt.yscale("log")
    elif case == "bars":
        plt.bar(["a", "b", "c"], [1.0, 3.0, 2.0], color="green", width=0.6)
    plt.title(case)
    plt.plotsize(53, 20)
    plt.theme(theme)
    return plt


@pytest.mark.parametrize("theme", ["dark", "clear", "pro"])
@pytest.mark.parametrize("case", ["lines", "logy", "bars", "empty"])
def test_figure_text_draws_what_the_ansi_string_draws(case, theme):
    fast = figure_text(_figure(case, theme))
    ansi = Text.from_ansi(_figure(case, theme).build())
    assert fast.plain == ansi.plain
    assert _drawn(fast) == _drawn(ansi)
