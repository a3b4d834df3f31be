"""Finding presets by folder (the app's picker): order, names hidden by earlier folders, errors."""

from __future__ import annotations

from pathlib import Path

from tltui.core import presets
from tltui.core.presets import PresetFile, discover_presets

PRESET = """\
name = "{name}"
description = "{name}, described"
[data]
source = "tfds:cifar10"
[model]
backbone = "resnet50"
weights = "none"
[train]
epochs = 3
"""


def write(folder: Path, stem: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.toml"
    path.write_text(text)
    return path


def test_every_folder_in_order_an_earlier_name_hides_a_later_one(tmp_path: Path) -> None:
    mine, shipped = tmp_path / "workspace", tmp_path / "shipped"
    own_demo = write(mine, "demo", PRESET.format(name="my demo"))
    sweep = write(mine, "b-sweep", PRESET.format(name="sweep") + '[sweep]\n"train.learning_rate" = [0.1, 0.01]\n')
    write(shipped, "demo", PRESET.format(name="shipped demo"))
    other = write(shipped, "a-other", PRESET.format(name="other"))
    (shipped / "notes.txt").write_text("not a preset")

    found = discover_presets([("workspace", mine), ("shipped", shipped)])

    assert found == [
        PresetFile(sweep, "workspace", "sweep", "sweep, described", 2),
        PresetFile(own_demo, "workspace", "my demo", "my demo, described", 1),
        PresetFile(other, "shipped", "other", "other, described", 1),
    ]


def test_an_invalid_preset_is_listed_with_its_first_error(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad", PRESET.format(name="bad").replace("epochs = 3", "epochs = 0\nbogus = 1"))
    [found] = discover_presets([("workspace", tmp_path)])
    assert (found.path, found.name, found.runs) == (bad, "bad", 0)
    assert found.error is not None and f"{bad}:" in found.error and "train." in found.error


def test_a_missing_folder_has_no_presets_and_the_shipped_ones_all_validate(tmp_path: Path) -> None:
    shipped = discover_presets([("workspace", tmp_path / "nowhere"), ("shipped", presets.shipped_presets_dir())])
    assert shipped and all(p.origin == "shipped" and p.error is None and p.runs >= 1 for p in shipped)
