"""A plotext figure as a rich :class:`~rich.text.Text`, read from its character matrix.

plotext's own ``build()`` writes the figure as one ANSI string (a colour code at every change of
colour) and textual-plotext decodes that string again with ``Text.from_ansi``: a third of a
chart's redraw was that round trip. :func:`figure_text` reads plotext's matrices (marker,
foreground, style, background per cell) and appends each run of one colour with its rich style,
which is the style rich decodes from the very codes plotext would have written (looked up once per
colour triple), so the text renders cell for cell as the ANSI path did.
"""

from __future__ import annotations

from typing import Any

from plotext import _utility as plotext_utility
from rich.style import Style
from rich.text import Text

_STYLES: dict[Any, Style | None] = {}


def _style(colors: tuple[Any, Any, Any]) -> Style | None:
    """The style rich decodes from plotext's codes for (foreground, style, background)."""
    try:
        return _STYLES[colors]
    except KeyError:
        pass
    except TypeError:  # a colour given as a list (an RGB list): not a dict key
        return _decode(colors)
    style = _STYLES[colors] = _decode(colors)
    return style


def _decode(colors: tuple[Any, Any, Any]) -> Style | None:
    decoded = Text.from_ansi(plotext_utility.colors_to_ansi(*colors) + "x")
    return decoded.spans[0].style if decoded.spans else None  # type: ignore[return-value]


def figure_text(figure: Any) -> Text:
    """What ``Text.from_ansi(figure.build())`` returns, built without the ANSI string. ``figure`` is a
    plotext figure (textual-plotext's ``Plot``) whose size and theme are set."""
    figure._set_sizes()
    figure._build_matrix()
    matrix = figure.monitor.matrix
    text = Text(end="\n")
    append = text.append
    for r in reversed(range(matrix.rows)):  # plotext's row 0 is the bottom line
        marker, fg, st, bg = matrix.marker[r], matrix.fullground[r], matrix.style[r], matrix.background[r]
        start, cols = 0, len(marker)
        while start < cols:
            colors = (fg[start], st[start], bg[start])
            end = start + 1
            while end < cols and fg[end] == colors[0] and st[end] == colors[1] and bg[end] == colors[2]:
                end += 1
            append("".join(marker[start:end]), _style(colors))
            start = end
        append("\n")  # as the ANSI string: every line ends with one
    return text
