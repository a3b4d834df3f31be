"""The presets screen: list, form <-> TOML sync, validation at the line, save, save as, queue."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.tui.screen_host import HostApp, asynctest, screen_text
from tltui.core.workspace import RunRecord, Workspace
from tltui.tui.screens import presets as presets_screen
from tltui.tui.screens.presets import PresetsScreen
from tltui.tui.screens.save_as import SaveAsDialog
from tltui.tui.toml_edit import DELETE, TomlEditError, set_keys
from tltui.tui.widgets.preset_form import BY_KEY, parse_field, parse_sweep, show_value

PRESET = """\
# fine-tune on CIFAR-10
name = "{name}"

[data]
source = "tfds:cifar10"
image_size = [32, 32]  # small on purpose

[model]
backbone = "resnet50"

[freeze]
depth = 1  # stem + conv2
batchnorm = "frozen"

[train]
epochs = 3
optimizer = "sgd"
learning_rate = 0.01
"""

SWEEP = '\n[sweep]\n"freeze.depth" = [0, 1, 2]\n'


@pytest.fixture(autouse=True)
def _fast_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presets_screen, "VALIDATE_DELAY", 0.01)


@pytest.fixture
def folders(ws: Workspace, tmp_path: Path) -> tuple[Workspace, Path]:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "cifar-ft.toml").write_text(PRESET.format(name="cifar-ft"))
    (shipped / "demo.toml").write_text(PRESET.format(name="demo"))
    (ws.presets_dir / "mine.toml").write_text(PRESET.format(name="mine") + SWEEP)
    return ws, shipped


class Queued:
    """A queue function that records runs in the registry without starting a runner."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def __call__(self, ws: Workspace, path: Path) -> list[RunRecord]:
        from tltui.client import queue_ops

        self.paths.append(path)
        return queue_ops.add(ws, path, start_runner=False)


def make_app(folders: tuple[Workspace, Path], **kwargs: Any) -> HostApp:
    ws, shipped = folders
    return HostApp(lambda: PresetsScreen(workspace=ws, shipped_dir=shipped, **kwargs))


async def settle(pilot: Any) -> None:
    await pilot.pause()
    await pilot.pause(0.05)
    await pilot.pause()


def screen_of(app: HostApp) -> PresetsScreen:
    screen = app.screen
    assert isinstance(screen, PresetsScreen)
    return screen


async def type_into(pilot: Any, selector: str, text: str) -> None:
    """Focus the field and type ``text`` over it (long texts are pasted in one go)."""
    widget = pilot.app.screen.query_one(selector)
    widget.focus()
    if len(text) > 4:
        widget.value = text
    else:
        widget.value = ""
        await pilot.press(*text)
    await settle(pilot)


# ---------------------------------------------------------------------------- pure helpers


def test_set_keys_keeps_comments_and_layout() -> None:
    text = PRESET.format(name="x")
    out = set_keys(text, {"freeze.depth": 3, "train.epochs": DELETE, "data.batch_size": 64})
    assert "depth = 3  # stem + conv2" in out
    assert "epochs" not in out
    assert "batch_size = 64" in out.split("[model]")[0]
    assert out.startswith("# fine-tune on CIFAR-10\n")


def test_set_keys_new_table_goes_before_the_sweep_and_sweep_can_be_removed() -> None:
    text = 'name = "x"\n[data]\nsource = "tfds:x"\n[model]\nbackbone = "resnet50"\n' + SWEEP
    out = set_keys(text, {"train.epochs": 2})
    assert out.index("[train]") < out.index("[sweep]")
    out = set_keys(out, {"sweep": {"freeze.depth": [0, "all"], "train.epochs": [1, 2]}})
    assert '"freeze.depth" = [0, "all"]' in out and '"train.epochs" = [1, 2]' in out
    assert "[sweep]" not in set_keys(out, {"sweep": {}})


def test_set_keys_rejects_broken_toml() -> None:
    with pytest.raises(TomlEditError):
        set_keys('name = "x\n', {"name": "y"})


