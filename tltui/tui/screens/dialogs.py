"""Small modal dialogs: a yes/no confirmation and the preset picker used to queue runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList
from textual.widgets.option_list import Option

from tltui.core.errors import PresetError


class ConfirmDialog(ModalScreen[bool]):
    """Ask a question; dismisses with ``True`` (yes) or ``False``."""

    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog #dialog {
        width: 90%; max-width: 100; height: auto; max-height: 90%; padding: 0 1;
        border: thick $primary; background: $surface;
    }
    ConfirmDialog #question { width: 1fr; padding: 1 0; }
    ConfirmDialog #buttons { height: auto; align-horizontal: right; }
    ConfirmDialog #buttons Button { margin-left: 1; }
    """

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="question")
            with Horizontal(id="buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


@dataclass(frozen=True)
class PresetChoice:
    """A preset file as the picker lists it; ``error`` is set when it does not validate."""

    path: Path
    origin: str  # "shipped" | "workspace"
    name: str
    description: str
    runs: int
    error: str | None = None


def discover_presets(dirs: list[tuple[str, Path]]) -> list[PresetChoice]:
    """Every ``*.toml`` in the given folders, validated (an invalid one carries its first error).

    A file name found in an earlier folder hides the same name in later ones, as
    :func:`tltui.core.presets.find_preset` resolves names (the workspace's ``demo`` over the
    shipped one)."""
    from tltui.core import presets

    out = []
    seen: set[str] = set()
    for origin, folder in dirs:
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            if path.stem in seen:
                continue
            seen.add(path.stem)
            try:
                p = presets.load(path)
                out.append(PresetChoice(path, origin, p.name, p.description, len(presets.expand(p))))
            except PresetError as e:
                first = str(e.issues[0]) if e.issues else "invalid preset"
                out.append(PresetChoice(path, origin, path.stem, "", 0, error=first))
    return out


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

    def __init__(self, choices: list[PresetChoice], highlight: Path | None = None) -> None:
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
