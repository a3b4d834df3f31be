"""Notification texts and digests from registry records, the file an open app tails, and ``[notify]``."""

from __future__ import annotations

import pytest

from tltui.core import notifications
from tltui.core.errors import PresetError
from tltui.core.notifications import Notification
from tltui.core.settings import Settings
from tltui.core.workspace import RunRecord, Workspace


def rec(n: int, status: str, acc: float | None = None, **kw: object) -> RunRecord:
    return RunRecord(
        id=f"r{n:04d}",
        seq=n,
        name=f"photos[seed={n}]",
        status=status,
        created=0.0,
        preset_name="photos",
        sweep="ab12",
        epochs=10,
        epoch=kw.pop("epoch", 10),
        best_val_acc=acc,  # type: ignore[arg-type]
        best_val_top5_acc=None if acc is None else 0.97,
        best_epoch=None if acc is None else 7,
        **kw,  # type: ignore[arg-type]
    )


def test_a_failed_run_says_where_when_and_why() -> None:
    note = notifications.run_failed(rec(3, "failed", epoch=4, reason="loss became NaN\nin epoch 5"), "gpu1", now=5.0)
    assert note.text == "tltui@gpu1: r0003 photos[seed=3] failed at epoch 4/10: loss became NaN in epoch 5"
    assert note.digest["failures"] == [
        {"id": "r0003", "name": "photos[seed=3]", "epoch": 4, "reason": "loss became NaN in epoch 5"}
    ]


def test_a_sweep_digest_names_the_best_run_its_metrics_and_the_failures() -> None:
    runs = [rec(1, "completed", 0.81), rec(2, "failed", None, epoch=2, reason="x"), rec(3, "completed", 0.85)]
    note = notifications.sweep_done(runs, "gpu1", now=5.0)
    assert note.text == (
        "tltui@gpu1: sweep photos done: 3 runs (2 completed, 1 failed); "
        "best r0003 photos[seed=3]: val_acc 85.0% top-5 97.0% @ epoch 7; failed: r0002"
    )
    best = note.digest["best"]
    assert (best["id"], best["val_acc"], best["val_top5_acc"], best["epoch"]) == ("r0003", 0.85, 0.97, 7)
    empty = notifications.queue_empty(runs[:1], "gpu1")
    assert empty.text.startswith("tltui@gpu1: queue empty: 1 run (1 completed); best r0001")


def test_the_file_is_read_from_where_the_app_opened_and_a_torn_line_waits(ws: Workspace) -> None:
    old = Notification("run_failed", "before the app opened", {}, 1.0)
    notifications.append(ws.root, old)
    offset = notifications.end_offset(ws.root)
    assert notifications.read_new(ws.root, offset) == ([], offset)
    new = Notification("queue_empty", "after", {"runs": []}, 2.0)
    notifications.append(ws.root, new)
    with (ws.root / notifications.FILE).open("a") as f:
        f.write('{"event": "torn')
    notes, offset = notifications.read_new(ws.root, offset)
    assert notes == [new]
    assert notifications.read_new(ws.root, offset)[0] == []
    assert (ws.root / notifications.FILE).stat().st_mode & 0o777 == 0o600


def test_notify_settings_refuse_a_bad_url_and_suggest_a_misspelt_key(ws: Workspace) -> None:
    ws.settings_file.write_text('[notify]\nwebhok = "https://x"\nwebhook = "ftp://x"\non = ["run_failed", "done"]\n')
    with pytest.raises(PresetError) as e:
        Settings.load(ws, {})
    text = "\n".join(e.value.lines())
    assert "settings.toml:2: notify.webhok: unknown key; did you mean 'webhook'?" in text
    assert "settings.toml:3: notify.webhook: expected an http:// or https:// URL, got 'ftp://x'" in text
    assert "settings.toml:4: notify.on[1]:" in text
    assert Settings.load(ws, {}, strict=False).notify.on == ["run_failed", "sweep_done", "queue_empty"]
