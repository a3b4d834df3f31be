"""What a typed preset reference finds, what a misspelt key is told, what `check` refuses in a picker,
and the names of a sweep queued again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tltui.core import preflight, presets
from tltui.core.errors import PresetError
from tltui.core.presets import discover_presets
from tltui.core.workspace import Workspace, distinct_sweep_names

PRESET = """\
name = "{name}"
[data]
source = "{source}"
[model]
backbone = "resnet50"
weights = "none"
[train]
epochs = 1
"""


def test_a_preset_name_wins_over_a_folder_of_that_name_here(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = ws.presets_dir / "photos.toml"
    mine.write_text(PRESET.format(name="photos", source="tfds:cifar10"))
    (tmp_path / "photos").mkdir()
    monkeypatch.chdir(tmp_path)
    assert presets.find_preset("photos", ws) == mine
    assert presets.find_preset("./photos", ws) == Path("./photos")  # a path stays a path
    assert presets.find_preset("elsewhere", ws) == Path("elsewhere")
    with pytest.raises(PresetError, match="is a directory, expected a .toml file"):
        presets.load(presets.find_preset("./photos", ws))


def test_a_misspelt_key_gets_a_close_match_in_the_file_and_in_set() -> None:
    text = PRESET.format(name="x", source="tfds:cifar10") + "learnin_rate = 0.1\n"
    with pytest.raises(PresetError) as e:
        presets.loads(text, file="p.toml")
    assert str(e.value.issues[0]) == "p.toml:9: train.learnin_rate: unknown key; did you mean 'learning_rate'?"
    with pytest.raises(PresetError) as e:
        presets.loads(PRESET.format(name="x", source="tfds:cifar10"), overrides={"data.batchsize": 8})
    assert str(e.value.issues[0]) == "--set data.batchsize=8: data.batchsize: unknown key; did you mean 'batch_size'?"
    with pytest.raises(PresetError) as e:
        presets.loads(PRESET.format(name="x", source="tfds:cifar10") + "[modle]\nx = 1\n", file="p.toml")
    assert str(e.value.issues[0]) == "p.toml:9: modle: unknown key; did you mean 'model'?"
    with pytest.raises(PresetError) as e:
        presets.loads(PRESET.format(name="x", source="tfds:cifar10") + "colour_space = 1\n", file="p.toml")
    assert str(e.value.issues[0]) == (
        "p.toml:9: train.colour_space: unknown key (not a key of [train]; every key: docs/reference/presets.md)"
    )


def test_the_picker_refuses_what_check_refuses(ws: Workspace, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    folder = ws.presets_dir
    (folder / "nofolder.toml").write_text(PRESET.format(name="nofolder", source=f"folder:{tmp_path / 'nope'}"))
    (folder / "emptyfolder.toml").write_text(PRESET.format(name="emptyfolder", source=f"folder:{empty}"))
    (folder / "fine.toml").write_text(PRESET.format(name="fine", source="tfds:cifar10"))
    found = {c.name: c for c in preflight.refuse_unrunnable(discover_presets([("workspace", folder)]), ws)}
    assert found["nofolder"].error is not None and found["nofolder"].error.endswith(
        f"data.source: folder {tmp_path / 'nope'} does not exist"
    )
    assert (
        found["emptyfolder"].error is not None
        and "needs at least 2 class subfolders, found 0" in found["emptyfolder"].error
    )
    assert found["nofolder"].runs == 0
    assert found["fine"].error is None and found["fine"].runs == 1


def test_a_sweep_queued_again_gets_distinct_names(ws: Workspace) -> None:
    specs = [(f"photos[seed={s}]", 'name = "x"\n', {"train.seed": s}) for s in (1, 2)]
    first = ws.create_runs(specs, preset_name="photos")
    again = ws.create_runs(specs, preset_name="photos")
    third = ws.create_runs(specs[:1] + [("photos[seed=3]", 'name = "x"\n', {})], preset_name="photos")
    assert [r.name for r in first] == ["photos[seed=1]", "photos[seed=2]"]
    assert [r.name for r in again] == ["photos-2[seed=1]", "photos-2[seed=2]"]
    assert [r.name for r in third] == ["photos-3[seed=1]", "photos-3[seed=3]"]
    assert again[0].sweep != first[0].sweep
    assert distinct_sweep_names(["a[x=1]"], "a", set()) == ["a[x=1]"]
    assert distinct_sweep_names(["odd"], "a", {"odd"}) == ["odd-2"]
