"""Sampled sweeps: the distributions, reproducible draws, grid x samples, and their errors at file:line."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tltui.core import presets, sweep_space
from tltui.core.presets import PresetError

BASE = """\
name = "p"
[data]
source = "tfds:cifar10"
image_size = [32, 32]
[model]
backbone = "resnet50"
weights = "none"
[train]
epochs = 3
optimizer = "sgd"
learning_rate = 0.01
[[phases]]
name = "head"
freeze.depth = "all"
[[phases]]
name = "fine"
train.learning_rate = 0.001
"""

SAMPLED = (
    BASE + "[sweep]\n"
    '"freeze.depth" = [0, 1]\n'
    '"train.learning_rate" = { loguniform = [1e-4, 1e-1] }\n'
    '"phases.2.train.epochs" = { int = [2, 5] }\n'
    '"train.momentum" = { uniform = [0.5, 0.99] }\n'
    '"train.optimizer" = { choice = ["sgd", "adam"] }\n'
    "samples = 4\n"
    "seed = 7\n"
)


def _err(text: str) -> list[str]:
    with pytest.raises(PresetError) as ei:
        presets.loads(text, "p.toml")
    return [str(i) for i in ei.value.issues]


def test_grid_times_samples_each_grid_point_with_its_own_draws_inside_each_range() -> None:
    runs = presets.expand(presets.loads(SAMPLED, "p.toml"))
    assert len(runs) == 2 * 4
    assert [r.overrides["freeze.depth"] for r in runs] == [0, 1] * 4
    lrs = [r.overrides["train.learning_rate"] for r in runs]
    assert len(set(lrs)) == 8 and all(1e-4 <= v <= 1e-1 for v in lrs)
    assert all(r.overrides["phases.2.train.epochs"] in range(2, 6) for r in runs)
    assert all(0.5 <= r.overrides["train.momentum"] <= 0.99 for r in runs)
    for r in runs:  # the drawn values are the run's preset, phase keys included
        assert r.preset.train.learning_rate == r.overrides["train.learning_rate"]
        assert r.preset.phases[1].train.epochs == r.overrides["phases.2.train.epochs"]
        assert r.preset.train.optimizer == r.overrides["train.optimizer"]
        assert not r.preset.sweep and not r.preset.sweep_space.active
    assert runs[0].name.startswith("p[sample=1,depth=0,learning_rate=")
    assert len({r.name for r in runs}) == 8


def test_the_same_seed_gives_the_same_runs_and_another_seed_others() -> None:
    one = presets.expand(presets.loads(SAMPLED, "p.toml"))
    again = presets.expand(presets.loads(SAMPLED, "again.toml"))
    other = presets.expand(presets.loads(SAMPLED.replace("seed = 7", "seed = 8"), "p.toml"))
    assert [r.overrides for r in one] == [r.overrides for r in again]
    assert [r.overrides for r in one] != [r.overrides for r in other]


def test_a_sampled_preset_round_trips_through_toml() -> None:
    p = presets.loads(SAMPLED, "p.toml")
    assert presets.loads(presets.dumps(p), "again.toml") == p
    assert p.sweep == {"freeze.depth": [0, 1]} and p.sweep_space.samples == 4


def test_a_sampled_preset_round_trips_through_model_dump_but_a_file_cannot_name_the_field() -> None:
    p = presets.loads(SAMPLED, "p.toml")
    assert presets.from_dict(p.model_dump()) == p
    with pytest.raises(presets.PresetError, match="sweep_space: unknown key"):
        presets.loads(SAMPLED + "\n[sweep_space]\nsamples = 2\n", "p.toml")


def test_draws_follow_their_distribution() -> None:
    space = sweep_space.SweepSpace(
        samples=1,
        seed=0,
        keys={"a": {"loguniform": [1e-4, 1.0]}, "b": {"int": [0, 2]}, "c": {"choice": ["x", "y"]}},
    )
    draws = sweep_space.draw(space, 3000)
    logs = [math.log10(d["a"]) for d in draws]
    assert sum(lg < -2 for lg in logs) / len(logs) == pytest.approx(0.5, abs=0.05)  # half the decades below 1e-2
    assert {d["b"] for d in draws} == {0, 1, 2}  # both ends included
    assert sum(d["c"] == "x" for d in draws) / len(draws) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        (
            '"train.learning_rate" = { loguniform = [0, 0.1] }\nsamples = 2',
            "p.toml:19: sweep.train.learning_rate: loguniform: low must be > 0",
        ),
        (
            '"train.learning_rate" = { logu = [1, 2] }\nsamples = 2',
            "p.toml:19: sweep.train.learning_rate: expected one of { loguniform",
        ),
        (
            '"train.learning_rate" = { uniform = [0.1, 20] }\nsamples = 2',
            "p.toml:19: sweep.train.learning_rate: value 20: Input should be less than or equal to 10",
        ),
        (
            '"train.epochs" = { int = [1.5, 2] }\nsamples = 2',
            "p.toml:19: sweep.train.epochs: int: expected two integers",
        ),
        (
            '"train.epochs" = { uniform = [3, 2] }\nsamples = 2',
            "p.toml:19: sweep.train.epochs: uniform: expected [low, high], low < high",
        ),
        (
            '"train.optimizer" = { choice = [] }\nsamples = 2',
            "p.toml:19: sweep.train.optimizer: choice: expected a non-empty list",
        ),
        (
            '"phases.3.train.epochs" = { int = [1, 2] }\nsamples = 2',
            "p.toml:19: sweep.phases.3.train.epochs: no phase 3",
        ),
        ('"train.epochs" = { int = [1, 2] }', "p.toml:18: sweep.samples: sampled keys need samples = N"),
        ("samples = 3", "p.toml:19: sweep.samples: no key to sample"),
        (
            'samples = -1\n"train.epochs" = { int = [1, 2] }',
            "p.toml:19: sweep.samples: Input should be greater than or equal to 0",
        ),
        (
            'seed = "x"\nsamples = 1\n"train.epochs" = { int = [1, 2] }',
            "p.toml:19: sweep.seed: Input should be a valid integer",
        ),
        (
            'samples = 600\n"train.epochs" = { int = [1, 2] }\n"freeze.depth" = [0, 1]',
            "p.toml:18: sweep: expands to 1200 runs; at most 1000",
        ),
    ],
)
def test_a_bad_sampled_sweep_gets_one_line_at_its_file_and_line(sweep: str, expected: str) -> None:
    issues = _err(BASE + "[sweep]\n" + sweep + "\n")
    assert issues[0].startswith(expected), issues


def test_set_changes_the_samples_and_the_seed() -> None:
    text = BASE + '[sweep]\n"train.learning_rate" = { loguniform = [1e-4, 1e-1] }\nsamples = 2\n'
    runs = presets.expand(presets.loads(text, "p.toml", {"sweep.samples": 5, "sweep.seed": 3}))
    assert len(runs) == 5
    assert (
        runs[0].overrides
        == presets.expand(presets.loads(text.replace("samples = 2", "samples = 5\nseed = 3"), "q.toml"))[0].overrides
    )


def test_check_lists_the_same_sampled_runs_in_another_process(tmp_path: Path, capsys) -> None:
    from tltui.commands.main import main

    f = tmp_path / "s.toml"
    f.write_text(SAMPLED.replace('source = "tfds:cifar10"', 'source = "tfds:cifar10"\ndownload = true'))
    args = ["--workspace", str(tmp_path / "ws"), "check", str(f), "--json"]
    other = subprocess.run(
        [sys.executable, "-m", "tltui", *args], capture_output=True, text=True, check=True, timeout=60
    )
    assert main(args) == 0
    here = capsys.readouterr().out
    assert json.loads(here)["runs"] == json.loads(other.stdout)["runs"] and len(json.loads(here)["runs"]) == 8


BUDGETED = '[sweep]\n"train.seed" = [1, 2, 3]\n[sweep.budget]\nmin_epochs = 2\neta = 3\n'


def test_a_budget_keeps_in_every_run_and_is_checked_against_the_preset() -> None:
    runs = presets.expand(presets.loads(BASE.replace("epochs = 3", "epochs = 30") + BUDGETED, "p.toml"))
    assert [r.preset.sweep_space.budget.min_epochs for r in runs] == [2, 2, 2]  # type: ignore[union-attr]
    assert presets.loads(presets.dumps(runs[0].preset), "run.toml") == runs[0].preset  # the worker reads it back
    flat = BASE.split("[[phases]]")[0]
    capped = presets.expand(presets.loads(flat + BUDGETED + "max_epochs = 12\n", "p.toml"))
    assert [r.preset.train.epochs for r in capped] == [12, 12, 12]
    assert _err(flat + BUDGETED + 'metric = "f1"\n')[0].startswith("p.toml:17: sweep.budget.metric: expected one of")
    assert _err(flat + BUDGETED.replace("= 2", "= 3"))[0] == (
        "p.toml:15: sweep.budget.min_epochs: 3 leaves no rung below the runs' 3 epochs"
    )
    assert "a phased preset sets each phase's epochs" in _err(BASE + BUDGETED + "max_epochs = 12\n")[0]


def test_check_prints_the_rungs_and_run_refuses_a_budgeted_sweep(tmp_path: Path, capsys) -> None:
    from tltui.commands.main import main

    f = tmp_path / "b.toml"
    f.write_text(
        BASE.split("[[phases]]")[0]
        .replace("epochs = 3", "epochs = 20")
        .replace('"tfds:cifar10"', '"tfds:cifar10"\ndownload = true')
        + BUDGETED
    )
    home = ["--workspace", str(tmp_path / "ws")]
    assert main([*home, "check", str(f)]) == 0
    assert "budget: val_acc (max), eta 3: each run pauses at epochs 2, 6, 18 of 20" in capsys.readouterr().out
    assert main([*home, "run", str(f)]) == 2
    assert "runs through the queue: `tltui queue add" in capsys.readouterr().err
