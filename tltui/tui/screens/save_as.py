"""The "save as" dialog of the presets screen: asks for a preset name."""

from __future__ import annotations

import re
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]*")


class SaveAsDialog(ModalScreen[str | None]):
    """Ask for a preset name; dismisses with it, or ``None``."""

    DEFAULT_CSS = """
    SaveAsDialog { align: center middle; }
    SaveAsDialog > #save-as-box {
        width: 60; max-width: 90%; height: auto; padding: 1 2;
        border: thick $primary; background: $surface;
    }
    SaveAsDialog #save-as-error { color: $error; height: auto; }
    SaveAsDialog #save-as-hint { color: $text-muted; height: 1; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="save_as.cancel")]

    def __init__(self, suggestion: str, folder: Path) -> None:
        super().__init__()
        self.suggestion = suggestion
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical(id="save-as-box"):
            yield Label(Text(f"Save as a workspace preset in {self.folder}"))
            yield Input(self.suggestion, placeholder="name (letters, digits, . _ -)", id="save-as-name")
            yield Static("", id="save-as-error")
            yield Static("[b]enter[/b] saves · [b]esc[/b] cancels · typing replaces the name", id="save-as-hint")

    def on_mount(self) -> None:
        name = self.query_one("#save-as-name", Input)
        name.focus()
        name.select_all()  # typing replaces the suggestion, as the form's fields do

    def on_input_submitted(self, event: Input.Submitted) -> None:
        name = event.value.strip().removesuffix(".toml")
        if not NAME_RE.fullmatch(name):
            self.query_one("#save-as-error", Static).update(
                Text(f"{name!r}: use letters, digits and . _ - (start with a letter or digit)")  # "a[/b" is no markup
            )
            return
        self.dismiss(name)

    def action_cancel(self) -> None:
        self.dismiss(None)
