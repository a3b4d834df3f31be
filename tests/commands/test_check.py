"""``tltui check`` (and ``queue add``) on presets that used to print a traceback or name the wrong place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tltui.commands import main as cli

PRESET = 'name = "f"\n[data]\nsource = "folder:data"\nimage_size = [32, 32]\n[model]\nbackbone = "mobilenet_v2"\nweights = "none"\n'


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--workspace", str(tmp_path / "ws"), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _preset(tmp_path: Path, extra: str = "") -> Path:
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / c / "0.png").touch()
    p = tmp_path / "f.toml"
    p.write_text(PRESET + extra)
    return p


def test_check_and_queue_add_take_a_sweep_over_split_strings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = _preset(tmp_path, '[sweep]\n"data.train_split" = ["train[:10%]", "train[:20%]"]\n')
    code, out, err = _run(tmp_path, capsys, "check", str(p))
    assert code == 0 and "ok, 2 runs" in out and "f[train_split=train[_10_]," in out, err
    code, out, err = _run(tmp_path, capsys, "queue", "add", str(p), "--no-runner")
    assert code == 0 and len(out.split()) == 2, err


@pytest.mark.parametrize(
    ("setting", "start"),
    [
        ("freeze.depth=99", "error: --set freeze.depth=99: freeze.depth: mobilenet_v2 has 4 stages"),
        ("data.source=folder:nonexist", "error: --set data.source=folder:nonexist: data.source: folder "),
        ("data.image_size.x.y=1", "error: --set: data.image_size.x.y: data.image_size is not a table"),
    ],
)
def test_an_error_in_a_set_value_names_the_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, start: str
) -> None:
    p = _preset(tmp_path)
    for command in (["check"], ["queue", "add", "--no-runner"]):
        code, _, err = _run(tmp_path, capsys, *command, str(p), "--set", setting)
        assert code == 2 and err.startswith(start) and len(err.strip().splitlines()) == 1, err


def test_check_says_a_too_deeply_nested_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "deep.toml"
    p.write_text("name = " + "[" * 500 + "]" * 500 + "\n")
    code, _, err = _run(tmp_path, capsys, "check", str(p))
    assert code == 2 and err == f"error: {p}: TOML syntax error: nested too deeply\n"