def test_form_field_parsing() -> None:
    assert parse_field(BY_KEY["data.image_size"], "64x48") == [64, 48]
    assert parse_field(BY_KEY["data.image_size"], "96") == [96, 96]
    assert parse_field(BY_KEY["data.batch_size"], "64") == 64
    assert parse_field(BY_KEY["data.batch_size"], "abc") == "abc"  # the validator names it
    assert parse_field(BY_KEY["freeze.depth"], "all") == "all"
    assert parse_field(BY_KEY["train.learning_rate"], "1e-4") == 1e-4
    assert parse_field(BY_KEY["model.weights"], "  ") is DELETE
    assert parse_sweep('freeze.depth=[0, 1, "all"]; train.learning_rate=[1e-3,1e-4]') == {
        "freeze.depth": [0, 1, "all"],
        "train.learning_rate": [1e-3, 1e-4],
    }
    with pytest.raises(ValueError, match="expected a list"):
        parse_sweep("freeze.depth=[0, 1")
    assert show_value(BY_KEY["sweep"], {"freeze.depth": [0, 1]}) == "freeze.depth=[0, 1]"
    assert show_value(BY_KEY["data.image_size"], [32, 32]) == "32x32"


# ---------------------------------------------------------------------------- list and sync


@asynctest
async def test_lists_workspace_then_shipped_and_fills_the_form(folders: Any) -> None:
    app = make_app(folders)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = screen_of(app)
        assert [e.name for e in screen.entries] == ["mine", "cifar-ft", "demo"]
        assert screen.current is not None and screen.current.name == "mine"
        assert screen.form.value_of("model.backbone") == "resnet50"
        assert screen.form.value_of("sweep") == "freeze.depth=[0, 1, 2]"
        assert "queues 3 runs" in screen_text(app)
        await pilot.press("down")  # the list has focus: next preset
        await settle(pilot)
        assert screen.current.name == "cifar-ft"
        assert "shipped (read-only)" in screen_text(app)
        assert "queues 1 run" in screen_text(app)


@asynctest
async def test_form_edit_writes_toml_and_keeps_comments(folders: Any) -> None:
    app = make_app(folders)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = screen_of(app)
        await type_into(pilot, "#field-freeze-depth", "3")
        assert "depth = 3  # stem + conv2" in screen.text
        assert "modified" in screen_text(app)
        await type_into(pilot, "#field-sweep", "freeze.depth=[0,1]; train.epochs=[1,2,3]")
        assert '"train.epochs" = [1, 2, 3]' in screen.text
        assert "queues 6 runs" in screen_text(app)
        # a select writes too
        screen.query_one("#field-model-backbone").value = "mobilenet_v2"
        await settle(pilot)
        assert 'backbone = "mobilenet_v2"' in screen.text
        # a field emptied removes the key at once (the default applies)
        await type_into(pilot, "#field-train-epochs", "")
        assert "epochs =" not in screen.text.split("[sweep]")[0]
        await pilot.press("enter")
        await settle(pilot)
        assert "epochs =" not in screen.text.split("[sweep]")[0]


@asynctest
async def test_a_sampled_or_budgeted_sweep_is_read_only_in_the_form(folders: Any) -> None:
    """The form edits a grid; a sweep with sampled keys, samples, seed or a budget would lose them there."""
    ws, _shipped = folders
    sampled = (
        '\n[sweep]\n"freeze.depth" = [0, 1]\n"train.learning_rate" = { loguniform = [1e-4, 1e-2] }\n'
        "samples = 3\nseed = 7\n"
    )
    (ws.presets_dir / "mine.toml").write_text(PRESET.format(name="mine") + sampled)
    app = make_app(folders)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = screen_of(app)
        field = screen.query_one("#field-sweep")
        assert field.disabled
        assert screen.form.value_of("sweep") == (
            "freeze.depth, train.learning_rate (samples): edit [sweep] in the TOML"
        )
        await type_into(pilot, "#field-freeze-depth", "3")  # another field's edit leaves [sweep] as written
        assert screen.text.endswith(sampled)
        screen.editor.text = PRESET.format(name="mine") + SWEEP  # a grid again: editable
        await settle(pilot)
        assert not field.disabled and screen.form.value_of("sweep") == "freeze.depth=[0, 1, 2]"


