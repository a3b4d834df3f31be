"""CLI misuse: unknown run ids, commands and flags give ONE line on stderr and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tltui.commands import main as cli

CASES = [
    (["runs", "show", "r9999"], "r9999: no such run"),
    (["runs", "rm", "--yes", "r9999"], "r9999: no such run"),
    (["cancel", "r9999"], "r9999: no such run"),
    (["resume", "r9999"], "r9999: no such run"),
    (["predict", "r9999", "."], "r9999: no such run"),
    (["freeze-map", "r9999"], "r9999: no such run"),
    (["runs", "show", "zzz"], "'zzz': not a run id"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["runs", "ls", "--bogus"], "unrecognized arguments: --bogus"),
    (["queue", "bogus"], "invalid choice: 'bogus'"),
    (["runs", "show"], "required: run_id"),
    (["queue", "move", "r9999"], "required: --to"),
    (["--workspace"], "expected one argument"),
    (["check", "/nonexistent/p.toml"], "/nonexistent/p.toml: no such preset file"),
    (["run", "/nonexistent/p.toml"], "/nonexistent/p.toml: no such preset file"),
    (["--bogus-flag", "runs", "ls"], "unrecognized arguments: --bogus-flag"),
]


def run_cli(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as e:  # argparse errors exit through SystemExit
        return int(e.code or 0)


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_misuse_is_one_line_and_a_nonzero_exit(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = run_cli(argv)
    out, err = capsys.readouterr()
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert "Traceback" not in err and out == ""


def test_a_real_process_prints_no_traceback_for_an_unknown_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = subprocess.run(
        [sys.executable, "-m", "tltui", "--workspace", str(tmp_path / "ws"), "runs", "show", "r9999"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["error: r9999: no such run (see `tltui runs ls`)"]
