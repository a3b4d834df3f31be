"""Small text formatters shared by screens and widgets (no Textual, no Rich)."""

from __future__ import annotations

import math
from pathlib import Path

from tltui.core.formatting import params as params  # parameter counts read the same in the CLI
from tltui.core.status import RunStatus

STATUS_STYLES: dict[str, str] = {  # looked up by a record's status, a plain str
    RunStatus.QUEUED: "cyan",
    RunStatus.RUNNING: "bold yellow",
    RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "bold red",
    RunStatus.CANCELLED: "magenta",
    RunStatus.INTERRUPTED: "red",
    RunStatus.PAUSED: "blue",
}
DETAIL_STYLES: dict[str, str] = {  # a running or paused run's detail (tltui.core.status.shown) by its first word
    "pending": "cyan",
    "cluster": "bold red",  # cluster unreachable (N s)
    "cancelling": "magenta",
    "paused": "blue",  # a budgeted sweep's run: paused at rung N
    "stopped": "magenta",  # stopped early at rung N
}


def status_style(status: str, detail: str | None = None) -> str:
    """The style of a status cell: by what it shows when that is more than the status."""
    word = (detail or "").split(" ", 1)[0]
    return DETAIL_STYLES.get(word) or STATUS_STYLES.get(status, "")


def pct(x: float | None) -> str:
    """``0.7812`` -> ``78.1%``; missing or NaN -> ``-``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f}%"


def num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


def duration(seconds: float | None) -> str:
    """``3725`` -> ``1h02m``; ``75`` -> ``1m15s``; ``None`` -> ``-``."""
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def bar(fraction: float, width: int) -> str:
    """A text progress bar of ``width`` cells with eighth-block resolution."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part else ""
    return ("█" * full + partial).ljust(width, "·")[:width]


def home_relative(path: Path) -> str:
    """``/home/ann/.local/share/tltui`` -> ``~/.local/share/tltui``."""
    try:
        return "~/" + str(path.resolve().relative_to(Path.home().resolve()))
    except (ValueError, RuntimeError, OSError):
        return str(path)
