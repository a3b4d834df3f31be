"""A form for the preset fields people change most, one compact row each.

The form holds no preset of its own: :meth:`PresetForm.load` shows the values of
a parsed TOML dict, and every edit posts :class:`PresetForm.FieldChanged` with
the dotted key and the TOML value to write (or :data:`~tltui.tui.toml_edit.DELETE`
as soon as a field is emptied, which means "use the default"); a ``[[phases]]`` entry's row
posts ``phases.N`` with the dotted keys it sets. The screen writes the
TOML and validates; the form only marks the rows the validator complains about.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import tomlkit
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select

from tltui.core import catalog
from tltui.core.presets import parse_value
from tltui.tui.toml_edit import DELETE


@dataclass(frozen=True)
class FormField:
    key: str  # dotted preset key ("sweep" for the whole sweep table)
    label: str
    kind: str  # text | value | size | select | sweep
    placeholder: str = ""
    options: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return "field-" + self.key.replace(".", "-").replace("_", "-")


#: Placeholders (drawn in italics, dimmed: never mistaken for a value) say what an empty field means:
#: "default: X" (the key is left out of the TOML) or, for the sweep, none ("e.g." shows the syntax).
FIELDS: tuple[FormField, ...] = (
    FormField("data.source", "source", "text", "required: tfds:NAME or folder:PATH"),
    FormField("data.image_size", "image size", "size", "default: 224x224"),
    FormField("data.batch_size", "batch size", "value", "default: 32"),
    FormField("model.backbone", "backbone", "select", options=tuple(catalog.BACKBONES)),
    FormField("model.weights", "weights", "text", "default: imagenet (or none, run:ID, PATH.weights.h5)"),
    FormField("freeze.depth", "freeze depth", "value", "default: 0 (0 .. N, or all)"),
    FormField("freeze.batchnorm", "BatchNorm", "select", options=("frozen", "inference", "trainable")),
    FormField("train.epochs", "epochs", "value", "default: 10"),
    FormField("train.optimizer", "optimizer", "select", options=("sgd", "adam", "adamw", "rmsprop")),
    FormField("train.learning_rate", "learning rate", "value", "default: 0.001"),
    FormField("sweep", "sweep", "sweep", "no sweep: one run (e.g. freeze.depth=[0,1,2]; train.epochs=[5,10])"),
)
BY_KEY = {f.key: f for f in FIELDS}
BY_ID = {f.id: f for f in FIELDS}


def _get(d: Mapping[str, Any], key: str) -> Any:
    cur: Any = d
    for p in key.split("."):
        if not isinstance(cur, Mapping) or p not in cur:
            return None
        cur = cur[p]
    return cur


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return repr(v)
    return tomlkit.item(v).as_string()


def grid_sweep(v: Any) -> bool:
    """The form edits a ``[sweep]`` that is a grid (every key a list of values), or none."""
    return v is None or (isinstance(v, Mapping) and all(isinstance(vals, list) for vals in v.values()))


def sweep_summary(v: Mapping[str, Any]) -> str:
    """What the form shows, read-only, for a sampled or budgeted sweep (it is edited in the TOML)."""
    keys = [k for k in v if k not in ("samples", "seed", "budget")]
    extra = [k for k in ("samples", "budget") if k in v]
    return f"{', '.join(keys) or '-'} ({', '.join(extra) or 'sampled'}): edit [sweep] in the TOML"


def show_value(f: FormField, v: Any) -> str:
    """The text a field shows for the TOML value ``v`` (``None``: missing)."""
    if v is None:
        return ""
    if f.kind == "size" and isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return f"{v[0]}x{v[1]}"
    if f.kind == "sweep" and isinstance(v, Mapping):
        return "; ".join(f"{k}={tomlkit.item(vals).as_string()}" for k, vals in v.items())
    if f.kind == "value" and isinstance(v, str) and v != "all":
        return tomlkit.item(v).as_string()  # quoted, so it reads back as the same string
    return _toml_value(v)


#: A phase row's placeholder: what an empty one means, and the syntax.
PHASE_PLACEHOLDER = "the fields above (e.g. train.epochs=3; freeze.depth=2; train.learning_rate=1e-4)"


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def phase_text(phase: Mapping[str, Any]) -> str:
    """What a ``[[phases]]`` entry sets besides its name, as a phase row shows it:
    ``"freeze.depth=3; train.epochs=4; train.learning_rate=0.0001"``."""
    keys = {k: v for k, v in _flat(phase).items() if k != "name"}
    return "; ".join(f"{k}={tomlkit.item(v).as_string()}" for k, v in keys.items())


def parse_phase(raw: str) -> dict[str, Any]:
    """``"train.epochs=3; freeze.depth=2"`` -> ``{"train.epochs": 3, "freeze.depth": 2}``; raises
    ``ValueError`` (one line) for a part that is not ``KEY=VALUE``."""
    out: dict[str, Any] = {}
    for part in _split_top(raw):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise ValueError(f"phase: expected KEY=VALUE like train.epochs=3, got {part.strip()!r}")
        out[key] = parse_value(value.strip())
    return out


def epochs_placeholder(raw: Mapping[str, Any]) -> str:
    """The epochs field's placeholder: a phased preset trains each phase's epochs (``"3 + 4"``)."""
    phases = raw.get("phases")
    if not isinstance(phases, list) or not phases:
        return BY_KEY["train.epochs"].placeholder
    base = _get(raw, "train.epochs")
    each = [_get(ph, "train.epochs") if isinstance(ph, Mapping) else None for ph in phases]
    total = " + ".join(str(e if e is not None else (base if base is not None else 10)) for e in each)
    return f"phases: {total} epochs (default 10 each)"


def parse_field(f: FormField, text: str) -> Any:
    """The TOML value for what the user typed; :data:`DELETE` when empty.

    Raises ``ValueError`` (one line) for a sweep that does not parse.
    """
    raw = text.strip()
    if not raw:
        return DELETE
    if f.kind == "text":
        return raw
    if f.kind == "size":
        m = re.fullmatch(r"(\d+)\s*[x×, ]\s*(\d+)", raw) or re.fullmatch(r"(\d+)()", raw)
        if m:
            h = int(m.group(1))
            return [h, int(m.group(2)) if m.group(2) else h]
        return parse_value(raw)
    if f.kind == "sweep":
        return parse_sweep(raw)
    return parse_value(raw)


def parse_sweep(raw: str) -> dict[str, list[Any]]:
    """``"freeze.depth=[0,1]; train.epochs=[3,5]"`` -> ``{"freeze.depth": [0, 1], ...}``."""
    out: dict[str, list[Any]] = {}
    for part in _split_top(raw):
        key, sep, value = part.partition("=")
        key = key.strip().strip('"')
        if not sep or not key:
            raise ValueError(f"sweep: expected KEY=[values], got {part.strip()!r}")
        try:
            parsed = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            raise ValueError(f"sweep: {key}: expected a list like [0, 1, 2], got {value.strip()!r}") from None
        out[key] = parsed if isinstance(parsed, list) else [parsed]
    return out


def _split_top(raw: str) -> Iterable[str]:
    """Split on ``;`` outside brackets and quotes."""
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(raw):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == ";" and depth == 0:
            if raw[start:i].strip():
                yield raw[start:i]
            start = i + 1
    if raw[start:].strip():
        yield raw[start:]


class PresetForm(VerticalScroll):
    """Rows of label + input/select for :data:`FIELDS`."""

    DEFAULT_CSS = """
    PresetForm { height: 1fr; padding: 0 1; }
    PresetForm > .form-row { height: 1; }
    PresetForm > .form-row > Label { width: 15; color: $text-muted; }
    PresetForm > .form-row > Input, PresetForm > .form-row > Select { width: 1fr; }
    PresetForm > .form-row > Input > .input--placeholder { text-style: italic; }
    PresetForm > .form-row.-invalid > Label { color: $error; text-style: bold; }
    PresetForm > .form-row.-invalid > Input { background: $error 20%; }
    PresetForm:disabled { opacity: 60%; }
    """

    class FieldChanged(Message):
        """The user changed ``key``; ``value`` is the TOML value or ``DELETE``."""

        def __init__(self, key: str, value: Any) -> None:
            self.key = key
            self.value = value
            super().__init__()

    class FieldInvalid(Message):
        """What the user typed in ``key`` cannot become TOML (``message``: one line)."""

        def __init__(self, key: str, message: str) -> None:
            self.key = key
            self.message = message
            super().__init__()

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._options: dict[str, list[str]] = {}
        self._phase_texts: dict[int, str] = {}  # what each phase row showed when last loaded

    def compose(self) -> ComposeResult:
        for f in FIELDS:
            with Horizontal(classes="form-row", id=f"row-{f.id}"):
                yield Label(f.label)
                if f.kind == "select":
                    yield Select([(o, o) for o in f.options], id=f.id, compact=True, prompt="(default)")
                else:
                    yield Input(placeholder=f.placeholder, id=f.id, compact=True)

    def load(self, raw: Mapping[str, Any], *, keep_focused: bool = True) -> None:
        """Show the values of a parsed preset dict; posts no change messages.

        The focused field keeps what the user is typing (its text may not be a
        TOML value yet, e.g. ``1e-``).
        """
        focused = self.screen.focused if keep_focused and self.is_attached else None
        phases = raw.get("phases")
        self._show_phases([p for p in phases if isinstance(p, Mapping)] if isinstance(phases, list) else [], focused)
        self.query_one(f"#{BY_KEY['train.epochs'].id}", Input).placeholder = epochs_placeholder(raw)
        with self.prevent(Input.Changed, Select.Changed):
            for f in FIELDS:
                if focused is not None and focused.id == f.id:
                    continue
                v = _get(raw, f.key)
                if f.kind == "select":
                    sel = self.query_one(f"#{f.id}", Select)
                    options = list(f.options)
                    if isinstance(v, str) and v not in options:
                        options.append(v)  # e.g. a hub: backbone or a test backbone
                    if options != self._options.get(f.key, list(f.options)):
                        sel.set_options([(o, o) for o in options])
                        self._options[f.key] = options
                    sel.value = v if isinstance(v, str) else Select.NULL
                else:
                    inp = self.query_one(f"#{f.id}", Input)
                    text = show_value(f, v)
                    if f.kind == "sweep":  # a grid only: sampled keys, samples, seed and a budget stay in the TOML
                        inp.disabled = not grid_sweep(v)
                        if inp.disabled:
                            text = sweep_summary(v)
                    if inp.value != text:
                        inp.value = text

    def _show_phases(self, phases: list[Mapping[str, Any]], focused: Any) -> None:
        """One row per ``[[phases]]`` entry (its name as the label, what it sets as the value)."""
        rows = list(self.query(".phase-row"))
        for extra in rows[len(phases) :]:
            extra.remove()
        for n, phase in enumerate(phases, 1):
            text = phase_text(phase)
            self._phase_texts[n] = text
            name = phase.get("name")
            label = f"phase {n}" + (f" {name}" if isinstance(name, str) and name else "")
            if n > len(rows):
                self.mount(
                    Horizontal(
                        Label(Text(label[:14])),  # a phase's name is not markup
                        Input(text, placeholder=PHASE_PLACEHOLDER, id=f"phase-{n}", compact=True),
                        classes="form-row phase-row",
                        id=f"row-phase-{n}",
                    )
                )
                continue
            rows[n - 1].query_one(Label).update(Text(label[:14]))
            inp = self.query_one(f"#phase-{n}", Input)
            if inp is not focused and inp.value != text:
                with self.prevent(Input.Changed):
                    inp.value = text

    def value_of(self, key: str) -> str:
        """What the field for ``key`` shows now (for tests and the status line)."""
        if key.startswith("phases."):
            return self.query_one(f"#phase-{key.split('.')[1]}", Input).value
        f = BY_KEY[key]
        w = self.query_one(f"#{f.id}")
        if isinstance(w, Select):
            return "" if w.value is Select.NULL else str(w.value)
        assert isinstance(w, Input)
        return w.value

    def mark_invalid(self, keys: Iterable[str]) -> None:
        """Highlight the rows of these dotted keys (others are cleared)."""
        bad = set()
        for k in keys:
            if k.startswith("sweep"):
                bad.add("sweep")
            elif k.startswith("phases.") and k.split(".")[1].isdigit():
                bad.add(f"phase-{k.split('.')[1]}")  # "phases.2.train.epochs": phase 2's row
            elif k in BY_KEY:
                bad.add(k)
        for f in FIELDS:
            self.query_one(f"#row-{f.id}").set_class(f.key in bad, "-invalid")
        for row in self.query(".phase-row"):
            row.set_class((row.id or "").removeprefix("row-") in bad, "-invalid")

    def on_input_changed(self, event: Input.Changed) -> None:
        wid = event.input.id or ""
        if wid.startswith("phase-"):
            event.stop()
            n = int(wid.removeprefix("phase-"))
            if event.value == self._phase_texts.get(n):
                return  # what the TOML says already
            try:
                keys = parse_phase(event.value)
            except ValueError as e:
                self.post_message(self.FieldInvalid(f"phases.{n}", str(e)))
                return
            self.post_message(self.FieldChanged(f"phases.{n}", keys))
            return
        f = BY_ID.get(wid)
        if f is None:
            return
        event.stop()
        try:
            value = parse_field(f, event.value)
        except ValueError as e:
            self.post_message(self.FieldInvalid(f.key, str(e)))
            return
        # an emptied field removes its key at once (the default applies; saving now saves that);
        # the screen puts a value typed next back where the key was, comment included
        self.post_message(self.FieldChanged(f.key, value))

    def _commit_empty(self, inp: Input) -> None:
        f = BY_ID.get(inp.id or "")
        if f is not None and not inp.value.strip():
            self.post_message(self.FieldChanged(f.key, DELETE))

    def on_input_blurred(self, event: Input.Blurred) -> None:
        event.stop()
        self._commit_empty(event.input)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._commit_empty(event.input)

    def on_select_changed(self, event: Select.Changed) -> None:
        f = BY_ID.get(event.select.id or "")
        if f is None:
            return
        event.stop()
        value = DELETE if event.value is Select.NULL else event.value
        self.post_message(self.FieldChanged(f.key, value))
