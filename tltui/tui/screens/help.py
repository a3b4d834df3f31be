"""Help: the keys of the screen it opened on and of the app, from their bindings so it never drifts."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

INTRO = (
    "tltui: queue transfer-learning runs, watch them live, compare them. Runs keep training when "
    "this app closes; reopening it shows full curves. Every action is also in the command palette "
    "(ctrl+p). Keys can be remapped by binding id in WORKSPACE/keymap.toml."
)

#: one line of help: the keys (as displayed), what they do, the binding id
KeyRow = tuple[str, str, str]


def key_rows(app: App[Any], bindings: list[BindingType], live: dict[str, list[Binding]]) -> list[KeyRow]:
    """One row per binding with a description (hidden ones too: the footer has no room for them).

    ``live``: the active bindings by id, so a key remapped in the keymap shows as remapped; a
    binding not active now (its key taken by the focused widget) shows its declared keys.
    """
    rows = []
    for entry in bindings:
        declared = list(Binding.make_bindings([entry]))  # "plus,equals_sign": one per key
        first = declared[0]
        if first.description:
            keys = live.get(first.id or "") or declared
            rows.append((" ".join(app.get_key_display(b) for b in keys), first.description, first.id or ""))
    return rows


def help_sections(screen: Screen[Any]) -> list[tuple[str, list[KeyRow]]]:
    """What the help shows for ``screen``: the keys it declares, then the app's (every screen)."""
    app = screen.app
    live: dict[str, list[Binding]] = {}
    for active in screen.active_bindings.values():
        if active.binding.id:
            live.setdefault(active.binding.id, []).append(active.binding)
    name = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", type(screen).__name__.removesuffix("Screen")).capitalize()
    app_bindings = list(app.BINDINGS)
    if app.ENABLE_COMMAND_PALETTE:
        app_bindings.append(
            Binding(
                app.COMMAND_PALETTE_BINDING,
                "command_palette",
                "Command palette",
                key_display=app.COMMAND_PALETTE_DISPLAY,
            )
        )
    return [
        (f"This screen: {name}", key_rows(app, screen.BINDINGS, live)),
        ("App: every screen", key_rows(app, app_bindings, live)),
    ]


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
