"""The event writer (file + pipe, broken pipe) and the backup repair before a resume. No training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from tltui.core import protocol
from tltui.core.protocol import EpochEnd, Log, Started
from tltui.worker.events import EventWriter, ignore_sigpipe
from tltui.worker.train import BACKUP_META, BACKUP_WEIGHTS, repair_backup


def test_events_go_to_the_file_and_the_pipe(tmp_path: Path) -> None:
    r, w = os.pipe()
    with EventWriter(tmp_path, w) as writer:
        writer.emit(Started(t=1.0, epochs=3))
        writer.emit(EpochEnd(t=2.0, epoch=1, metrics={"loss": 0.5}), sync=True)
    on_pipe = os.read(r, 65536).decode().splitlines()
    os.close(r)
    in_file = (tmp_path / "events.jsonl").read_text().splitlines()
    assert on_pipe == in_file
    assert [e.type for e in protocol.read_events(tmp_path / "events.jsonl")] == ["started", "epoch_end"]


def test_a_closed_reader_disables_the_pipe_but_not_the_file(tmp_path: Path) -> None:
    ignore_sigpipe()
    r, w = os.pipe()
    os.close(r)
    writer = EventWriter(tmp_path, w)
    writer.emit(Log(t=1.0, message="first"))
    assert not writer.pipe_open
    writer.emit(Log(t=2.0, message="second"))
    writer.close()
    assert [e.message for e in protocol.read_events(tmp_path / "events.jsonl")] == ["first", "second"]


def test_events_append_across_writers(tmp_path: Path) -> None:
    for i in range(2):
        with EventWriter(tmp_path) as writer:
            writer.emit(Log(t=float(i), message=str(i)))
    assert [e.message for e in protocol.read_events(tmp_path / "events.jsonl")] == ["0", "1"]


def _h5(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["w"] = np.zeros(3)


def test_repair_backup_keeps_a_good_backup(tmp_path: Path) -> None:
    _h5(tmp_path / BACKUP_WEIGHTS)
    (tmp_path / BACKUP_META).write_text(json.dumps({"epoch": 2, "batch": 0}))
    assert repair_backup(tmp_path) == 2


def test_repair_backup_falls_back_to_the_previous_copy_after_a_torn_write(tmp_path: Path) -> None:
    _h5(tmp_path / f"{BACKUP_WEIGHTS}.bkp")
    (tmp_path / f"{BACKUP_META}.bkp").write_text(json.dumps({"epoch": 1, "batch": 0}))
    full = (tmp_path / f"{BACKUP_WEIGHTS}.bkp").read_bytes()
    (tmp_path / BACKUP_WEIGHTS).write_bytes(full[:96])  # killed mid-write
    (tmp_path / BACKUP_META).write_text(json.dumps({"epoch": 2, "batch": 0}))
    assert repair_backup(tmp_path) == 1
    assert (tmp_path / BACKUP_WEIGHTS).read_bytes() == full
    assert json.loads((tmp_path / BACKUP_META).read_text())["epoch"] == 1


def test_repair_backup_clears_an_unusable_backup(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / BACKUP_WEIGHTS).write_bytes(b"junk")
    (backup / BACKUP_META).write_text('{"epoch": ')
    assert repair_backup(backup) is None
    assert not backup.exists()
