"""An executor installed from another package, end to end: CONTRIBUTING's "Add an executor" proof.

``nice`` (``tests/runner/nice_executor.py``) runs workers on this machine, like ``local``, so the
runner must give its runs this machine's devices and count them in the same slots; it reads its own
``[nice]`` table of ``settings.toml``. Real detached runners and the scripted fake worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import finished, script, write_preset
from tests.runner import nice_executor
from tltui.client import queue_ops
from tltui.commands import main as cli
from tltui.core import protocol
from tltui.core.errors import PresetError
from tltui.core.protocol import Started
from tltui.core.workspace import Workspace
from tltui.runner import supervisor
from tltui.runner.executor import EXECUTORS

TIMEOUT = 30.0


@pytest.fixture
def nice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from nice_executor.install(tmp_path / "site", monkeypatch)


@pytest.fixture
def qws(ws: Workspace, nice: None, fake_worker_env: list[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A workspace on a fake one-GPU machine whose runner and workers are gone after the test."""
    monkeypatch.setenv("TLTUI_FAKE_GPUS", "1")
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.1")
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "20")
    yield ws
    helpers.stop_runner_and_workers(ws)


def test_the_plugin_is_installed_through_its_entry_point(nice: None) -> None:
    cls = EXECUTORS["nice"]
    assert cls is nice_executor.NiceExecutor and cls.places_devices is False
    assert EXECUTORS.places_devices("nice") is False and EXECUTORS.places_devices("local") is False


def test_a_local_style_executor_shares_the_gpu_slot_with_local(qws: Workspace, tmp_path: Path) -> None:
    """Two local and two nice runs asking one GPU each, on a one-GPU machine: each gets the GPU in
    turn, one at a time (a nice run counted like a local one, not started at once without devices)."""
    ws = qws
    preset = write_preset(tmp_path, epochs=1, extra="gpus = 1\n")
    queue_ops.pause(ws)
    ids = [queue_ops.add(ws, preset, executor=ex, start_runner=False)[0].id for ex in ("local", "nice") * 2]
    queue_ops.unpause(ws)
    helpers.wait_for(lambda: finished(ws, *ids), "all runs to finish", TIMEOUT)
    recs = sorted((ws.get(r) for r in ids), key=lambda r: r.started or 0)
    assert [r.id for r in recs] == ids  # queue order
    assert [(r.executor, r.status, r.gpus) for r in recs] == [
        ("local", "completed", [0]),
        ("nice", "completed", [0]),
    ] * 2
    for before, after in zip(recs, recs[1:]):
        assert after.started >= before.finished, "two runs held the one GPU at once"
    for r in recs:
        started = next(ev for ev in protocol.read_events(ws.run_paths(r.id).events) if isinstance(ev, Started))
        assert started.versions["CUDA_VISIBLE_DEVICES"] == "0"


def test_its_settings_table_is_validated_and_reaches_the_executor(
    qws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = qws
    preset = write_preset(tmp_path, epochs=1)
    ws.settings_file.write_text("[runner]\ncpu_slots = 1\n\n[nice]\nincrment = 3\nincrement = 40\n")
    with pytest.raises(PresetError) as e:  # queue add: every problem, each at its line
        queue_ops.add(ws, preset, executor="local", start_runner=False)
    assert e.value.lines() == [
        f"{ws.settings_file}:5: nice.incrment: unknown key; did you mean 'increment'? (known keys: increment)",
        f"{ws.settings_file}:6: nice.increment: Input should be less than or equal to 19 (got 40)",
    ]
    assert cli.main(["--workspace", str(ws.root), "check", str(preset)]) == cli.EXIT_USAGE  # `tltui check` too
    assert capsys.readouterr().err.splitlines() == [f"error: {line}" for line in e.value.lines()]
    with pytest.raises(PresetError, match=r"settings.toml:6: nice.increment: "):
        EXECUTORS["nice"](ws)  # in the runner: the nice runs fail with that reason, local ones do not care
    assert ws.list_runs() == []

    ws.settings_file.write_text("[nice]\nincrement = 7\n")
    queue_ops.pause(ws)
    rid = queue_ops.add(ws, preset, executor="nice", start_runner=False)[0].id
    script(ws, rid, epoch_seconds=60, steps=600)  # alive until cancelled, and stops within a step
    queue_ops.unpause(ws)
    pid = helpers.wait_for(lambda: _alive_worker(ws, rid), "the nice run's worker", TIMEOUT)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)
    queue_ops.cancel(ws, rid)
    helpers.wait_for(lambda: finished(ws, rid), "the cancelled run to end", TIMEOUT)
    assert ws.get(rid).status == "cancelled"


def _alive_worker(ws: Workspace, rid: str) -> int | None:
    rec = ws.get(rid)
    return rec.pid if rec.pid and supervisor.is_alive(rec.pid, rec.pid_start) else None
