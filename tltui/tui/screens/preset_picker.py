"""The preset picker: choose a preset to queue (the app's ``a``; ``tltui tui --preset`` opens on it), with
``--set`` overrides. It refuses what ``tltui check`` refuses: a preset that does not validate or does
not pass preflight (a missing or empty folder, ...) is listed with its first error and cannot be
picked, and so are overrides that make it fail."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from tltui.core.errors import PresetError
from tltui.core.presets import PresetFile

#: What the picker dismisses with: the preset's path and its ``--set`` overrides.
Picked = tuple[Path, dict[str, Any]]


class PresetPicker(ModalScreen[Picked | None]):
    """Pick a preset to queue; dismisses with ``(path, overrides)``, or ``None``."""

    DEFAULT_CSS = """
    PresetPicker { align: center middle; }
    PresetPicker #dialog {
        width: 90%; max-width: 100; height: auto; max-height: 90%; padding: 0 1;
        border: thick $primary; background: $surface;
    }
    PresetPicker #question { width: 1fr; padding: 1 0; }
    PresetPicker #preset-list { height: auto; max-height: 20; }
    PresetPicker #overrides { margin: 1 0 0 0; }
    PresetPicker #picker-error { color: $error; width: 1fr; }
    """

    BINDINGS = [Binding("escape", "dismiss_none", "Close", id="picker.close")]

    def __init__(self, choices: list[PresetFile], highlight: Path | None = None, ws: Any = None) -> None:
        super().__init__()
        self.choices = choices
        self.highlight = highlight
        self.ws = ws

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Queue a preset  [dim](enter: queue, tab: --set overrides, esc: close)[/]", id="question")
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
            yield Input(placeholder="--set overrides: train.epochs=3 model.weights=none", id="overrides")
            yield Label("", id="picker-error")

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        if self.highlight is not None:
            for i, c in enumerate(self.choices):
                if c.path.resolve() == self.highlight.resolve() and c.error is None:
                    ol.highlighted = i
        ol.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self._pick(Path(event.option.id))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        ol = self.query_one(OptionList)
        option = ol.get_option_at_index(ol.highlighted) if ol.highlighted is not None else None
        if option is None or option.disabled or not option.id:
            self._say("pick a preset first (up/down in the list)")
            return
        self._pick(Path(option.id))

    def _pick(self, path: Path) -> None:
        """Dismiss with ``path`` and the overrides, unless they (or the preset with them) are refused."""
        from tltui.core import preflight, presets

        try:
            overrides = presets.parse_set(shlex.split(self.query_one("#overrides", Input).value))
            preset = presets.load(path, overrides)
            preflight.require(preset, str(path), self.ws, overrides)
        except PresetError as e:
            self._say(e.lines()[0])
            return
        except ValueError as e:  # an unclosed quote
            self._say(f"--set: {e}")
            return
        self.dismiss((path, overrides))

    def _say(self, message: str) -> None:
        self.query_one("#picker-error", Label).update(Text(message))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
