"""Presets that validated and then crashed later: sweep run names, key paths through a list, the
seed's range, deeply nested TOML; preflight's folder scan and the ``--set`` that gave a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from tltui.core import preflight, presets
from tltui.core.errors import PresetError
from tltui.core.settings import Settings
from tltui.core.workspace import Workspace

TFDS = 'name = "{name}"\n[data]\nsource = "tfds:cifar10"\n[model]\nbackbone = "mobilenet_v2"\nweights = "none"\n'


def test_a_sweep_over_values_a_name_cannot_hold_gives_valid_distinct_runs() -> None:
    text = TFDS.format(name="c") + '[sweep]\n"data.train_split" = ["train[:10%]", "train[:20%]"]\n'
    runs = presets.expand(presets.loads(text))
    names = [r.name for r in runs]
    assert len(set(names)) == 2 and all(n.startswith("c[train_split=train[_") for n in names)
    assert [r.preset.data.train_split for r in runs] == ["train[:10%]", "train[:20%]"]
    assert all(r.preset.name == r.name for r in runs)


def test_a_long_sweep_name_is_cut_with_a_hash_that_keeps_the_runs_apart() -> None:
    name = "n" * 120
    runs = presets.expand(presets.loads(TFDS.format(name=name) + '[sweep]\n"train.epochs" = [1, 2]\n'))
    assert len({r.name for r in runs}) == 2 and all(len(r.name) <= presets.MAX_NAME_CHARS for r in runs)
    short = presets.expand(presets.loads(TFDS.format(name="s") + '[sweep]\n"train.epochs" = [1, 2]\n'))
    assert [r.name for r in short] == ["s[epochs=1]", "s[epochs=2]"]  # a name that fits stays as it was


def test_discover_presets_lists_such_a_sweep(tmp_path: Path) -> None:
    text = TFDS.format(name="c") + '[sweep]\n"data.train_split" = ["train[:10%]", "train[:20%]"]\n'
    (tmp_path / "split.toml").write_text(text)
    (found,) = presets.discover_presets([("workspace", tmp_path)])
    assert found.error is None and found.runs == 2


def test_a_key_path_through_a_list_is_a_one_line_error() -> None:
    text = TFDS.format(name="p").replace('tfds:cifar10"\n', 'tfds:cifar10"\nimage_size = [32, 32]\n')
    with pytest.raises(PresetError, match=r"^--set: data.image_size.x.y: data.image_size is not a table$"):
        presets.loads(text, overrides={"data.image_size.x.y": 1})
    with pytest.raises(PresetError, match=r"sweep.data.image_size.0.x: data.image_size is not a table"):
        presets.loads(text + '[sweep]\n"data.image_size.0.x" = [1]\n')


def test_the_seed_is_in_numpys_range() -> None:
    text = TFDS.format(name="p")
    assert presets.loads(text, overrides={"train.seed": 2**32 - 1}).train.seed == 2**32 - 1
    for bad in (-1, 2**32):
        with pytest.raises(PresetError, match=rf"^--set train.seed={bad}: train.seed: Input should be"):
            presets.loads(text, overrides={"train.seed": bad})


def test_toml_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    deep = "name = " + "[" * 500 + "]" * 500 + "\n"
    with pytest.raises(PresetError, match=r"^p.toml: TOML syntax error: nested too deeply$"):
        presets.loads(deep, file="p.toml")
    assert presets.parse_value("[" * 500 + "]" * 500).startswith("[[")  # a --set value: the bare string
    (tmp_path / "settings.toml").write_text(deep)
    with pytest.raises(PresetError, match=r"settings.toml: TOML syntax error: nested too deeply$"):
        Settings.load(tmp_path)


def _folder(root: Path, classes: dict[str, list[str]]) -> Path:
    for c, files in classes.items():
        (root / c).mkdir(parents=True)
        for f in files:
            (root / c / f).touch()
    return root


def _folder_preset(root: Path) -> presets.Preset:
    return presets.loads(f'name = "f"\n[data]\nsource = "folder:{root}"\n[model]\nbackbone = "mobilenet_v2"\n')


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ({"a": ["0.png"]}, "needs at least 2 class subfolders, found 1"),
        ({"a": ["0.png"], ".hidden": ["0.png"]}, "needs at least 2 class subfolders, found 1"),
        ({"a": ["0.png"], "b": []}, "class folder(s) b in "),
        ({"a": ["0.png"], "b": ["notes.txt", ".x.png"]}, "class folder(s) b in "),
    ],
)
def test_preflight_refuses_a_folder_the_run_would_refuse(
    tmp_path: Path, classes: dict[str, list[str]], message: str
) -> None:
    root = _folder(tmp_path / "data", classes)
    (error,) = preflight.check(_folder_preset(root), "f.toml").errors
    assert error.file == "f.toml" and error.field == "data.source" and message in error.message


def test_preflight_passes_a_folder_with_images_at_any_depth(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data", {"a": ["0.JPG"], "b/sub": ["1.png"]})
    assert preflight.check(_folder_preset(root), "f.toml").errors == []


def test_preflight_names_the_set_that_gave_a_bad_value(tmp_path: Path, ws: Workspace) -> None:
    root = _folder(tmp_path / "data", {"a": ["0.png"], "b": ["1.png"]})
    file = tmp_path / "f.toml"
    file.write_text(
        f'name = "f"\n[data]\nsource = "folder:{root}"\n[model]\nbackbone = "mobilenet_v2"\nweights = "none"\n'
    )
    overrides = {"freeze.depth": 99}
    (error,) = preflight.check(presets.load(file, overrides), str(file), ws, overrides).errors
    assert str(error).startswith("--set freeze.depth=99: freeze.depth: mobilenet_v2 has 4 stages")
    overrides = {"data.source": "folder:nonexist"}
    with pytest.raises(PresetError, match=r"^--set data.source=folder:nonexist: data.source: folder .* does not exist"):
        preflight.require(presets.load(file, overrides), str(file), ws, overrides)
    (error,) = preflight.check(presets.load(file, {"freeze.depth": 99}), str(file), ws).errors
    assert error.file == str(file)  # no overrides given: the file


def test_a_run_that_does_not_validate_is_a_preset_error(monkeypatch: pytest.MonkeyPatch) -> None:
    preset = presets.loads(TFDS.format(name="c") + '[sweep]\n"train.epochs" = [1, 2]\n')
    monkeypatch.setattr(presets, "_run_name", lambda name, label: "-" + name)  # a name the schema refuses
    with pytest.raises(PresetError, match=r"^c: sweep.train.epochs: value 1: "):
        presets.expand(preset)


def test_swept_paths_are_relative_to_the_preset_file_like_the_presets_own(tmp_path: Path) -> None:
    from tltui.core import presets

    (tmp_path / "p.toml").write_text(
        'name = "p"\n[data]\nsource = "folder:a"\n[model]\nbackbone = "tiny_cnn"\nweights = "none"\n'
        '[sweep]\n"data.source" = ["folder:a", "folder:sub/b"]\n'
    )
    runs = presets.expand(presets.load(tmp_path / "p.toml"))
    assert [r.preset.data.source for r in runs] == [f"folder:{tmp_path / 'a'}", f"folder:{tmp_path / 'sub' / 'b'}"]
