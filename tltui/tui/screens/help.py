"""Help: every key of every screen, generated from the bindings so it never drifts."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = (
    "tltui: queue transfer-learning runs, watch them live, compare them. Runs keep training when "
    "this app closes; reopening it shows full curves. Every action is also in the command palette "
    "(ctrl+p). Keys can be remapped by binding id in WORKSPACE/keymap.toml."
)


def bindings_table(title: str, bindings: list[BindingType], key_display) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=None, pad_edge=False,
                  show_header=False)
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("action")
    table.add_column("id", style="dim")
    for b in bindings:
        if isinstance(b, Binding) and b.description:
            table.add_row(key_display(b), b.description, b.id or "")
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help.close")]

    def __init__(self, sections: list[tuple[str, list[BindingType]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(id="help-text")

    def on_mount(self) -> None:
        parts = [Text(INTRO, style="italic"), Text("")]
        for title, bindings in self.sections:
            parts.append(bindings_table(title, bindings, self.app.get_key_display))
            parts.append(Text(""))
        parts.append(Text("esc closes this help", style="dim"))
        self.query_one("#help-text", Static).update(Group(*parts))
        self.query_one("#help-body").focus()
