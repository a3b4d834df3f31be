"""The freeze-map screen: see what trains, change depth and BatchNorm policy, write it back.

Three ways in, each on the workspace it is given (``workspace=``):

- ``FreezeMapScreen(run_id="r0003")``: the map the run recorded when its model
  was built (what actually trained); read-only.
- ``FreezeMapScreen(preset_path=...)`` (from the preset editor): the preset's
  backbone at its depth and policy. ``+``/``-``/``b`` recompute the map at once
  (pure policy over the cached backbone description, no TensorFlow) and say what
  they would change in the file; ``w`` writes ``freeze.depth``/``freeze.batchnorm``
  into it (comments kept, atomic). The screen dismisses with ``(depth, batchnorm)``
  when they changed (the editor takes them into its text; ctrl+s there saves).
- ``FreezeMapScreen()``: pick any backbone and explore.

A backbone that was never described is described once by a worker subprocess
(``python -m tltui.worker describe``) in a thread; the screen says so meanwhile.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Select, Static

from tltui.core import catalog
from tltui.core.errors import one_line
from tltui.core.freeze_policy import BATCHNORM_POLICIES
from tltui.core.workspace import Workspace, WorkspaceError
from tltui.tui.widgets.key_footer import KeyFooter
from tltui.tui.widgets.layer_map import LayerMap

#: ``describe(cache_dir, backbone, (h, w), alpha, on_describe) -> description``
Describer = Callable[[Path, str, tuple[int, int], float | None, Callable[[str], None]], dict[str, Any]]

Depth = int | str

_CACHED = re.compile(r"^(?P<name>.+?)(?:-a[0-9.]+)?-(?P<h>\d+)x(?P<w>\d+)\.json$")


class WorkerDescriber:
    """Describes through :func:`tltui.core.descriptions.get` (cache, else the worker subprocess);
    :meth:`cancel` kills a running worker so closing the screen never waits for TensorFlow."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._cancelled = False

    def __call__(
        self, cache_dir: Path, name: str, size: tuple[int, int], alpha: float | None, on_describe: Callable[[str], None]
    ) -> dict[str, Any]:
        from tltui.core import descriptions

        return descriptions.get(cache_dir, name, size, alpha, run=self._run, on_describe=on_describe)

    def _run(
        self, argv: list[str], *, env: dict[str, str], timeout: float, **_: Any
    ) -> subprocess.CompletedProcess[str]:
        with subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            self._proc = proc
            if self._cancelled:
                proc.kill()
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def cancel(self) -> None:
        self._cancelled = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()


def read_run_map(ws: Workspace, run_id: str) -> dict[str, Any] | None:
    """The freeze map a run recorded, or ``None`` if it has none (yet). Raises ``ValueError`` if unreadable."""
    path = ws.run_paths(run_id).freeze_map
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError(f"{path}: not valid JSON; the run's freeze map is damaged") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list):
        raise ValueError(f"{path}: not a freeze map (no layers)")
    return doc


def depth_steps(num_stages: int) -> list[Depth]:
    """Every depth in order: 0..N, then "all"."""
    return [*range(num_stages + 1), "all"]


def step_depth(depth: Depth, num_stages: int, delta: int) -> Depth:
    steps = depth_steps(num_stages)
    i = steps.index(depth) if depth in steps else (len(steps) - 1 if delta < 0 else 0)
    return steps[max(0, min(len(steps) - 1, i + delta))]


def _file_freeze(path: Path | None, fallback: tuple[Depth, str]) -> tuple[Depth, str]:
    """``(freeze.depth, freeze.batchnorm)`` as the preset file says them (the schema's defaults when
    left out); ``fallback`` when the file does not read."""
    import tomllib

    from tltui.core.presets import FreezeConfig

    try:
        assert path is not None
        freeze = tomllib.loads(path.read_text(encoding="utf-8")).get("freeze", {})
        config = FreezeConfig.model_validate(freeze if isinstance(freeze, dict) else {})
    except Exception:  # noqa: BLE001 - unreadable or invalid: compare with the editor's text instead
        return fallback
    return config.depth, config.batchnorm


def head_for(description: dict[str, Any], dropout: float = 0.0, classes: int | None = None) -> list[Any]:
    """The standard classifier head after this backbone (class count unknown: Dense shows 0 params,
    and the map says how its size follows the classes)."""
    from tltui.core.freeze_policy import standard_head
    from tltui.core.preset_head import features_of

    return standard_head(features_of(description), classes, dropout)


