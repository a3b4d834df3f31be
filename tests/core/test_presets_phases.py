"""``[[phases]]``: validation with file:line, the resolved preset of each phase, ``phases.N`` keys
for ``--set`` and sweeps, ``check``'s listing of each phase and its recipe warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tltui.commands.main import main
from tltui.core import preflight, presets
from tltui.core.presets import PresetError

BASE = """\
name = "p"
[data]
source = "tfds:cifar10"
image_size = [32, 32]
[model]
backbone = "resnet50"
[freeze]
depth = "all"
[train]
epochs = 4
optimizer = "adam"
learning_rate = 1e-3
momentum = 0.5

[[phases]]
name = "head"
train.epochs = 2

[[phases]]
name = "fine-tune"
freeze.depth = 2
train.learning_rate = 1e-5
train.early_stopping_patience = 3
"""


def _errors(text: str, overrides: dict | None = None) -> list[str]:
    with pytest.raises(PresetError) as ei:
        presets.loads(text, "p.toml", overrides=overrides)
    return [str(i) for i in ei.value.issues]


def test_each_phase_overrides_its_fields_and_keeps_the_rest() -> None:
    p = presets.loads(BASE, "p.toml")
    head, fine = p.phase_presets()
    assert (head.freeze.depth, head.train.epochs, head.train.learning_rate) == ("all", 2, 1e-3)
    assert (fine.freeze.depth, fine.train.epochs, fine.train.learning_rate, fine.train.early_stopping_patience) == (
        2,
        4,
        1e-5,
        3,
    )  # epochs not set in phase 2: the preset's
    assert fine.train.momentum == head.train.momentum == 0.5 and fine.data == p.data
    assert not head.phases and not fine.phases
    assert p.total_epochs == 6 and p.phase_label(1) == "2/2 fine-tune"
    assert presets.loads(presets.dumps(p)) == p  # round trip through TOML
    plain = presets.loads(BASE.split("[[phases]]")[0])
    assert plain.phase_presets() == [plain] and plain.total_epochs == 4


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("train.momentum = 0.1\n", "p.toml:24: phases.2.train.momentum: a phase may set only freeze.depth"),
        (
            'freeze.batchnorm = "on"\n',
            "p.toml:24: phases.2.freeze.batchnorm: Input should be 'frozen', 'inference' or 'trainable'",
        ),
        ('train.optimizer = "lion"\n', "p.toml:24: phases.2.train.optimizer: Input should be"),
        ("colour = 1\n", "p.toml:24: phases.2.colour: a phase may set only"),
    ],
)
def test_a_bad_phase_field_is_one_line_naming_the_phase_and_the_line(extra: str, expected: str) -> None:
    lines = _errors(BASE + extra)
    assert any(expected in line for line in lines), lines


def test_phases_table_syntax_and_the_first_phase_lines() -> None:
    text = BASE.replace(
        '[[phases]]\nname = "head"\ntrain.epochs = 2\n', '[[phases]]\nname = "head"\n[phases.train]\nepochs = 0\n'
    )
    assert any(line.startswith("p.toml:18: phases.1.train.epochs") for line in _errors(text))


def test_set_and_sweep_reach_a_phase_by_its_number_from_1() -> None:
    p = presets.loads(BASE, overrides=presets.parse_set(["phases.2.freeze.depth=1", "phases.1.train.epochs=5"]))
    assert (p.phases[1].freeze.depth, p.phases[0].train.epochs, p.total_epochs) == (1, 5, 9)
    for bad in ("phases.3.train.epochs=1", "phases.0.train.epochs=1"):
        (line,) = _errors(BASE, presets.parse_set([bad]))
        assert "no phase" in line and "phases count from 1" in line, line
    (line,) = _errors(BASE.split("[[phases]]")[0], presets.parse_set(["phases.1.train.epochs=1"]))
    assert "no [[phases]]" in line
    assert _errors(BASE, presets.parse_set(["phases.2.train.epochs=0"])) == [
        "--set phases.2.train.epochs=0: phases.2.train.epochs: Input should be greater than or equal to 1 (got 0)"
    ]
    swept = presets.loads(BASE + '\n[sweep]\n"phases.2.freeze.depth" = [1, 2, 3]\n')
    runs = presets.expand(swept)
    assert [r.name for r in runs] == ["p[phase2.depth=1]", "p[phase2.depth=2]", "p[phase2.depth=3]"]
    assert [r.preset.phase_presets()[1].freeze.depth for r in runs] == [1, 2, 3]
    assert [r.preset.phases[0].freeze.depth for r in runs] == [None] * 3  # phase 1 untouched
    lines = _errors(BASE + '\n[sweep]\n"phases.4.freeze.depth" = [1]\n')
    assert any("p.toml:26: sweep.phases.4.freeze.depth: no phase 4" in line for line in lines), lines


def test_recipe_warnings_per_phase_and_between_phases() -> None:
    p = presets.loads(BASE)
    assert preflight.recipe_warnings(p) == []  # the keras.io recipe: 1e-3 on the head, then 1e-5
    hot = presets.loads(BASE, overrides={"phases.2.train.learning_rate": 1e-3})
    warns = preflight.recipe_warnings(hot)
    assert any(
        w.startswith("phase 2/2 fine-tune: learning_rate = 0.001 is not well below phase 1's 0.001") for w in warns
    )
    drift = presets.loads(BASE, overrides={"phases.1.freeze.batchnorm": "trainable"})
    assert any(
        w.startswith('phase 1/2 head: freeze.batchnorm = "trainable" while the backbone is frozen')
        for w in preflight.recipe_warnings(drift)
    )
    partly = presets.loads(BASE, overrides={"phases.2.freeze.batchnorm": "trainable"})  # depth 2 of 4
    assert any(
        w.startswith('phase 2/2 fine-tune: freeze.batchnorm = "trainable" while the backbone is partly frozen')
        for w in preflight.recipe_warnings(partly)
    )
    too_deep = presets.loads(BASE, overrides={"phases.2.freeze.depth": 9})
    (issue,) = preflight.freeze_depth_errors(too_deep, "p.toml")
    assert issue.field == "phases.2.freeze.depth" and "resnet50 has 4 stages, got depth 9" in issue.message


@pytest.mark.e2e  # describes the backbone once (a TensorFlow subprocess)
def test_check_lists_each_phase_with_what_it_freezes(tmp_path: Path, capsys) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        BASE.replace('backbone = "resnet50"', 'backbone = "tiny_cnn"\nweights = "none"')
        .replace("depth = 2", "depth = 0")
        .replace("[data]", "[data]\ndownload = false")
        .replace('source = "tfds:cifar10"', f'source = "folder:{tmp_path / "imgs"}"')
    )
    for c in ("a", "b"):  # check looks at the names only (no image is read)
        (tmp_path / "imgs" / c).mkdir(parents=True)
        (tmp_path / "imgs" / c / "0.png").touch()
    args = ["--workspace", str(tmp_path / "ws"), "check", str(path)]
    assert main([*args, "--json"]) == 0  # not described yet: no counts, and how to get them
    doc = json.loads(capsys.readouterr().out)
    assert doc["runs"][0]["phases"][0]["frozen_params"] is None
    assert any("`tltui check --params` counts the parameters" in n for n in doc["notes"])
    assert main([*args, "--json", "--params"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    head, fine = run["phases"]
    assert (head["label"], head["epochs"], head["depth"], head["trainable_params"]) == ("1/2 head", 2, "all", 0)
    assert (fine["label"], fine["learning_rate"], fine["depth"]) == ("2/2 fine-tune", 1e-5, 0)
    assert 0 < fine["frozen_params"] < fine["trainable_params"]  # depth 0: only BatchNorm stays frozen
    assert head["frozen_params"] == fine["frozen_params"] + fine["trainable_params"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "    phase 1/2 head: 2 epochs, adam lr 0.001; freeze all (BatchNorm frozen); backbone " in out
    assert "    phase 2/2 fine-tune: 4 epochs, adam lr 1e-05, early stopping 3; freeze 0" in out
