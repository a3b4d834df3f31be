"""The presets screen: browse shipped and workspace presets, edit, validate, save, queue.

The raw TOML is the single source of truth. The form writes into it through
``tomlkit`` (comments and layout kept) and is refilled from it whenever the
TOML changes. Validation runs a moment after the last keystroke: the first
error is shown below with its line highlighted in the editor, a valid preset
shows how many runs its sweep expands to and the recipe warnings. Shipped
presets are read-only: saving one saves a copy into the workspace. Unsaved
edits of every preset are kept while the screen is open.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import OptionList, Static, TextArea
from textual.widgets.option_list import Option

from tltui.core.errors import one_line
from tltui.core.workspace import RunRecord, Workspace, atomic_write
from tltui.tui.screens.save_as import SaveAsDialog
from tltui.tui.toml_edit import DELETE, TomlEditError, set_keys
from tltui.tui.widgets.key_footer import KeyFooter
from tltui.tui.widgets.preset_form import PresetForm
from tltui.tui.widgets.toml_editor import TomlEditor

#: ``queue(ws, preset_path) -> runs``: what the queue key does (tests inject a runner-less one).
QueueFn = Callable[[Workspace, Path], list[RunRecord]]

#: Seconds after the last keystroke before the preset is validated.
VALIDATE_DELAY = 0.3


def default_queue(ws: Workspace, path: Path) -> list[RunRecord]:
    from tltui.client import queue_ops

    return queue_ops.add(ws, path)


@dataclass(frozen=True)
class PresetEntry:
    path: Path
    shipped: bool

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def id(self) -> str:
        return ("shipped:" if self.shipped else "workspace:") + self.path.name


def discover(shipped_dir: Path | None, workspace_dir: Path) -> list[PresetEntry]:
    """Workspace presets first (they are the user's), then the shipped ones; by name."""
    out: list[PresetEntry] = []
    for folder, shipped in ((workspace_dir, False), (shipped_dir, True)):
        if folder is not None and folder.is_dir():
            out += [PresetEntry(p, shipped) for p in sorted(folder.glob("*.toml"))]
    return out


@dataclass(frozen=True)
class Validation:
    """What the status line shows for one version of the text."""

    errors: list[Any]  # PresetIssue
    warnings: list[str]
    runs: int | None  # None: not valid
    parsed: bool  # the schema accepted it (errors, if any, are preflight's: files, runs)


# ---------------------------------------------------------------------------- the screen


class PresetsScreen(Screen[None]):
    """Shipped and workspace presets of ``workspace`` with a synchronised form + TOML editor.

    Posts :class:`Queued` when it queued runs (the app re-reads the registry at once)."""

    class Queued(Message):
        """Runs were queued from the screen (ids in order)."""

        def __init__(self, run_ids: list[str]) -> None:
            super().__init__()
            self.run_ids = run_ids

    DEFAULT_CSS = """
    PresetsScreen { layout: vertical; }
    PresetsScreen #presets-body { height: 1fr; }
    PresetsScreen #presets-side { width: 24; border-right: vkey $primary 40%; }
    PresetsScreen #presets-side-title { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    PresetsScreen #preset-list { height: 1fr; border: none; padding: 0; }
    PresetsScreen #presets-main { width: 1fr; }
    PresetsScreen #preset-title { height: 1; padding: 0 1; background: $boost; }
    PresetsScreen #preset-editors { height: 1fr; }
    PresetsScreen #preset-editors > PresetForm { width: 1fr; }
    PresetsScreen #preset-editors > TomlEditor { width: 1fr; }
    PresetsScreen.-narrow #preset-editors.-toml > PresetForm { display: none; }
    PresetsScreen.-narrow #preset-editors.-form > TomlEditor { display: none; }
    PresetsScreen #preset-status { height: auto; max-height: 6; padding: 0 1; border-top: hkey $primary 40%; }
    """

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="presets.save"),
        Binding("f2", "save_as", "Save as", id="presets.save_as"),
        Binding("ctrl+r", "queue", "Queue", id="presets.queue"),
        Binding("ctrl+f", "freeze_map", "Freeze map", id="presets.freeze_map"),
        Binding("ctrl+t", "toggle_view", "Form/TOML", id="presets.toggle_view"),
        Binding("escape", "close", "Back", id="presets.back"),
    ]
    #: the footer's keys hidden first when the terminal is narrow (by action)
    FOOTER_DROP = ("freeze_map", "save_as", "queue", "toggle_view")

    #: Below this width the form and the TOML share the space (``ctrl+t`` switches).
    WIDE = 120

    def __init__(
        self,
        *,
        workspace: Workspace,
        shipped_dir: Path | None = None,
        queue: QueueFn | None = None,
        select: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.workspace = workspace
        self._shipped_dir = shipped_dir
        self._queue_fn = queue or default_queue
        self._select = Path(select) if select else None
        self.entries: list[PresetEntry] = []
        self.current: PresetEntry | None = None
        self.buffers: dict[Path, str] = {}
        self.saved: dict[Path, str] = {}
        self.validation: Validation | None = None
        self._form_text: str | None = None  # text the form just wrote (do not refill the form)
        self._timer: Timer | None = None
        self._leave_armed = False
        #: (key, text before, text after) of the last field emptied: typing into it again restores
        #: the key in place (its comment kept) rather than appending it at its table's end
        self._cleared: tuple[str, str, str] | None = None

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="presets-body"):
            with Vertical(id="presets-side"):
                yield Static("Presets", id="presets-side-title")
                yield OptionList(id="preset-list")
            with Vertical(id="presets-main"):
                yield Static("", id="preset-title")
                with Horizontal(id="preset-editors", classes="-form"):
                    yield PresetForm(id="preset-form")
                    yield TomlEditor(id="preset-toml")
                yield Static("", id="preset-status")
        yield KeyFooter(drop=self.FOOTER_DROP)

    def on_mount(self) -> None:
        if self._shipped_dir is None:
            from tltui.core.presets import shipped_presets_dir

            self._shipped_dir = shipped_presets_dir()
        self._layout_for(self.app.size.width)
        self.reload_list(select=self._select)
        self.query_one("#preset-list", OptionList).focus()

    def on_resize(self) -> None:
        self._layout_for(self.size.width)

    def _layout_for(self, width: int) -> None:
        self.set_class(width < self.WIDE, "-narrow")

    @property
    def form(self) -> PresetForm:
        return self.query_one(PresetForm)

    @property
    def editor(self) -> TomlEditor:
        return self.query_one(TomlEditor)

    # ------------------------------------------------------------ the list

    def reload_list(self, select: Path | None = None) -> None:
        """Re-read both folders and highlight ``select`` (or keep the current preset)."""
        self.entries = discover(self._shipped_dir, self.workspace.presets_dir)
        ol = self.query_one("#preset-list", OptionList)
        ol.clear_options()
        options: list[Option | None] = []
        last: bool | None = None
        for e in self.entries:
            if e.shipped != last:
                options.append(Option(Text("shipped" if e.shipped else "workspace", style="dim"), disabled=True))
                last = e.shipped
            options.append(Option(self._entry_label(e), id=e.id))
        ol.add_options(options)
        want = select or (self.current.path if self.current else None)
        target = next((e for e in self.entries if e.path == want), None) or (self.entries[0] if self.entries else None)
        if target is None:
            self._show_empty()
            return
        ol.highlighted = ol.get_option_index(target.id)
        self.open(target)

    def _entry_label(self, e: PresetEntry) -> Text:
        t = Text(e.name, no_wrap=True, overflow="ellipsis")
        if e.path in self.buffers and self.buffers[e.path] != self.saved.get(e.path):
            t.append(" ●", style="bold yellow")
        return t

    def _refresh_entry_label(self, e: PresetEntry) -> None:
        ol = self.query_one("#preset-list", OptionList)
        try:
            ol.replace_option_prompt(e.id, self._entry_label(e))
        except Exception:  # noqa: BLE001 - the list was rebuilt meanwhile: the next rebuild labels it
            pass

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        entry = next((e for e in self.entries if e.id == event.option.id), None)
        if entry is not None and entry != self.current:
            self.open(entry)

    def _show_empty(self) -> None:
        self.current = None
        self._title(Text(f"no presets yet: save one into {self.workspace.presets_dir}", style="dim"))
        self._status(Text("no presets", style="dim"))

    # ------------------------------------------------------------ opening and editing

    def open(self, entry: PresetEntry) -> None:
        """Show ``entry`` (its unsaved text if it has one)."""
        if entry.path not in self.saved:
            try:
                self.saved[entry.path] = entry.path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                self.notify(f"{entry.path}: cannot read: {one_line(e)}", severity="error")
                return
        self.current = entry
        text = self.buffers.get(entry.path, self.saved[entry.path])
        self.editor.load_text(text)
        self._sync_form(text, keep_focused=False)
        self._update_title()
        self.validate()

    @property
    def text(self) -> str:
        return self.editor.text

    @property
    def dirty(self) -> bool:
        return self.current is not None and self.text != self.saved.get(self.current.path)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if self.current is None:
            return
        path, text = self.current.path, event.text_area.text
        if text == self.saved.get(path):
            self.buffers.pop(path, None)
        else:
            self.buffers[path] = text
        self._leave_armed = False
        self._refresh_entry_label(self.current)
        self._update_title()
        if text != self._form_text:
            self._sync_form(text)
        self._form_text = None
        self._schedule_validation()

    def _sync_form(self, text: str, *, keep_focused: bool = True) -> None:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            self.form.disabled = True
            return
        self.form.disabled = False
        self.form.load(raw, keep_focused=keep_focused)

    def on_preset_form_field_changed(self, event: PresetForm.FieldChanged) -> None:
        if self.current is None:
            return
        text = base = self.text
        cleared, self._cleared = self._cleared, None
        if event.value is not DELETE and cleared is not None and cleared[0] == event.key and cleared[2] == text:
            base = cleared[1]  # typed into a field just emptied: the key goes back where it was
        try:
            new = set_keys(base, {event.key: event.value})
        except TomlEditError as e:
            self._status(Text(f"✗ {one_line(e)}: fix the TOML first", style="bold red"))
            return
        if event.value is DELETE:
            self._cleared = (event.key, text, new) if new != text else cleared
        if new != text:
            self._form_text = new
            self.editor.replace(new, (0, 0), self.editor.document.end)

    def on_preset_form_field_invalid(self, event: PresetForm.FieldInvalid) -> None:
        self.form.mark_invalid([event.key])
        self._status(Text(f"✗ {event.message}", style="bold red"))

    # ------------------------------------------------------------ validation

    def _schedule_validation(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(VALIDATE_DELAY, self.validate)

    def validate(self) -> Validation | None:
        """Validate the current text now; updates the status, the marks and :attr:`validation`."""
        from tltui.core import preflight, presets

        if self.current is None:
            return None
        text = self.text
        file = self.current.path.name
        try:
            preset = presets.loads(text, file=file)
        except presets.PresetError as e:
            result = Validation(list(e.issues), [], None, parsed=False)
        else:
            preset = presets.resolve_paths(preset, self.current.path.parent)
            report = preflight.check(preset, file, self.workspace)
            runs = len(presets.expand(preset))
            result = Validation(
                list(report.errors), list(report.warnings), None if report.errors else runs, parsed=True
            )
        self.validation = result
        self._show_validation(result, text)
        return result

    def _show_validation(self, v: Validation, text: str) -> None:
        from tltui.core.presets import locate

        lines: set[int] = set()
        for issue in v.errors:
            line = issue.line or (locate(text, tuple(issue.field.split("."))) if issue.field else None)
            if line:
                lines.add(line - 1)
        self.editor.set_error_lines(lines)
        self.form.mark_invalid(i.field for i in v.errors if i.field)
        out = Text()
        if v.errors:
            first = v.errors[0]
            line = first.line or (locate(text, tuple(first.field.split("."))) if first.field else None)
            where = f"line {line}: " if line else ""
            field = f"{first.field}: " if first.field else ""
            out.append(f"✗ {where}{field}{first.message}", style="bold red")
            if len(v.errors) > 1:
                out.append(f"  (+{len(v.errors) - 1} more)", style="red")
        else:
            runs = v.runs or 1
            out.append("✓ valid", style="bold green")
            out.append(f" · queues {runs} run{'s' if runs != 1 else ''}")
            if self.current and self.current.shipped:
                out.append(" · shipped, read-only: F2 saves a copy", style="dim")
        for w in v.warnings:
            out.append(f"\n⚠ {w}", style="yellow")
        self._status(out)

    # ------------------------------------------------------------ title/status

    def _title(self, text: Text) -> None:
        self.query_one("#preset-title", Static).update(text)

    def _status(self, text: Text) -> None:
        self.query_one("#preset-status", Static).update(text)

    def _update_title(self) -> None:
        if self.current is None:
            return
        t = Text()
        t.append(self.current.path.name, style="bold")
        t.append(" · shipped (read-only)" if self.current.shipped else " · workspace", style="dim")
        if self.dirty:
            t.append(" · modified", style="bold yellow")
        self._title(t)

    # ------------------------------------------------------------ actions

    def action_toggle_view(self) -> None:
        editors = self.query_one("#preset-editors")
        to_toml = editors.has_class("-form")
        editors.set_class(to_toml, "-toml")
        editors.set_class(not to_toml, "-form")
        (self.editor if to_toml else self.form).focus()

    def action_save(self) -> None:
        if self.current is None:
            return
        if self.current.shipped:
            self.notify("shipped presets are read-only: save a copy into the workspace", severity="warning")
            self.action_save_as()
            return
        self._write(self.current.path, self.text)

    def _write(self, path: Path, text: str) -> bool:
        try:
            atomic_write(path, text, mode=0o600)  # owner-only, as the workspace (tltui demo writes 0600 too)
        except OSError as e:
            self.notify(f"{path}: not saved: {one_line(e)}", severity="error")
            return False
        self.saved[path] = text
        self.buffers.pop(path, None)
        v = self.validate()
        if v is not None and v.errors:
            self.notify(f"saved {path.name} (it still has errors)", severity="warning")
        else:
            self.notify(f"saved {path.name}")
        if self.current is not None:
            self._refresh_entry_label(self.current)
        self._update_title()
        return True

    def action_save_as(self) -> None:
        if self.current is None:
            return
        suggestion = self.current.name + ("-copy" if not self.current.shipped else "")
        folder = self.workspace.presets_dir
        self.app.push_screen(SaveAsDialog(suggestion, folder), self._save_as)

    def _save_as(self, name: str | None) -> None:
        if name is None or self.current is None:
            return
        path = self.workspace.presets_dir / f"{name}.toml"
        if path.exists() and path != self.current.path:
            self.notify(f"{path} exists: choose another name", severity="error")
            return
        text = self.text
        try:
            text = set_keys(text, {"name": name})
        except TomlEditError:
            pass  # invalid TOML is saved as typed; the user fixes it in the copy
        source = self.current
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self._write(path, text):
            return
        if source.path != path:
            self.buffers.pop(source.path, None)  # the edits now live in the copy
        self.reload_list(select=path)

    def action_queue(self) -> None:
        if self.current is None:
            return
        v = self.validate()
        if v is None or v.errors:
            self.notify("fix the preset before queueing (see the error below)", severity="error")
            return
        if self.dirty:
            if self.current.shipped:
                self.notify("this shipped preset has changes: save a copy first (F2)", severity="warning")
                return
            if not self._write(self.current.path, self.text):
                return
        self._queue(self.current.path)

    @work(thread=True, exclusive=True, group="presets-queue", exit_on_error=False)
    def _queue(self, path: Path) -> None:
        ws = Workspace(self.workspace.root)  # a connection per thread
        try:
            runs = self._queue_fn(ws, path)
        except Exception as e:  # noqa: BLE001 - PresetError, WorkspaceError, a runner that cannot start: one line
            self.app.call_from_thread(self.notify, f"not queued: {one_line(e)}", severity="error", timeout=8)
            return
        finally:
            ws.close()
        ids = [r.id for r in runs]
        shown = ", ".join(ids) if len(ids) <= 4 else f"{ids[0]} … {ids[-1]}"
        self.app.call_from_thread(self._queued, ids, f"queued {len(ids)} run{'s' if len(ids) != 1 else ''}: {shown}")

    def _queued(self, ids: list[str], message: str) -> None:
        self.notify(message)
        self.post_message(self.Queued(ids))

    def action_freeze_map(self) -> None:
        if self.current is None:
            return
        v = self.validate()
        if v is None or not v.parsed:
            self.notify("fix the preset before opening its freeze map", severity="error")
            return
        from tltui.tui.screens.freeze_map import FreezeMapScreen

        entry = self.current
        screen = FreezeMapScreen(
            preset_path=str(entry.path), preset_text=self.text, write_back=not entry.shipped, workspace=self.workspace
        )
        self.app.push_screen(screen, lambda result: self._freeze_chosen(entry, result))

    def _freeze_chosen(self, entry: PresetEntry, result: tuple[int | str, str] | None) -> None:
        if not entry.shipped:  # the freeze map may have written the file (w): it is the saved text now
            try:
                self.saved[entry.path] = entry.path.read_text(encoding="utf-8")
            except OSError:
                pass
        if result is None:
            self._update_title()
            return
        depth, batchnorm = result
        if self.current != entry:
            self.open(entry)
        new = set_keys(self.text, {"freeze.depth": depth, "freeze.batchnorm": batchnorm})
        if new != self.text:
            self.editor.replace(new, (0, 0), self.editor.document.end)
        self._update_title()

    def action_close(self) -> None:
        unsaved = [p.name for p, t in self.buffers.items() if t != self.saved.get(p)]
        if unsaved and not self._leave_armed:
            self._leave_armed = True
            self.notify(
                f"unsaved changes in {', '.join(unsaved)}: ctrl+s saves; escape again discards them",
                severity="warning",
            )
            return
        self.dismiss(None)
