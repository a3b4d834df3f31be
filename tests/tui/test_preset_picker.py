"""The queue dialog (the app's ``a``): `check`'s refusals, ``--set`` overrides, their errors."""

from __future__ import annotations

from tests.tui import fake_ws
from tests.tui.test_app import SIZE, fake_ops, settle, sync  # noqa: F401 - fake_ops: a fixture
from tltui.tui.screens.preset_picker import PresetPicker


def _highlight(picker: PresetPicker, name: str) -> None:
    picker.query_one("#preset-list").highlighted = next(i for i, c in enumerate(picker.choices) if c.path.name == name)


@sync
async def test_the_dialog_refuses_a_missing_folder_and_queues_with_set_overrides(
    make_app,
    scripted,
    fake_ops,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    ws, _ids = scripted
    calls, _mod = fake_ops
    (ws.presets_dir / "mine.toml").write_text(fake_ws.PRESET.format(name="mine", depth=1, epochs=3))
    nofolder = fake_ws.PRESET.format(name="nofolder", depth=1, epochs=3).replace(
        'source = "tfds:cifar100"', f'source = "folder:{tmp_path / "nope"}"'
    )
    (ws.presets_dir / "nofolder.toml").write_text(nofolder)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, PresetPicker)
        refused = next(c for c in picker.choices if c.path.name == "nofolder.toml")
        assert refused.error is not None and "does not exist" in refused.error
        _highlight(picker, "mine.toml")
        await pilot.press("tab")
        assert app.focused is picker.query_one("#overrides")
        await pilot.press(*"train")
        assert picker.query_one("#overrides").value == "train"  # typed into the field, not the app's keys
        picker.query_one("#overrides").value = "train.epoch=2"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is picker and calls == []
        error = str(picker.query_one("#picker-error").render())
        assert "train.epoch: unknown key; did you mean 'epochs'?" in error
        picker.query_one("#overrides").value = "train.epochs=2 model.weights=none"
        await pilot.press("enter")
        await settle(pilot)
        assert calls == [("add", ws.presets_dir / "mine.toml", {"train.epochs": 2, "model.weights": "none"})]
