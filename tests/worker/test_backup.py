"""The per-epoch backup (tltui/worker/backup.py): EpochBackup (the worker's cheap BackupAndRestore, same
files) restores weights, optimizer state and epoch; a torn or out-of-step backup is repaired from the
previous copy before a resume. Tiny model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tests.worker.tiny_keras import tiny_data, tiny_model  # noqa: E402
from tltui.worker.backup import (  # noqa: E402
    BACKUP_FORMAT,
    BACKUP_META,
    BACKUP_WEIGHTS,
    EpochBackup,
    backup_state,
    repair_backup,
)


def test_backup_restores_weights_optimizer_state_and_epoch(tmp_path: Path) -> None:
    x, y = tiny_data()
    m = tiny_model(0)
    m.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[EpochBackup(tmp_path)])
    saved = [np.array(v.numpy()) for v in backup_state(m)]
    assert json.loads((tmp_path / BACKUP_META).read_text())["epoch"] == 2
    assert json.loads((tmp_path / f"{BACKUP_META}.bkp").read_text())["epoch"] == 1
    assert int(m.optimizer.iterations.numpy()) == 8

    m2 = tiny_model(1)  # other initial weights
    m2.fit(
        x, y, epochs=2, batch_size=8, verbose=0, callbacks=[EpochBackup(tmp_path)]
    )  # both epochs restored: no training
    assert int(m2.optimizer.iterations.numpy()) == 8
    for a, b in zip(saved, backup_state(m2), strict=True):
        np.testing.assert_array_equal(a, b.numpy())

    m3 = tiny_model(2)
    seen: list[int] = []
    cb = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(e))
    m3.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[EpochBackup(tmp_path), cb])
    assert seen == [2]  # resumed after epoch 2
    assert int(m3.optimizer.iterations.numpy()) == 12


def test_a_kill_between_the_weights_and_the_metadata_uses_the_previous_copy(tmp_path: Path) -> None:
    x, y = tiny_data()
    m = tiny_model(0)
    m.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[EpochBackup(tmp_path)])
    prev = (tmp_path / f"{BACKUP_WEIGHTS}.bkp").read_bytes()
    # what a kill after step 2 (new weights in place) and before step 3 (metadata) leaves
    (tmp_path / BACKUP_META).write_text(json.dumps({"epoch": 1, "batch": 0}))
    assert repair_backup(tmp_path) == 1
    assert (tmp_path / BACKUP_WEIGHTS).read_bytes() == prev


def test_the_previous_copy_is_a_consistent_pair_and_survives_the_next_save(tmp_path: Path) -> None:
    x, y = tiny_data()
    m = tiny_model(0)
    m.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[EpochBackup(tmp_path)])
    for suffix, epoch in (("", 3), (".bkp", 2)):
        with h5py.File(tmp_path / f"{BACKUP_WEIGHTS}{suffix}", "r") as f:
            assert f.attrs["format"] == BACKUP_FORMAT and int(f.attrs["epoch"]) == epoch
        assert json.loads((tmp_path / f"{BACKUP_META}{suffix}").read_text())["epoch"] == epoch
    assert os.stat(tmp_path / BACKUP_WEIGHTS).st_ino != os.stat(tmp_path / f"{BACKUP_WEIGHTS}.bkp").st_ino
    assert not list(tmp_path.glob(".*tmp"))


def test_a_backup_written_by_keras_backup_and_restore_still_resumes(tmp_path: Path) -> None:
    x, y = tiny_data()
    m = tiny_model(0)
    m.fit(
        x,
        y,
        epochs=2,
        batch_size=8,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path), double_checkpoint=True, delete_checkpoint=False)],
    )
    m2 = tiny_model(1)
    seen: list[int] = []
    cb = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(e))
    m2.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[EpochBackup(tmp_path), cb])
    assert seen == [2]
    assert int(m2.optimizer.iterations.numpy()) == 12


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
