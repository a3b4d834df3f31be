"""A budgeted sweep's checks and listings on the command line: each run's rungs when they differ, a budget that
leaves a run no rung, ``--set`` errors that name the ``--set``, and ``runs ls --status`` with a wrong word."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import write_preset
from tltui.commands import main as cli

EPOCHS_SWEPT = '[sweep]\n"train.epochs" = [3, 12]\n[sweep.budget]\nmin_epochs = 1\neta = 2\n'
SAMPLED = (
    '[sweep]\n"train.learning_rate" = { loguniform = [3e-4, 3e-2] }\nsamples = 2\n'
    "[sweep.budget]\nmin_epochs = 1\neta = 3\n"
)
PHASES = (
    "[[phases]]\ntrain.epochs = 1\n[[phases]]\ntrain.epochs = 1\n[[phases]]\ntrain.epochs = 1\n"
    '[sweep]\n"train.seed" = [1, 2]\n[sweep.budget]\nmin_epochs = 2\n'
)


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["--workspace", str(tmp_path / "ws"), "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_prints_each_runs_rungs_when_the_runs_epochs_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write_preset(tmp_path, epochs=3, extra=EPOCHS_SWEPT)
    code, out, _ = check(tmp_path, capsys, str(f))
    assert code == 0
    assert "the runs pause at different epochs" in out and "each run pauses at" not in out
    lines = out.splitlines()
    assert next(x for x in lines if "q[epochs=3]" in x).endswith("pauses at epochs 1, 2 of 3")
    assert next(x for x in lines if "q[epochs=12]" in x).endswith("pauses at epochs 1, 2, 4, 8 of 12")
    code, out, _ = check(tmp_path, capsys, str(f), "--json")
    assert [r["rungs"] for r in json.loads(out)["runs"]] == [[1, 2], [1, 2, 4, 8]]


def test_a_budget_that_leaves_a_run_no_rung_is_refused_at_min_epochs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # three 1-epoch phases: rung 2 is phase 2's first epoch, moved to 3, the run's last: no rung at all
    f = write_preset(tmp_path, epochs=1, extra=PHASES)
    code, out, err = check(tmp_path, capsys, str(f))
    assert code == 2 and out == ""
    line = f"{f}:{f.read_text().splitlines().index('min_epochs = 2') + 1}: sweep.budget.min_epochs: 2 leaves no rung"
    assert err.startswith(f"error: {line} in the runs' 3 epochs") and len(err.splitlines()) == 1
    code, out, _ = check(tmp_path, capsys, str(f), "--set", "sweep.budget.rung_in_first_epoch=true")
    assert code == 0 and "each run pauses at epochs 2 of 3" in out
    # a swept train.epochs: the short runs have none
    f = write_preset(tmp_path, epochs=3, extra=EPOCHS_SWEPT.replace("[3, 12]", "[1, 12]"))
    code, _, err = check(tmp_path, capsys, str(f))
    assert code == 2 and "1 leaves no rung below the runs' 1 epochs (the runs with train.epochs=1)" in err


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("sweep.budget.min_epochs=9", "--set sweep.budget.min_epochs=9: sweep.budget.min_epochs: 9 leaves no rung"),
        ("train.epochs=1", "--set train.epochs=1: sweep.budget.min_epochs: 1 leaves no rung"),
        ("sweep.samples=0", "--set sweep.samples=0: sweep.samples: sampled keys need samples"),
        ('sweep."train.learning_rate"={loguniform=[1e-4,1e-2]}', "--set: "),
        ("sweep.train.learning_rate=[0.1]", "--set: "),
        ('train."epochs"=3', "--set: "),
    ],
)
def test_a_set_that_breaks_the_sweep_is_named_not_a_line_of_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], item: str, says: str
) -> None:
    f = write_preset(tmp_path, epochs=9, extra=SAMPLED)
    code, _, err = check(tmp_path, capsys, str(f), "--set", item)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {says}") and str(f) not in err
    if '"' in item or item.startswith("sweep.train"):
        assert "[sweep] table" in err or "without quotes, like train.epochs=" in err


def test_runs_ls_refuses_an_unknown_status_and_lists_the_valid_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--workspace", str(tmp_path / "ws"), "runs", "ls", "--status", "paused", "--status", "bogus"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "error: runs ls --status bogus: no such status "
        "(one of queued, running, completed, failed, cancelled, interrupted, paused)"
    ]
    assert cli.main(["--workspace", str(tmp_path / "ws"), "runs", "ls", "--status", "paused"]) == 0