@asynctest
async def test_clearing_a_field_is_what_ctrl_s_saves_and_typing_again_puts_it_back_in_place(folders: Any) -> None:
    """The walk's finding: weights "none", then four backspaces, then ctrl+s saved ``weights = "n"``."""
    ws, _ = folders
    app = make_app(folders)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = screen_of(app)
        await type_into(pilot, "#field-model-weights", "none ")
        assert 'weights = "none"' in screen.text
        await pilot.press("end", "ctrl+u")  # emptied; the field keeps the focus: no blur, no enter
        await settle(pilot)
        assert screen.form.value_of("model.weights") == ""
        assert "weights" not in screen.text
        assert screen.validation is not None and not screen.validation.errors
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "weights" not in (ws.presets_dir / "mine.toml").read_text()

        # typed again after emptying: the key returns where it was, its comment kept
        await type_into(pilot, "#field-data-image-size", "")
        assert "image_size" not in screen.text
        await pilot.press("6", "4")
        await settle(pilot)
        assert 'source = "tfds:cifar10"\nimage_size = [64, 64]  # small on purpose\n' in screen.text


def test_set_keys_sets_what_a_phase_sets_and_keeps_its_name_and_the_rest() -> None:
    text = PRESET.format(name="p") + (
        '\n[[phases]]\nname = "head"  # first\ntrain.epochs = 3\n\n[[phases]]\nname = "fine-tune"\n'
        "freeze.depth = 3\ntrain.epochs = 4\ntrain.learning_rate = 0.0001\n"
    )
    out = set_keys(text, {"phases.2": {"train.epochs": 6, "freeze.batchnorm": "inference"}})
    assert out.split("[[phases]]")[:2] == text.split("[[phases]]")[:2]  # phase 1 and the rest as written
    assert out.split("[[phases]]")[2] == ('\nname = "fine-tune"\ntrain.epochs = 6\nfreeze.batchnorm = "inference"\n')
    with pytest.raises(TomlEditError, match="phases.3: the preset has 2 phases"):
        set_keys(text, {"phases.3": {}})


def test_a_phase_edit_changes_only_the_key_that_changed_and_keeps_comments_and_spelling() -> None:
    text = PRESET.format(name="p") + (
        '\n[[phases]]\nname = "head"\ntrain.epochs = 5   # short\ntrain.learning_rate = 1e-3  # fast\n'
        '\n[[phases]]\nname = "fine"\ntrain = { epochs = 3 }\nfreeze.depth = 2\n'
    )
    out = set_keys(text, {"phases.1": {"train.epochs": 6, "train.learning_rate": 0.001}})
    assert out == text.replace("train.epochs = 5   # short", "train.epochs = 6   # short")
    out = set_keys(text, {"phases.2": {"train.epochs": 4, "freeze.depth": 2}})
    assert out == text.replace("train = { epochs = 3 }", "train = { epochs = 4 }")


