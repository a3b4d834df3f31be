"""Torn files: a half-written last line in ``events.jsonl``, garbage lines, an empty or truncated
``model.keras``, a registry whose writer was SIGKILLed inside ``BEGIN IMMEDIATE``.
Readers skip or repair, never crash, and say so once.

(A torn BackupAndRestore backup is repaired before a resume:
``tests/worker/test_backup.py::test_repair_backup_*``.)
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tltui.commands import main as cli
from tltui.core import protocol, runstate
from tltui.core.protocol import EpochEnd, Started
from tltui.core.workspace import Workspace
from tltui.runner import supervisor


def write_run(ws: Workspace, epochs: int = 2, torn: bytes = b'{"type": "epoch_end", "t": 3.0, "epo') -> str:
    (rec,) = ws.create_runs([("torn", "[train]\nepochs = 3\n", {})], preset_name="torn", queued=False)
    lines = [protocol.encode(Started(t=1.0, epochs=3))]
    for e in range(1, epochs + 1):
        lines.append(
            protocol.encode(
                EpochEnd(t=1.0 + e, epoch=e, metrics={"loss": 1.0 / e, "acc": 0.5, "val_acc": 0.4 + e / 10})
            )
        )
    ws.run_paths(rec.id).events.write_bytes("".join(lines).encode() + torn)
    return rec.id


def test_a_torn_last_line_is_skipped_by_every_reader_and_reported_once(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = write_run(ws)
    events = ws.run_paths(rid).events
    st = runstate.load(events)
    assert st.epochs_done == 2 and st.skipped_lines == 1

    # the runner's exit bookkeeping: failed at epoch 2, not stuck, no crash
    supervisor.record_started(ws, rid, os.getpid())
    assert supervisor.record_exit(ws, rid, -signal.SIGKILL) == "failed"
    rec = ws.get(rid)
    assert rec.epoch == 2 and "SIGKILL" in (rec.reason or "")

    # `tltui runs show`: the history, and ONE warning line naming the file
    assert cli.main(["--workspace", str(ws.root), "runs", "show", rid]) == 0
    out, err = capsys.readouterr()
    assert [ln.split()[0] for ln in out.splitlines() if ln.strip()[:1].isdigit()] == ["1", "2"]
    assert err.splitlines() == [f"warning: {events}: skipped 1 unreadable line(s) (a write cut short by a crash)"]

    # the TUI's data layer: loads, polls again and again, never re-counts or crashes
    from tltui.tui.store import RunStore

    store = RunStore(ws)
    store.refresh(force=True)
    store.watch(rid)
    for _ in range(5):
        store.poll()
    assert store.load(rid).epochs_done == 2


def test_a_resumed_worker_ends_the_torn_line_instead_of_losing_its_first_event(ws: Workspace) -> None:
    from tltui.worker.events import EventWriter

    rid = write_run(ws)
    run_dir = ws.run_paths(rid).dir
    with EventWriter(run_dir) as w:
        w.emit(Started(t=9.0, epochs=3, initial_epoch=2))
        w.emit(EpochEnd(t=10.0, epoch=3, metrics={"loss": 0.2}))
    evs = protocol.read_events(run_dir / "events.jsonl")
    assert [e.type for e in evs][-2:] == ["started", "epoch_end"]
    st = runstate.load(run_dir / "events.jsonl")
    assert sorted(st.history) == [1, 2, 3] and st.skipped_lines == 1


def test_garbage_lines_anywhere_are_skipped(ws: Workspace) -> None:
    rid = write_run(ws, torn=b"")
    events = ws.run_paths(rid).events
    good = events.read_bytes().splitlines(keepends=True)
    events.write_bytes(
        good[0] + b"\x00\xff\xfe garbage\n" + b'{"type": "epoch_end"}\n' + b"".join(good[1:]) + b"[1, 2]\n"
    )
    st = runstate.load(events)
    assert st.epochs_done == 2 and st.skipped_lines == 3


def test_an_empty_events_file_or_none_at_all(ws: Workspace) -> None:
    rid = write_run(ws, epochs=0, torn=b"")
    events = ws.run_paths(rid).events
    events.write_bytes(b"")
    assert runstate.load(events).epochs_done == 0
    events.unlink()
    assert runstate.load(events).epochs_done == 0 and runstate.load(events).skipped_lines == 0


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from tltui.core import workspace
    ws = workspace.Workspace(sys.argv[1])
    real = workspace.atomic_write
    calls = []
    def slow(path, data, *a, **k):
        calls.append(path)
        real(path, data, *a, **k)
        if len(calls) == 2:  # two runs inserted, uncommitted: BEGIN IMMEDIATE is held
            print("inside", flush=True)
            time.sleep(120)
    workspace.atomic_write = slow
    ws.create_runs([(f"n{i}", "[train]\\n", {}) for i in range(3)], preset_name="n")
    """
)


def test_a_registry_writer_killed_mid_transaction_leaves_nothing_half_written(ws: Workspace) -> None:
    (before,) = ws.create_runs([("kept", "[train]\n", {})], preset_name="kept")
    ws.close()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(ws.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "inside"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    # the next opener works at once (no "database is locked"), and sees only committed runs
    ws2 = Workspace(ws.root)
    ws2.conn.execute("PRAGMA busy_timeout = 2000")
    assert [r.id for r in ws2.list_runs()] == [before.id]
    assert ws2.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    new = ws2.create_runs([("after", "[train]\n", {})], preset_name="after")
    # the killed writer's folders (r0002, r0003: written before its commit) belong to no run; the new run
    # takes the next id no folder holds, so it inherits none of their files
    assert [r.id for r in new] == ["r0004"]
    assert sorted(p.name for p in ws2.run_paths("r0004").dir.iterdir()) == ["preset.toml"]
    assert sorted(r.id for r in ws2.list_runs()) == [before.id, "r0004"]
    with sqlite3.connect(ws2.db_path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
    ws2.close()


@pytest.mark.e2e
@pytest.mark.xdist_group("reliability_e2e")
@pytest.mark.parametrize("content", [b"", b"PK\x03\x04" + b"\0" * 100], ids=["empty", "truncated"])
def test_an_empty_or_truncated_model_is_one_line_from_predict(tmp_path: Path, content: bytes) -> None:
    from tltui.worker.predict import JobError, load_model

    path = tmp_path / "model.keras"
    path.write_bytes(content)
    with pytest.raises(JobError) as err:
        load_model(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: cannot load the model (") and "\n" not in msg
