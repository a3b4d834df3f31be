"""The registry's queue columns: migration of older registries, compare-and-set requeue."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tltui.core.workspace import Workspace


def test_an_older_registry_gains_the_new_columns(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "registry.sqlite")
    conn.execute(
        "CREATE TABLE runs (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, name TEXT NOT NULL,"
        " status TEXT NOT NULL, created REAL NOT NULL)"
    )
    conn.execute("INSERT INTO runs(id, seq, name, status, created) VALUES ('r0001', 1, 'old', 'failed', 1.0)")
    conn.commit()
    conn.close()
    ws = Workspace(root)
    rec = ws.get("r0001")
    assert (rec.name, rec.status, rec.resume, rec.owner_pid, rec.overrides) == ("old", "failed", False, None, {})
    ws.close()


def test_requeue_is_a_compare_and_set(ws: Workspace) -> None:
    a, b = ws.create_runs([("a", "", {}), ("b", "", {})], preset_name="p")
    assert ws.requeue(a.id, expect=["failed"], resume=True) is None
    assert ws.get(a.id).resume is False
    ws.update(a.id, status="failed", queue_pos=None, reason="x", owner_pid=123, pid=5, cancel_requested=True)
    back = ws.requeue(a.id, expect=["failed"], resume=True)
    assert back is not None and back.resume is True
    assert (back.status, back.reason, back.owner_pid, back.pid, back.cancel_requested) == (
        "queued",
        None,
        None,
        None,
        False,
    )
    assert [r.id for r in ws.queue()] == [b.id, a.id]
    # without arguments it behaves as before
    assert ws.requeue(b.id).queue_pos > back.queue_pos


def test_a_relative_workspace_path_is_made_absolute(tmp_path, monkeypatch) -> None:
    """`make run` passes `--workspace .tltui-demo`; the runner and workers run elsewhere."""
    from tltui.core.workspace import Workspace

    monkeypatch.chdir(tmp_path)
    ws = Workspace(".ws")
    assert ws.root == tmp_path / ".ws"
    assert ws.run_paths("r0001").dir.is_absolute()


def test_a_deleted_runs_id_is_never_given_again(ws: Workspace) -> None:
    """A reader that saw r0002 (the app's store, a cache keyed by run id) must not take a new run for it."""
    a, b = ws.create_runs([("a", "", {}), ("b", "", {})], preset_name="p")
    ws.update(b.id, status="completed", queue_pos=None)
    ws.delete(b.id)
    (c,) = ws.create_runs([("c", "", {})], preset_name="p")
    assert (a.id, b.id, c.id) == ("r0001", "r0002", "r0003")
    ws.run_paths("r0004").dir.mkdir(parents=True)  # a folder no run owns (a delete under way): skipped
    (d,) = ws.create_runs([("d", "", {})], preset_name="p")
    assert d.id == "r0005" and not ws.run_paths("r0005").events.exists()
    reopened = Workspace(ws.root)  # the mark is in the registry, not in this object
    try:
        assert reopened.create_runs([("e", "", {})], preset_name="p")[0].id == "r0006"
    finally:
        reopened.close()