@asynctest
async def test_placeholders_say_default_and_a_phased_preset_shows_its_phases(folders: Any) -> None:
    ws, _ = folders
    phased = PRESET.format(name="phased").replace("epochs = 3\n", "") + (
        '\n[[phases]]\nname = "head"\ntrain.epochs = 3\n\n[[phases]]\nname = "fine-tune"\n'
        "freeze.depth = 3\ntrain.epochs = 4\ntrain.learning_rate = 0.0001\n"
    )
    (ws.presets_dir / "phased.toml").write_text(phased)
    app = make_app(folders, select=ws.presets_dir / "phased.toml")
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        screen = screen_of(app)
        assert screen.current is not None and screen.current.name == "phased"
        text = screen_text(app)
        assert "phases: 3 + 4 epochs (default 10 each)" in text  # not "10 (default)": phases set them
        assert "phase 1 head" in text and "phase 2 fine-t" in text  # a row per phase, edited in place
        assert screen.form.value_of("phases.1") == "train.epochs=3"
        assert screen.form.value_of("phases.2") == "freeze.depth=3; train.epochs=4; train.learning_rate=0.0001"
        assert "no sweep: one run (e.g." in text
        epochs = screen.query_one("#field-train-epochs")
        style = epochs.get_component_rich_style("input--placeholder")
        assert style.italic  # a placeholder never reads as a value
        await type_into(pilot, "#phase-2", "freeze.depth=2; train.epochs=6")
        assert 'name = "fine-tune"\nfreeze.depth = 2\ntrain.epochs = 6\n' in screen.text
        assert screen.validation is not None and not screen.validation.errors
        await type_into(pilot, "#phase-1", "train.epochs=0 ")  # the schema's error marks its row
        assert screen.query_one("#row-phase-1").has_class("-invalid")
        assert "phases.1.train.epochs" in screen_text(app)
        screen.query_one("#preset-list").focus()
        await pilot.press("up")  # mine: no phases, no phase rows
        await settle(pilot)
        assert screen.current.name == "mine"
        assert not screen.query(".phase-row")
        assert "default: 32" in screen_text(app)  # its batch size is left out


@asynctest
async def test_invalid_value_is_shown_at_its_line(folders: Any) -> None:
    app = make_app(folders)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = screen_of(app)
        await type_into(pilot, "#field-data-batch-size", "abc")
        line = screen.text.splitlines().index('batch_size = "abc"') + 1
        assert screen.validation is not None and screen.validation.errors
        assert screen.editor.error_lines == {line - 1}
        assert f"line {line}: data.batch_size" in screen_text(app)
        assert screen.query_one("#row-field-data-batch-size").has_class("-invalid")
        await type_into(pilot, "#field-data-batch-size", "64")
        assert not screen.validation.errors
        assert screen.editor.error_lines == frozenset()
        assert not screen.query_one("#row-field-data-batch-size").has_class("-invalid")


@asynctest
async def test_toml_edits_refill_the_form_and_syntax_errors_disable_it(folders: Any) -> None:
    app = make_app(folders)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = screen_of(app)
        screen.editor.focus()
        screen.editor.load_text(screen.saved[screen.current.path].replace("epochs = 3", "epochs = 12"))
        await settle(pilot)
        assert screen.form.value_of("train.epochs") == "12"
        screen.editor.load_text('name = "broken\n')
        await settle(pilot)
        assert screen.form.disabled
        assert "TOML syntax error" in screen_text(app)
        assert screen.editor.error_lines == {0}


@asynctest
async def test_recipe_warnings_are_listed(folders: Any) -> None:
    app = make_app(folders)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        screen = screen_of(app)
        screen.query_one("#field-train-optimizer").value = "adam"
        await settle(pilot)
        assert "learning_rate = 0.01 with adam" in screen_text(app)


# ---------------------------------------------------------------------------- save / save as


@asynctest
async def test_save_writes_the_workspace_preset(folders: Any) -> None:
    ws, _ = folders
    app = make_app(folders)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await type_into(pilot, "#field-train-epochs", "5")
        await pilot.press("ctrl+s")
        await settle(pilot)
        text = (ws.presets_dir / "mine.toml").read_text()
        assert "epochs = 5" in text and "# fine-tune on CIFAR-10" in text
        assert "modified" not in screen_text(app)
        assert not screen_of(app).buffers