class FreezeMapScreen(Screen[tuple[Depth, str] | None]):
    """The freeze map of a run (read-only), a preset (editable) or any backbone."""

    DEFAULT_CSS = """
    FreezeMapScreen { layout: vertical; }
    FreezeMapScreen > #fm-title { height: 1; padding: 0 1; background: $boost; }
    FreezeMapScreen > #fm-backbone { height: 1; margin: 0 1; display: none; }
    FreezeMapScreen.-explore > #fm-backbone { display: block; }
    FreezeMapScreen > #fm-status { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
    FreezeMapScreen > #fm-status.-error { color: $error; }
    FreezeMapScreen > #fm-phases { height: auto; max-height: 6; padding: 0 1; display: none; }
    FreezeMapScreen.-phased > #fm-phases { display: block; }
    FreezeMapScreen > LayerMap { padding: 0 1; }
    """

    BINDINGS = [
        Binding("plus,equals_sign", "depth(1)", "Deeper", id="freeze_map.deeper"),
        Binding("minus,underscore", "depth(-1)", "Shallower", id="freeze_map.shallower"),
        Binding("b", "toggle_batchnorm", "BatchNorm", id="freeze_map.batchnorm"),
        Binding("e", "expand_all", "Expand all", id="freeze_map.expand"),
        Binding("c", "collapse_all", "Collapse", id="freeze_map.collapse"),
        Binding("w", "write", "Write to preset", id="freeze_map.write"),
        Binding("escape", "close", "Back", id="freeze_map.back"),
    ]
    #: the footer's keys hidden first when the terminal is narrow (by action)
    FOOTER_DROP = ("collapse_all", "expand_all", "toggle_batchnorm", "depth(-1)", "depth(1)")

    def __init__(
        self,
        run_id: str | None = None,
        preset_path: str | None = None,
        *,
        preset_text: str | None = None,
        write_back: bool = True,
        workspace: Workspace,
        describer: Describer | None = None,
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.preset_path = Path(preset_path) if preset_path else None
        self._preset_text = preset_text
        self.write_back = write_back and self.preset_path is not None and run_id is None
        self.workspace = workspace
        self._describer: Describer = describer or WorkerDescriber()
        self._description: dict[str, Any] | None = None
        self._preset: Any = None  # tltui.core.presets.Preset in preset mode
        self.depth: Depth = 0
        self.batchnorm = "frozen"
        self._initial: tuple[Depth, str] | None = None
        self._written: tuple[Depth, str] | None = None  # what the preset file says now (preset mode)
        self.map: dict[str, Any] | None = None
        self._head: list[Any] = []
        self._n_classes: int | None = None  # the preset's data's class count, when cheap to know
        self._backbone: str | None = None

    # ------------------------------------------------------------ layout

    @property
    def mode(self) -> str:
        if self.run_id is not None:
            return "run"
        return "preset" if self.preset_path is not None or self._preset_text is not None else "explore"

    @property
    def editable(self) -> bool:
        return self.mode != "run"

    def compose(self) -> ComposeResult:
        yield Static("", id="fm-title")
        yield Select([(n, n) for n in catalog.BACKBONES], prompt="backbone", compact=True, id="fm-backbone")
        yield Static("", id="fm-status")
        yield Static("", id="fm-phases")
        yield LayerMap(id="fm-map")
        yield KeyFooter(drop=self.FOOTER_DROP)

    def on_mount(self) -> None:
        self.set_class(self.mode == "explore", "-explore")
        if self.mode == "run":
            self._load_run()
        elif self.mode == "preset":
            self._load_preset()
        else:
            # start on a backbone that is already described, so opening costs no TensorFlow
            self.query_one("#fm-backbone", Select).value = next(iter(self._cached_sizes()), "resnet50")

    def _title(self, rest: str) -> None:
        """``Freeze map`` in bold, then ``rest`` as plain text (a file's name may hold brackets)."""
        self.query_one("#fm-title", Static).update(Text.assemble(("Freeze map", "bold"), rest))

    def set_status(self, text: str, *, error: bool = False) -> None:
        if not self.is_attached:  # a describe that finished after the screen closed
            return
        status = self.query_one("#fm-status", Static)
        status.update(Text(text))
        status.set_class(error, "-error")

    # ------------------------------------------------------------ run mode

    def _load_run(self) -> None:
        assert self.run_id is not None
        try:
            run_id = self.workspace.get(self.run_id).id
            self.run_id = run_id
            doc = read_run_map(self.workspace, run_id)
        except (WorkspaceError, ValueError, OSError) as e:
            self.set_status(one_line(e), error=True)
            return
        self._title(f" of {run_id} · what it trained with · read-only")
        if doc is None:
            self.set_status(
                f"{run_id} has no freeze map yet: the worker records it when it builds the model", error=True
            )
            return
        self.depth, self.batchnorm = doc.get("depth", "?"), str(doc.get("batchnorm", "?"))
        self.map = doc
        self.query_one(LayerMap).show(doc)
        self.set_status("  ".join(self._run_warnings(run_id)) or "recorded by the worker when the model was built")

    def _run_warnings(self, run_id: str) -> list[str]:
        from tltui.core import preflight, presets

        try:
            preset = presets.load(self.workspace.run_paths(run_id).preset)
        except Exception:  # noqa: BLE001 - an old or damaged preset only costs the warnings
            return []
        return [f"⚠ {w}" for w in preflight.recipe_warnings(preset)]

    # ------------------------------------------------------------ preset mode

    def _load_preset(self) -> None:
        from tltui.core import presets

        label = self.preset_path.name if self.preset_path else "(unsaved preset)"
        self._title(f" · {label}")
        try:
            text = self._preset_text
            if text is None:
                assert self.preset_path is not None
                text = self.preset_path.read_text(encoding="utf-8")
            preset = presets.loads(text, file=label)
        except (OSError, presets.PresetError) as e:
            self.set_status(one_line(e), error=True)
            return
        self._preset = preset
        self.depth, self.batchnorm = preset.freeze.depth, preset.freeze.batchnorm
        self._initial = self._written = (self.depth, self.batchnorm)
        if self.write_back and self._preset_text is not None:  # the editor's text may differ from the file
            self._written = _file_freeze(self.preset_path, self._written)
        size = (preset.data.image_size[0], preset.data.image_size[1])
        ro = "" if self.write_back else " · changes go back to the editor only"
        self._title(f" · {label} · {preset.model.backbone} {size[0]}x{size[1]}{ro}")
        self._describe(preset.model.backbone, size, preset.model.alpha, preset.model.dropout)

    # ------------------------------------------------------------ explore mode

    def _start_backbone(self, name: str, size: tuple[int, int] | None = None) -> None:
        if name == self._backbone:
            return
        self._backbone = name
        spec = catalog.lookup(name)
        if size is None:
            size = self._cached_sizes().get(name) or ((spec.default_size,) * 2 if spec else (224, 224))
        self._title(f" · {name} {size[0]}x{size[1]} · pick a backbone above")
        self._describe(name, size, None, 0.0)

    def _cached_sizes(self) -> dict[str, tuple[int, int]]:
        """Backbones already described in this workspace (no TensorFlow needed), with their input size."""
        out: dict[str, tuple[int, int]] = {}
        for path in sorted((self.workspace.cache_dir / "backbones").glob("*.json")):
            m = _CACHED.match(path.name)
            if m and m["name"] in catalog.BACKBONES:
                out.setdefault(m["name"], (int(m["h"]), int(m["w"])))
        return out

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "fm-backbone" and self.mode == "explore" and event.value is not Select.NULL:
            self._start_backbone(str(event.value))

    # ------------------------------------------------------------ describing (thread)

    def _describe(self, name: str, size: tuple[int, int], alpha: float | None, dropout: float) -> None:
        self.set_status(f"describing backbone {name}…")
        self._describe_worker(name, size, alpha, dropout)

    @work(thread=True, exclusive=True, group="freeze-map-describe", exit_on_error=False)
    def _describe_worker(self, name: str, size: tuple[int, int], alpha: float | None, dropout: float) -> None:
        def said(message: str) -> None:
            self.app.call_from_thread(self.set_status, message + "…")

        try:
            description = self._describer(self.workspace.cache_dir, name, size, alpha, said)
            if self._preset is not None:  # a folder's subfolders, a prepared TFDS dataset's info
                from tltui.core.preset_head import preset_classes

                self._n_classes = preset_classes(self._preset)
            head = head_for(description, dropout, self._n_classes)
        except Exception as e:  # noqa: BLE001 - DescriptionError, a worker crash: one line on screen
            self.app.call_from_thread(self.set_status, one_line(e), error=True)
            return
        self.app.call_from_thread(self._described, description, head)

    def _described(self, description: dict[str, Any], head: list[Any]) -> None:
        if not self.is_attached:
            return
        self._description = description
        self._head = head
        self._redraw()

    def _redraw(self) -> bool:
        """Recompute the map for the current depth/policy; ``False`` (and an error line) if it does not fit."""
        from tltui.core.freeze_policy import FreezeError, build_map

        if self._description is None:
            return False
        try:
            doc = build_map(self._description, self.depth, self.batchnorm, head_layers=self._head)
        except FreezeError as e:
            self.set_status(one_line(e), error=True)
            return False
        from tltui.core.preset_head import features_of

        doc["num_classes"], doc["head_features"] = self._n_classes, features_of(self._description)
        self.map = doc
        self.query_one(LayerMap).show(doc)
        self.set_status(self._notes())
        self._show_phases()
        return True

    def _show_phases(self) -> None:
        """A phased preset: what trains in each phase, one line each (the map shows [freeze])."""
        from tltui.core.preset_head import phase_line, phase_rows

        rows = (
            phase_rows(self._description, self._preset, self._n_classes, self._preset.model.dropout)
            if self._preset is not None and self._description is not None
            else []
        )
        self.set_class(bool(rows), "-phased")
        lines = [phase_line(row, self._n_classes is not None) for row in rows]
        self.query_one("#fm-phases", Static).update(Text("\n".join(lines)))

    def _notes(self) -> str:
        notes: list[str] = []
        if self._preset is not None:
            from tltui.core import preflight
            from tltui.core.presets import FreezeConfig

            current = self._preset.model_copy(
                update={"freeze": FreezeConfig.model_validate({"depth": self.depth, "batchnorm": self.batchnorm})}
            )
            notes += [f"⚠ {w}" for w in preflight.recipe_warnings(current)]
            swept = [k for k in self._preset.sweep if k.startswith("freeze.")]
            if swept:
                notes.append(f"the sweep sets {', '.join(swept)} per run; this is the base value")
            if self._preset.phases:  # each phase's line is under this one
                notes.append("the preset trains in phases (below); this map and +/- edit [freeze], their default")
        pending = self._pending()
        if pending:  # said before anything is written
            where = self.preset_path.name if self.preset_path else "the preset"
            how = (
                f"w writes it to {where}; esc takes it to the editor unsaved"
                if self.write_back
                else ("esc takes it to the editor")
            )
            notes.insert(0, f"● not saved: {', '.join(pending)} ({how})")
        if not notes:
            notes.append(
                "+/- depth · b BatchNorm policy" + (" · w writes them to the preset" if self.write_back else "")
            )
        return "  ".join(notes)

    def _pending(self) -> list[str]:
        """``freeze.depth 1 → 2``: what differs from the preset file (preset mode)."""
        if self._written is None:
            return []
        out = []
        for key, old, new in (
            ("freeze.depth", self._written[0], self.depth),
            ("freeze.batchnorm", self._written[1], self.batchnorm),
        ):
            if old != new:
                out.append(f"{key} {old} → {new}")
        return out

    # ------------------------------------------------------------ actions

    def _num_stages(self) -> int:
        if self.map is not None and isinstance(self.map.get("num_stages"), int):
            return int(self.map["num_stages"])
        return len((self._description or {}).get("stages") or [])

    def action_depth(self, delta: int) -> None:
        if not self._can_edit():
            return
        new = step_depth(self.depth, self._num_stages(), delta)
        if new == self.depth:
            self.app.bell()
            return
        old, self.depth = self.depth, new
        if not self._redraw():
            self.depth = old

    def action_toggle_batchnorm(self) -> None:
        if not self._can_edit():
            return
        policies = BATCHNORM_POLICIES  # frozen -> inference -> trainable -> frozen
        at = policies.index(self.batchnorm) if self.batchnorm in policies else -1
        self.batchnorm = policies[(at + 1) % len(policies)]
        self._redraw()

    def _can_edit(self) -> bool:
        if self.mode == "run":
            self.notify(f"read-only: this is the map {self.run_id} trained with", severity="warning")
            return False
        if self._description is None:
            self.notify("the backbone is not described yet", severity="warning")
            return False
        return True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "write":  # only a preset's map writes, and only a file it may change
            return self.write_back
        return True

    def action_write(self) -> None:
        """Write the depth and policy shown into the preset file (only what changed)."""
        pending = self._pending()
        if not self.write_back or self.preset_path is None or self._written is None:
            return
        if not pending:
            self.notify(f"{self.preset_path.name} already says this", timeout=3)
            return
        from tltui.tui.toml_edit import TomlEditError, update_file

        changes = {
            key: value
            for key, value, old in (
                ("freeze.depth", self.depth, self._written[0]),
                ("freeze.batchnorm", self.batchnorm, self._written[1]),
            )
            if value != old
        }
        try:
            update_file(self.preset_path, changes)
        except (OSError, TomlEditError) as e:
            self.notify(f"{self.preset_path}: not saved: {one_line(e)}", severity="error")
            return
        self._written = (self.depth, self.batchnorm)
        self.notify(f"wrote {', '.join(pending)} to {self.preset_path.name}")
        self.set_status(self._notes())

    def action_expand_all(self) -> None:
        self.query_one(LayerMap).expand_all()

    def action_collapse_all(self) -> None:
        self.query_one(LayerMap).collapse_all()

    def on_unmount(self) -> None:
        cancel = getattr(self._describer, "cancel", None)
        if callable(cancel):
            cancel()

    def action_close(self) -> None:
        changed = self.mode == "preset" and self._initial != (self.depth, self.batchnorm)
        self.dismiss((self.depth, self.batchnorm) if changed else None)
