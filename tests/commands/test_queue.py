"""``tltui queue ls``: where each run executes, by the executor's contract, not its name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runner import nice_executor
from tltui.commands import main as cli
from tltui.core.status import RunStatus
from tltui.core.workspace import Workspace


@pytest.fixture
def nice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from nice_executor.install(tmp_path / "site", monkeypatch)


def test_the_device_column_shows_this_machines_devices_or_the_executor_that_places_its_own(
    ws: Workspace, nice: None, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = {}
    for executor in ("local", "nice", "ray"):
        for state in ("running", "queued"):
            (rec,) = ws.create_runs([(f"{executor}-{state}", "", {})], preset_name="p", executor=executor)
            runs[rec.id] = (executor, state)
            if state == "running":
                gpus = [0] if executor != "ray" else []
                ws.update(rec.id, status=RunStatus.RUNNING, queue_pos=None, gpus=gpus, host="node7")
    assert cli.main(["--workspace", str(ws.root), "queue", "ls"]) == 0
    rows = [line[4:].split() for line in capsys.readouterr().out.splitlines()[1:]]  # after POS: ID STATUS DEVICE
    device = {row[0]: row[2] for row in rows}
    assert {runs[rid]: device[rid] for rid in runs} == {
        ("local", "running"): "gpu0",
        ("nice", "running"): "gpu0",  # on this machine's GPU, like local
        ("ray", "running"): "ray:node7",
        ("local", "queued"): "-",
        ("nice", "queued"): "-",
        ("ray", "queued"): "ray",
    }


@pytest.mark.parametrize("command", [["runs", "ls"], ["queue", "ls"], ["queue", "add", "q.toml"]])
def test_a_registry_that_is_not_one_is_one_line_naming_the_file(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import write_preset

    root = tmp_path / "ws"
    root.mkdir()
    (root / "registry.sqlite").write_text("not a database, just text\n" * 200)
    write_preset(tmp_path, epochs=1)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--workspace", str(root), *command]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if not line.startswith("warning: ")] == [
        f"error: {root / 'registry.sqlite'}: not a tltui registry (file is not a database)"
    ], err
    assert (root / "registry.sqlite").read_text().startswith("not a database")  # left as it was
