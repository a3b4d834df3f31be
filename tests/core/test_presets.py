"""Preset parsing: valid presets, sweeps, --set, and a table of broken presets with their messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tltui.core import presets
from tltui.core.presets import PresetError

BASE = """\
name = "p"
[data]
source = "tfds:cifar10"
image_size = [32, 32]
batch_size = 8
[model]
backbone = "resnet50"
weights = "none"
[freeze]
depth = 2
batchnorm = "frozen"
[train]
epochs = 3
optimizer = "sgd"
learning_rate = 0.01
"""


def _err(text: str) -> list[str]:
    with pytest.raises(PresetError) as ei:
        presets.loads(text, "p.toml")
    return [str(i) for i in ei.value.issues]


def test_valid_preset_round_trips() -> None:
    p = presets.loads(BASE, "p.toml")
    assert p.freeze.depth == 2
    assert p.train.optimizer == "sgd"
    again = presets.loads(presets.dumps(p), "again.toml")
    assert again == p


def test_defaults_follow_the_keras_recipe() -> None:
    p = presets.loads(BASE.replace('batchnorm = "frozen"\n', ""), "p.toml")
    assert p.freeze.batchnorm == "frozen"


def test_sweep_is_a_cartesian_product_in_key_order() -> None:
    text = BASE + '[sweep]\n"freeze.depth" = [0, 1, 2]\n"train.learning_rate" = [0.1, 0.01]\n'
    runs = presets.expand(presets.loads(text, "p.toml"))
    assert len(runs) == 6
    assert [r.overrides for r in runs[:3]] == [
        {"freeze.depth": 0, "train.learning_rate": 0.1},
        {"freeze.depth": 0, "train.learning_rate": 0.01},
        {"freeze.depth": 1, "train.learning_rate": 0.1},
    ]
    assert runs[5].preset.freeze.depth == 2
    assert runs[5].preset.train.learning_rate == 0.01
    assert runs[0].name == "p[depth=0,learning_rate=0.1]"
    assert all(not r.preset.sweep for r in runs)
    assert len({r.name for r in runs}) == 6


def test_no_sweep_is_one_run() -> None:
    runs = presets.expand(presets.loads(BASE, "p.toml"))
    assert [r.name for r in runs] == ["p"]


def test_set_overrides_with_toml_values_and_bare_strings() -> None:
    ov = presets.parse_set(["train.epochs=7", 'freeze.depth="all"', "data.source=tfds:mnist", "data.augment=false"])
    p = presets.loads(BASE, "p.toml", overrides=ov)
    assert p.train.epochs == 7
    assert p.freeze.depth == "all"
    assert p.data.source == "tfds:mnist"
    assert p.data.augment is False


def test_set_can_replace_a_sweep_value_and_is_validated() -> None:
    # the bad value came from --set, not from line 13 of the file (`epochs = 3`): the issue says so
    assert _err_set(["train.epochs=0"]) == [
        "--set train.epochs=0: train.epochs: Input should be greater than or equal to 1 (got 0)"
    ]


def test_a_set_error_names_the_set_and_a_file_error_its_line() -> None:
    bad_file = BASE.replace("batch_size = 8", "batch_size = 0")
    with pytest.raises(PresetError) as ei:
        presets.loads(bad_file, "p.toml", overrides=presets.parse_set(["train.epochs=0", "data.image_size=[32]"]))
    assert [str(i) for i in ei.value.issues] == [
        "--set data.image_size=[32]: data.image_size: expected [height, width] with sides in 8..4096, got [32]",
        "p.toml:5: data.batch_size: Input should be greater than or equal to 1 (got 0)",
        "--set train.epochs=0: train.epochs: Input should be greater than or equal to 1 (got 0)",
    ]
    augment, epoch = _err_set(["train.epoch=5", "freeze.depth=all", "data.augment=maybe"])
    assert augment == "--set data.augment=maybe: data.augment: Input should be a valid boolean (got 'maybe')"
    assert epoch == "--set train.epoch=5: train.epoch: unknown key; did you mean 'epochs'?"


def _err_set(items: list[str]) -> list[str]:
    with pytest.raises(PresetError) as ei:
        presets.loads(BASE, "p.toml", overrides=presets.parse_set(items))
    return [str(i) for i in ei.value.issues]


def test_bad_set_syntax() -> None:
    with pytest.raises(PresetError, match="expected KEY=VALUE"):
        presets.parse_set(["epochs"])


def test_folder_source_is_relative_to_the_preset_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "x.toml"
    f.write_text(BASE.replace('"tfds:cifar10"', '"folder:../imgs"'))
    p = presets.load(f)
    assert p.data.source == "folder:" + str((tmp_path / "imgs").resolve())


# ------------------------------------------------------------------------- broken presets


def _with(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new)


BROKEN: list[tuple[str, str, str]] = [
    # (id, preset text, expected substring of the single error line)
    ("syntax", BASE + "epochs = = 3\n", "p.toml:16: TOML syntax error"),
    ("unclosed-table", BASE + "[train\n", "TOML syntax error"),
    ("unclosed-string", 'name = "p\n', "p.toml:1: TOML syntax error"),
    ("duplicate-key", BASE + "[data]\nbatch_size = 9\n", "TOML syntax error"),
    ("missing-name", BASE.replace('name = "p"\n', ""), "name: required field is missing"),
    ("missing-data", 'name = "p"\n[model]\nbackbone = "resnet50"\n', "data: required field is missing"),
    ("missing-source", _with('source = "tfds:cifar10"\n', ""), "data.source: required field is missing"),
    ("missing-backbone", _with('backbone = "resnet50"\n', ""), "model.backbone: required field is missing"),
    ("empty-name", _with('name = "p"', 'name = ""'), "name: String should have at least 1 character"),
    ("name-slash", _with('name = "p"', 'name = "a/b"'), "name: use letters, digits"),
    ("unknown-top", BASE + "colour = 1\n", "p.toml:16: train.colour: unknown key"),
    ("unknown-top-before-table", "colour = 1\n" + BASE, "p.toml:1: colour: unknown key"),
    ("unknown-section", BASE + "[optimizer]\nlr = 1\n", "p.toml:16: optimizer: unknown key"),
    ("typo-key", _with("batch_size = 8", "batchsize = 8"), "p.toml:5: data.batchsize: unknown key"),
    ("typo-train", _with("epochs = 3", "epoch = 3"), "p.toml:13: train.epoch: unknown key"),
    (
        "source-kind",
        _with('"tfds:cifar10"', '"s3:bucket"'),
        'p.toml:3: data.source: expected "tfds:NAME" or "folder:PATH"',
    ),
    ("source-empty", _with('"tfds:cifar10"', '"tfds:"'), "p.toml:3: data.source: expected"),
    ("source-type", _with('"tfds:cifar10"', "3"), "p.toml:3: data.source: Input should be a valid string (got 3)"),
    ("image-size-one", _with("[32, 32]", "[32]"), "p.toml:4: data.image_size: expected [height, width]"),
    (
        "image-size-small",
        _with("[32, 32]", "[4, 4]"),
        "data.image_size: expected [height, width] with sides in 8..4096",
    ),
    ("image-size-str", _with("[32, 32]", '"32x32"'), "p.toml:4: data.image_size: Input should be a valid list"),
    (
        "image-size-float",
        _with("[32, 32]", "[32.5, 32]"),
        "p.toml:4: data.image_size: Input should be a valid integer (got 32.5)",
    ),
    (
        "batch-zero",
        _with("batch_size = 8", "batch_size = 0"),
        "p.toml:5: data.batch_size: Input should be greater than or equal to 1 (got 0)",
    ),
    (
        "batch-float",
        _with("batch_size = 8", "batch_size = 8.5"),
        "p.toml:5: data.batch_size: Input should be a valid integer",
    ),
    (
        "batch-string",
        _with("batch_size = 8", 'batch_size = "8"'),
        "p.toml:5: data.batch_size: Input should be a valid integer",
    ),
    (
        "batch-bool",
        _with("batch_size = 8", "batch_size = true"),
        "p.toml:5: data.batch_size: Input should be a valid integer",
    ),
    (
        "val-fraction",
        BASE.replace("batch_size = 8", "batch_size = 8\nvalidation_fraction = 1.5"),
        "data.validation_fraction: Input should be less than 1",
    ),
    (
        "augment-string",
        BASE.replace("batch_size = 8", 'batch_size = 8\naugment = "yes"'),
        "data.augment: Input should be a valid boolean",
    ),
    (
        "backbone-unknown",
        _with('"resnet50"', '"resnet5"'),
        "p.toml:7: model.backbone: unknown backbone 'resnet5'; did you mean 'resnet50'?",
    ),
    ("backbone-hub-empty", _with('"resnet50"', '"hub:"'), 'model.backbone: expected "hub:HANDLE_OR_PATH"'),
    ("weights-bad", _with('weights = "none"', 'weights = "imagenet21k"'), "p.toml:8: model.weights: expected"),
    (
        "dropout-range",
        _with('weights = "none"', 'weights = "none"\ndropout = 1.0'),
        "model.dropout: Input should be less than 1",
    ),
    (
        "depth-negative",
        _with("depth = 2", "depth = -1"),
        'p.toml:10: freeze.depth: expected a number of macro-blocks 0..N or "all", got -1',
    ),
    ("depth-word", _with("depth = 2", 'depth = "most"'), "freeze.depth: expected a number of macro-blocks"),
    ("depth-bool", _with("depth = 2", "depth = true"), "freeze.depth: expected a number of macro-blocks"),
    ("depth-float", _with("depth = 2", "depth = 2.5"), "freeze.depth: expected a number of macro-blocks"),
    (
        "batchnorm-bad",
        _with('batchnorm = "frozen"', 'batchnorm = "on"'),
        "p.toml:11: freeze.batchnorm: Input should be 'frozen', 'inference' or 'trainable'",
    ),
    (
        "epochs-zero",
        _with("epochs = 3", "epochs = 0"),
        "p.toml:13: train.epochs: Input should be greater than or equal to 1",
    ),
    (
        "epochs-huge",
        _with("epochs = 3", "epochs = 10000000"),
        "train.epochs: Input should be less than or equal to 100000",
    ),
    (
        "optimizer-bad",
        _with('optimizer = "sgd"', 'optimizer = "lion"'),
        "p.toml:14: train.optimizer: Input should be 'sgd', 'adam', 'adamw' or 'rmsprop'",
    ),
    (
        "lr-zero",
        _with("learning_rate = 0.01", "learning_rate = 0"),
        "p.toml:15: train.learning_rate: Input should be greater than 0",
    ),
    (
        "lr-string",
        _with("learning_rate = 0.01", 'learning_rate = "1e-3"'),
        "train.learning_rate: Input should be a valid number",
    ),
    ("momentum-range", BASE + "momentum = 1.5\n", "train.momentum: Input should be less than 1"),
    (
        "patience-negative",
        BASE + "early_stopping_patience = -1\n",
        "train.early_stopping_patience: Input should be greater than or equal to 0",
    ),
    ("mixed-precision-bad", BASE + 'mixed_precision = "fp8"\n', "train.mixed_precision"),
    ("feature-cache-bad", BASE + 'feature_cache = "always"\n', "train.feature_cache: Input should be 'auto' or 'off'"),
    ("gpus-negative", BASE + "gpus = -1\n", "train.gpus: Input should be greater than or equal to 0"),
    (
        "data-not-table",
        BASE.replace("[data]\n", "data = 3\n[data2]\n"),
        "p.toml:2: data: Input should be a valid dictionary",
    ),
    (
        "sweep-not-list",
        BASE + '[sweep]\n"freeze.depth" = 3\n',
        "p.toml:17: sweep.freeze.depth: Input should be a valid list",
    ),
    ("sweep-empty", BASE + '[sweep]\n"freeze.depth" = []\n', "sweep 'freeze.depth': expected a non-empty list"),
    (
        "sweep-bad-value",
        BASE + '[sweep]\n"freeze.depth" = [0, 1, "x"]\n',
        "p.toml:17: sweep.freeze.depth: value 'x': expected a number of macro-blocks",
    ),
    ("sweep-unknown-key", BASE + '[sweep]\n"train.epoch" = [1, 2]\n', "sweep.train.epoch: value 1: unknown key"),
    (
        "sweep-not-dotted",
        BASE + "[sweep]\nepochs = [1, 2]\n",
        'p.toml:17: sweep.epochs: expected a dotted key like "freeze.depth"',
    ),
    (
        "sweep-too-big",
        BASE
        + '[sweep]\n"train.seed" = '
        + str(list(range(40)))
        + '\n"train.epochs" = '
        + str(list(range(1, 40)))
        + "\n",
        "sweep: expands to 1560 runs; at most 1000",
    ),
    ("not-utf8-like", 'name = "p"\n\x00\x01\x02', "TOML syntax error"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in BROKEN], ids=[i for i, _, _ in BROKEN])
def test_broken_preset_gets_one_clear_line(text: str, expected: str) -> None:
    lines = _err(text)
    assert any(expected in line for line in lines), lines
    assert all(line.startswith("p.toml") for line in lines)
    assert all("\n" not in line and len(line) < 300 for line in lines)


def test_at_least_forty_broken_presets() -> None:
    assert len(BROKEN) >= 40


def test_binary_garbage_and_huge_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.toml"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(PresetError, match="not UTF-8 text"):
        presets.load(garbage)
    huge = tmp_path / "huge.toml"
    huge.write_text(BASE + "#" * (presets.MAX_PRESET_BYTES + 1))
    with pytest.raises(PresetError, match="larger than"):
        presets.load(huge)
    with pytest.raises(PresetError, match="no such preset file"):
        presets.load(tmp_path / "missing.toml")
    with pytest.raises(PresetError, match="is a directory"):
        presets.load(tmp_path)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]=\"'.,#\n abcdefgxyz0123456789-_:{}tfnaeu")), max_size=200))
def test_parser_never_raises_anything_but_preset_error(text: str) -> None:
    try:
        presets.loads(text, "fuzz.toml")
    except PresetError as e:
        assert e.issues and all(str(i).startswith("fuzz.toml") for i in e.issues)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["data", "model", "freeze", "train", "sweep", "name"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
            max_leaves=8,
        ),
    )
)
def test_random_structures_never_crash(raw: dict) -> None:
    try:
        presets.from_dict(raw, "fuzz.toml")
    except PresetError as e:
        assert e.issues


def test_check_cli_exit_codes_and_json(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(BASE + '[sweep]\n"freeze.depth" = [0, 1]\n')
    bad = tmp_path / "bad.toml"
    bad.write_text(_with("batch_size = 8", "batch_size = 0"))
    env_ws = ["--workspace", str(tmp_path / "ws")]
    ok = subprocess.run(
        [sys.executable, "-m", "tltui", *env_ws, "check", str(good), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    import json

    doc = json.loads(ok.stdout)
    assert [r["overrides"] for r in doc["runs"]] == [{"freeze.depth": 0}, {"freeze.depth": 1}]
    assert doc["runs"][0]["name"] == "p[depth=0]"
    res = subprocess.run(
        [sys.executable, "-m", "tltui", *env_ws, "check", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {bad}:5: data.batch_size: Input should be greater than or equal to 1 (got 0)"
    assert "Traceback" not in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "tltui", *env_ws, "check", str(good), "--set", "train.epochs=0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert (
        res.stderr.strip()
        == "error: --set train.epochs=0: train.epochs: Input should be greater than or equal to 1 (got 0)"
    )


def test_check_catches_missing_folder_before_training(tmp_path: Path) -> None:
    f = tmp_path / "f.toml"
    f.write_text(_with('"tfds:cifar10"', '"folder:nowhere"'))
    res = subprocess.run(
        [sys.executable, "-m", "tltui", "--workspace", str(tmp_path / "ws"), "check", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "data.source: folder" in res.stderr and "does not exist" in res.stderr