@asynctest
async def test_saving_a_shipped_preset_saves_a_copy(folders: Any) -> None:
    ws, shipped = folders
    app = make_app(folders, select=shipped / "demo.toml")
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = screen_of(app)
        assert screen.current is not None and screen.current.name == "demo"
        await type_into(pilot, "#field-train-epochs", "9")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, SaveAsDialog)
        inp = app.screen.query_one("#save-as-name")
        inp.value = "bad name!"
        await pilot.press("enter")
        await settle(pilot)
        assert "use letters, digits" in screen_text(app)
        inp.value = "demo-long"
        await pilot.press("enter")
        await settle(pilot)
        copy = ws.presets_dir / "demo-long.toml"
        assert 'name = "demo-long"' in copy.read_text() and "epochs = 9" in copy.read_text()
        assert copy.stat().st_mode & 0o777 == 0o600  # owner-only, as the workspace
        assert (shipped / "demo.toml").read_text() == PRESET.format(name="demo")
        assert screen.current is not None and screen.current.path == copy
        assert [e.name for e in screen.entries] == ["demo-long", "mine", "cifar-ft", "demo"]


@asynctest
async def test_save_as_refuses_an_existing_name_and_escape_cancels(folders: Any) -> None:
    ws, shipped = folders
    app = make_app(folders, select=shipped / "demo.toml")
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("f2")
        await settle(pilot)
        assert "enter saves · esc cancels" in screen_text(app)
        await pilot.press(*"mine")  # the suggestion is selected: typing replaces it
        assert app.screen.query_one("#save-as-name").value == "mine"
        await pilot.press("enter")
        await settle(pilot)
        assert (ws.presets_dir / "mine.toml").read_text() == PRESET.format(name="mine") + SWEEP
        await pilot.press("f2")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, PresetsScreen)
        assert sorted(p.name for p in ws.presets_dir.glob("*.toml")) == ["mine.toml"]


# ---------------------------------------------------------------------------- queue


@asynctest
async def test_queue_saves_then_queues_every_sweep_run(folders: Any) -> None:
    ws, _ = folders
    queued = Queued()
    app = make_app(folders, queue=queued)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await type_into(pilot, "#field-train-epochs", "2")
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert queued.paths == [ws.presets_dir / "mine.toml"]
        assert "epochs = 2" in (ws.presets_dir / "mine.toml").read_text()
        runs = ws.list_runs()
        assert [r.status for r in runs] == ["queued"] * 3
        assert {r.epochs for r in runs} == {2}


@asynctest
async def test_queue_refuses_invalid_or_unsaved_shipped(folders: Any) -> None:
    ws, shipped = folders
    queued = Queued()
    app = make_app(folders, queue=queued, select=shipped / "demo.toml")
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await type_into(pilot, "#field-train-epochs", "4")
        await pilot.press("ctrl+r")  # shipped + modified: save a copy first
        await settle(pilot)
        await type_into(pilot, "#field-train-epochs", "-1")
        await pilot.press("ctrl+r")  # invalid
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert queued.paths == []
        assert ws.list_runs() == []


@asynctest
async def test_queue_failure_is_a_notification(folders: Any) -> None:
    def failing(ws: Workspace, path: Path) -> list[RunRecord]:
        from tltui.core.workspace import WorkspaceError

        raise WorkspaceError("the queue runner cannot start: disk full")

    app = make_app(folders, queue=failing)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+r")
        await app.workers.wait_for_complete()
        await settle(pilot)
        messages = [n.message for n in app._notifications]
        assert any("not queued: the queue runner cannot start: disk full" in m for m in messages)


# ---------------------------------------------------------------------------- freeze map, view, leaving


@asynctest
async def test_freeze_map_choice_comes_back_into_the_editor(folders: Any) -> None:
    from tests.tui.test_freeze_map_screen import cache_description
    from tltui.tui.screens.freeze_map import FreezeMapScreen

    ws, _ = folders
    cache_description(ws)
    app = make_app(folders)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = screen_of(app)
        await pilot.press("ctrl+f")
        await app.workers.wait_for_complete()
        await settle(pilot)
        assert isinstance(app.screen, FreezeMapScreen)
        await pilot.press("plus", "b", "b", "escape")  # BatchNorm: frozen -> inference -> trainable
        await settle(pilot)
        assert app.screen is screen
        assert "depth = 2  # stem + conv2" in screen.text
        assert 'batchnorm = "trainable"' in screen.text
        assert "depth = 1" in (ws.presets_dir / "mine.toml").read_text()  # not written: the editor has it
        assert screen.dirty
        await pilot.press("ctrl+f")
        await app.workers.wait_for_complete()
        await settle(pilot)
        await pilot.press("plus", "w", "escape")  # w writes to the file: the editor's saved text follows
        await settle(pilot)
        assert "depth = 3  # stem + conv2" in screen.text
        assert "depth = 3  # stem + conv2" in (ws.presets_dir / "mine.toml").read_text()


