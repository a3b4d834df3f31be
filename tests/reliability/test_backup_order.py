"""Resume never leaves a hole in the history or trains a recorded epoch twice.

The worker saves BackupAndRestore's backup BEFORE the epoch's ``epoch_end`` event;
a kill between the two leaves a backup one epoch ahead of ``events.jsonl``, which
``repair_backup(max_epoch=...)`` rolls back to the previous copy. (The real-worker
kill during a checkpoint write: ``test_worker_faults.py::test_kill_9_in_the_middle...``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from tltui.worker.backup import BACKUP_META, BACKUP_WEIGHTS, repair_backup


def _backup(d: Path, suffix: str, epoch: int) -> bytes:
    with h5py.File(d / f"{BACKUP_WEIGHTS}{suffix}", "w") as f:
        f["w"] = np.full(3, epoch)
    (d / f"{BACKUP_META}{suffix}").write_text(json.dumps({"epoch": epoch, "batch": 0}))
    return (d / f"{BACKUP_WEIGHTS}{suffix}").read_bytes()


def test_a_backup_ahead_of_the_events_rolls_back_to_the_previous_copy(tmp_path: Path) -> None:
    prev = _backup(tmp_path, ".bkp", 2)
    _backup(tmp_path, "", 3)  # saved, then killed before epoch 3's end event
    assert repair_backup(tmp_path, max_epoch=2) == 2
    assert (tmp_path / BACKUP_WEIGHTS).read_bytes() == prev
    assert json.loads((tmp_path / BACKUP_META).read_text())["epoch"] == 2


def test_a_backup_in_step_with_the_events_is_kept(tmp_path: Path) -> None:
    _backup(tmp_path, ".bkp", 2)
    _backup(tmp_path, "", 3)
    assert repair_backup(tmp_path, max_epoch=3) == 3
    assert repair_backup(tmp_path, max_epoch=7) == 3  # behind the events: train again from there


def test_no_usable_copy_at_or_before_the_events_starts_over(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    _backup(backup, "", 1)
    assert repair_backup(backup, max_epoch=0) is None
    assert not backup.exists()
