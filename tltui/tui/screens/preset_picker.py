"""The preset picker: choose a preset to queue (the app's ``a``; ``tltui tui --preset`` opens on it)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from tltui.core.presets import PresetFile


class PresetPicker(ModalScreen[Path | None]):
    """Pick a preset to queue; dismisses with its path, or ``None``."""

    DEFAULT_CSS = """
    PresetPicker { align: center middle; }
    PresetPicker #dialog {
        width: 90%; max-width: 100; height: auto; max-height: 90%; padding: 0 1;
        border: thick $primary; background: $surface;
    }
    PresetPicker #question { width: 1fr; padding: 1 0; }
    PresetPicker #preset-list { height: auto; max-height: 20; }
    """

    BINDINGS = [Binding("escape", "dismiss_none", "Close", id="picker.close")]

    def __init__(self, choices: list[PresetFile], highlight: Path | None = None) -> None:
        super().__init__()
        self.choices = choices
        self.highlight = highlight

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Queue a preset  [dim](enter: queue, esc: close)[/]", id="question")
            options = []
            for c in self.choices:
                head = Text.assemble((c.name, "bold"), f"  [{c.origin}]  ")
                if c.error:
                    head.append(c.error, style="red")
                else:
                    head.append(f"{c.runs} run{'s' if c.runs != 1 else ''}", style="cyan")
                    if c.description:
                        head.append(f"  {c.description}", style="dim")
                options.append(Option(head, id=str(c.path), disabled=c.error is not None))
            if not options:
                options.append(Option("no presets found (shipped presets/ or WORKSPACE/presets/)", disabled=True))
            yield OptionList(*options, id="preset-list")

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        if self.highlight is not None:
            for i, c in enumerate(self.choices):
                if c.path.resolve() == self.highlight.resolve() and c.error is None:
                    ol.highlighted = i
        ol.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.dismiss(Path(event.option.id))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