@asynctest
async def test_toggle_view_switches_form_and_toml_when_narrow(folders: Any) -> None:
    app = make_app(folders)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = screen_of(app)
        assert screen.has_class("-narrow")
        assert screen.form.display and not screen.editor.display
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert screen.editor.display and not screen.form.display
        assert screen.editor.has_focus
        await pilot.press("ctrl+t")
        await settle(pilot)
        assert screen.form.display and not screen.editor.display


@asynctest
async def test_escape_warns_about_unsaved_changes_then_leaves(folders: Any) -> None:
    app = make_app(folders)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await type_into(pilot, "#field-train-epochs", "8")
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, PresetsScreen)
        assert any("unsaved changes in mine.toml" in n.message for n in app._notifications)
        await pilot.press("escape")
        await settle(pilot)
        assert app.results == [None]


@asynctest
async def test_unsaved_edits_survive_switching_presets(folders: Any) -> None:
    app = make_app(folders)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        screen = screen_of(app)
        await type_into(pilot, "#field-train-epochs", "8")
        screen.query_one("#preset-list").focus()
        await pilot.press("down")
        await settle(pilot)
        assert screen.current is not None and screen.current.name == "cifar-ft"
        assert screen.form.value_of("train.epochs") == "3"
        await pilot.press("up")
        await settle(pilot)
        assert screen.form.value_of("train.epochs") == "8"
        assert "modified" in screen_text(app)


@asynctest
async def test_every_key_is_in_the_command_palette(folders: Any) -> None:
    app = make_app(folders)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await settle(pilot)
        await pilot.press(*"save as")
        for _ in range(200):
            await pilot.pause(0.05)
            if "Save as" in screen_text(app):
                break
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SaveAsDialog)


# ---------------------------------------------------------------------------- snapshots


@pytest.fixture
def weights_cached() -> None:
    """Every backbone's ImageNet file in the (test's empty) Keras cache and the datasets prepared:
    no download warning, whose path would differ from run to run."""
    from tltui.core import catalog

    for name, spec in catalog.BACKBONES.items():
        wf = catalog.imagenet_weights(name, (spec.default_size, spec.default_size))
        assert wf is not None
        path = catalog.keras_cache_path(wf.fname)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")  # not empty: a 0-byte file is what a killed download leaves
    for name in ("cifar10", "cifar100", "mnist"):  # and the datasets prepared in $TFDS_DATA_DIR
        prepared = Path(os.environ["TFDS_DATA_DIR"]) / name / "3.0.2"
        prepared.mkdir(parents=True, exist_ok=True)
        (prepared / "dataset_info.json").write_text("{}")


def test_snapshot_80x24(snap_compare: Any, folders: Any, weights_cached: None) -> None:
    assert snap_compare(make_app(folders), terminal_size=(80, 24), run_before=settle)


def test_snapshot_error_160x48(snap_compare: Any, folders: Any, weights_cached: None) -> None:
    async def broken(pilot: Any) -> None:
        await settle(pilot)
        await type_into(pilot, "#field-data-batch-size", "abc")
        pilot.app.screen.query_one("#field-train-optimizer").value = "adam"
        await settle(pilot)
        pilot.app.screen.query_one("#preset-list").focus()
        await settle(pilot)

    assert snap_compare(make_app(folders), terminal_size=(160, 48), run_before=broken)
