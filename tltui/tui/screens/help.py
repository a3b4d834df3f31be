"""Help: the keys of the screen it opened on and of the app, from their bindings so it never drifts
(:mod:`tltui.tui.keys`, which the command palette reads too)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from tltui.tui.keys import key_sections

INTRO = (
    "tltui: queue transfer-learning runs, watch them live, compare them. Runs keep training when "
    "this app closes; reopening it shows full curves. Every action is also in the command palette "
    "(ctrl+p). Keys can be remapped by binding id in WORKSPACE/keymap.toml."
)

#: one line of help: the keys (as displayed), what they do, the binding id
KeyRow = tuple[str, str, str]


def help_sections(screen: Screen[Any]) -> list[tuple[str, list[KeyRow]]]:
    """What the help shows for ``screen``: the keys it declares, then the app's (every screen)."""
    return [(title, [(k.keys, k.description, k.id) for k in keys]) for title, keys in key_sections(screen)]


def keys_table(title: str, rows: list[KeyRow]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=None, pad_edge=False, show_header=False)
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("action")
    table.add_column("id", style="dim")
    for row in rows:
        table.add_row(*row)
    return table


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen #help-body {
        width: 90%; max-width: 110; height: 90%; padding: 0 1;
        border: thick $primary; background: $surface;
    }
    """

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def __init__(self, sections: list[tuple[str, list[KeyRow]]]) -> None:
        super().__init__()
        self.sections = sections

    @classmethod
    def of(cls, screen: Screen[Any]) -> HelpScreen:
        """The help for ``screen`` (the screen on top when help was asked for)."""
        return cls(help_sections(screen))

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(id="help-text")

    def on_mount(self) -> None:
        parts: list[RenderableType] = [Text(INTRO, style="italic"), Text("")]
        for title, rows in self.sections:
            parts.append(keys_table(title, rows))
            parts.append(Text(""))
        parts.append(Text("esc closes this help", style="dim"))
        self.query_one("#help-text", Static).update(Group(*parts))
        self.query_one("#help-body").focus()
