"""Edges of the CLI a new user meets: nothing of theirs is deleted, and a bad path is one line, not a traceback."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tltui.commands.main import main


def test_demo_data_never_replaces_a_folder_of_the_users(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    assert main(["--workspace", str(tmp_path / "ws"), "demo-data", str(mine), "--per-class", "2"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(f"{mine}: exists and is not demo data; it would be replaced: pick a new folder")
    )
    assert (mine / "notes.txt").read_text() == "precious" and not (tmp_path / "photos").exists()
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")  # the photos beside it: not written over either
    assert main(["--workspace", str(tmp_path / "ws"), "demo-data", str(tmp_path / "new"), "--per-class", "2"]) == 2
    assert "holds other files than demo photos" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    (tmp_path / "photos" / "holiday.jpg").unlink()
    for _ in range(2):  # demo data (and its photos) is replaced when asked again with --force
        assert (
            main(
                ["--workspace", str(tmp_path / "ws"), "demo-data", str(tmp_path / "new"), "--per-class", "2", "--force"]
            )
            == 0
        )
    assert len(list((tmp_path / "new" / "circle").iterdir())) == 2


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_workspace_that_cannot_be_one_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    root = afile if where == "a file" else afile / "ws"
    assert main(["--workspace", str(root), "runs", "ls"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {root}: cannot be a workspace (") and "\n" not in err


def test_runs_rm_without_a_terminal_to_answer_deletes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tltui.core.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    (rec,) = ws.create_runs([("a", 'name = "a"\n', {})], preset_name="a")
    ws.update(rec.id, status="completed", queue_pos=None)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # cron, a pipe: input() meets EOF
    assert main(["--workspace", str(ws.root), "runs", "rm", rec.id]) == 1
    assert "nothing deleted" in capsys.readouterr().out and ws.get(rec.id).id == rec.id
    assert main(["--workspace", str(ws.root), "runs", "ls", "--status", "failed"]) == 0
    assert capsys.readouterr().out.strip() == "no failed runs (1 runs in all)"


def test_tui_with_a_preset_that_does_not_exist_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workspace", str(tmp_path / "ws"), "tui", "--preset", "nope"]) == 2
    assert "--preset nope: no such preset" in capsys.readouterr().err


def test_hub_fetch_of_an_empty_handle_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workspace", str(tmp_path / "ws"), "hub", "fetch", ""]) == 2  # not the current folder
    assert "hub fetch: an empty handle" in capsys.readouterr().err
