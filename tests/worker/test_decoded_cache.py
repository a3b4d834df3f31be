"""The decoded-image cache: decoded once and shared, keyed by the files, built atomically under a
lock, evicted oldest-used first, memory-mapped beyond the in-memory limit without changing a batch."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tltui.commands.main import main
from tltui.core import decoded_store, demo, presets
from tltui.worker import data, decoded


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return demo.generate(tmp_path / "shapes", per_class=6, size=20, shapes=("circle", "square", "cross"))


def preset_for(folder: Path, **overrides: object) -> presets.Preset:
    raw = {
        "name": "p",
        "data": {"source": f"folder:{folder}", "image_size": [16, 16], "batch_size": 4, "validation_fraction": 0.25},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
    }
    return presets.from_dict(raw, overrides=overrides)


def files_of(folder: Path) -> list[tuple[str, int]]:
    return data.scan_folder(folder).files


def test_decoded_once_then_read_and_equal_to_what_predict_decodes(folder: Path, tmp_path: Path) -> None:
    (folder / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    root = tmp_path / "cache"
    files = files_of(folder)
    asked = []
    first = decoded.get(root, files, (16, 16), native=lambda: asked.append(1) or (16, 16), limit_bytes=1e9)
    second = decoded.get(root, files, (16, 16), native=lambda: asked.append(1) or (16, 16), limit_bytes=1e9)
    assert (first.hit, second.hit, len(asked)) == (False, True, 1)  # the second run neither probes nor decodes
    assert second.path == first.path and [p for p, _ in second.bad] == [str(folder / "square" / "broken.png")]
    rows = second.meta["rows"]
    assert len(rows) == len(files) - 1
    for i in rows:  # exactly the pixels tltui predict feeds the model
        np.testing.assert_array_equal(second.images[i], decoded.decode(files[i][0], (16, 16)))
    assert not list(root.glob(".tmp-*"))


def test_a_changed_folder_or_other_settings_make_another_entry(folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    files = files_of(folder)
    a = decoded.get(root, files, (16, 16), native=lambda: (16, 16), limit_bytes=1e9)
    assert decoded.get(root, files, (24, 24), native=lambda: (24, 24), limit_bytes=1e9).path != a.path
    victim = Path(files[0][0])
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))  # edited (same size, new mtime)
    b = decoded.get(root, files, (16, 16), native=lambda: (16, 16), limit_bytes=1e9)
    assert not b.hit and b.path != a.path
    assert not decoded.get(root, files[1:], (16, 16), native=lambda: (16, 16), limit_bytes=1e9).hit  # one file less


def test_two_runs_starting_together_decode_once_and_the_second_says_it_waits(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cache"
    files = files_of(folder)
    real = decoded._decode_rows
    builds = []

    def slow(npy: str, rows: list, size: tuple) -> dict:
        builds.append(npy)
        time.sleep(0.05)
        return real(npy, rows, size)

    monkeypatch.setattr(decoded, "_decode_rows", slow)
    waits, got = [], []

    def one() -> None:
        got.append(decoded.get(root, files, (16, 16), native=lambda: (16, 16), limit_bytes=1e9,
                               on_wait=lambda: waits.append(1)))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({e.path for e in got}) == 1 and sorted(e.hit for e in got) == [False, True]
    assert len({Path(b).parent.name for b in builds}) == 1  # one build folder: decoded once
    assert waits == [1]


def test_a_build_killed_half_way_leaves_no_entry(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "cache"
    files = files_of(folder)

    def dies(npy: str, rows: list, size: tuple) -> dict:
        raise KeyboardInterrupt  # the process is going away mid-build

    monkeypatch.setattr(decoded, "_decode_rows", dies)
    with pytest.raises(KeyboardInterrupt):
        decoded.get(root, files, (16, 16), native=lambda: (16, 16), limit_bytes=1e9)
    assert decoded_store.entries(root) == [] and not list(root.glob(".tmp-*"))
    monkeypatch.undo()
    assert not decoded.get(root, files, (16, 16), native=lambda: (16, 16), limit_bytes=1e9).hit


def test_oldest_used_entries_are_evicted_beyond_the_limit(folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    files = files_of(folder)
    sizes = [(16, 16), (20, 20), (24, 24)]
    made = []
    for i, s in enumerate(sizes):
        made.append(decoded.get(root, files, s, native=lambda s=s: s, limit_bytes=1e9))
        os.utime(made[-1].path / decoded_store.META, (1000 + i, 1000 + i))
    os.utime(made[0].path / decoded_store.META, (2000, 2000))  # the first is used again: now the newest
    limit = decoded_store.entry_bytes(made[0]) + decoded_store.entry_bytes(made[2]) + 1
    decoded_store.evict(root, limit)
    assert sorted(e.path for e in decoded_store.entries(root)) == sorted([made[0].path, made[2].path])


def test_the_process_pool_decodes_the_same_pixels(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoded, "workers", lambda: 2)
    files = files_of(folder)
    threads = decoded.get(tmp_path / "a", files, (16, 16), native=lambda: (16, 16), limit_bytes=1e9)
    monkeypatch.setattr(decoded, "PROCESS_POOL_MIN_FILES", 1)
    procs = decoded.get(tmp_path / "b", files, (16, 16), native=lambda: (16, 16), limit_bytes=1e9)
    np.testing.assert_array_equal(threads.images, procs.images)
    assert threads.meta["rows"] == procs.meta["rows"]


def test_memory_mapped_splits_give_the_batches_in_memory_ones_do(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = preset_for(folder, **{"train.steps_per_epoch": 3})
    mem = data.load(preset, decoded_cache=tmp_path / "c")
    assert mem.train.images is not None and mem.report["in_memory"]
    monkeypatch.setattr(data, "CACHE_LIMIT_BYTES", 1)  # a folder far larger than memory allows
    mapped = data.load(preset, decoded_cache=tmp_path / "c")
    assert mapped.train.mapped is not None and mapped.train.images is None and not mapped.report["in_memory"]
    assert mapped.report["decoded_cache"]["hit"]
    for epoch in (0, 2):
        a = list(mem.train_batches(epoch).take(4).as_numpy_iterator())
        b = list(mapped.train_batches(epoch).take(4).as_numpy_iterator())
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    va = list(mem.eval_batches(mem.val).as_numpy_iterator())
    vb = list(mapped.eval_batches(mapped.val).as_numpy_iterator())
    assert len(va) == len(vb) and all(np.array_equal(x[0], y[0]) for x, y in zip(va, vb, strict=True))


def test_cache_ls_and_rm(folder: Path, tmp_path: Path, capsys) -> None:
    ws = tmp_path / "ws"
    root, limit = decoded_store.workspace_cache(ws)
    assert root == ws / "cache" / "decoded" and limit == decoded_store.DEFAULT_LIMIT_GB * 1e9
    files = files_of(folder)
    a = decoded.get(root, files, (16, 16), native=lambda: (16, 16), limit_bytes=limit, source=f"folder:{folder}")
    decoded.get(root, files, (20, 20), native=lambda: (20, 20), limit_bytes=limit)
    assert main(["--workspace", str(ws), "cache", "ls", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["entries"]) == 2 and doc["bytes"] == sum(e["bytes"] for e in doc["entries"])
    mine = next(e for e in doc["entries"] if e["key"] == a.path.name)
    assert (mine["source"], mine["images"], mine["native_size"]) == (f"folder:{folder}", len(files), [16, 16])
    assert main(["--workspace", str(ws), "cache", "rm", a.path.name[:8]]) == 0
    assert [e.path for e in decoded_store.entries(root)] != [a.path] and not a.path.exists()
    assert main(["--workspace", str(ws), "cache", "rm", "zzzz"]) == 2
    assert "no entry with a key starting 'zzzz'" in capsys.readouterr().err
    assert main(["--workspace", str(ws), "cache", "rm", "--all"]) == 0 and decoded_store.entries(root) == []
    (ws / "settings.toml").write_text("[cache]\ndecoded_gb = \"lots\"\n")
    assert main(["--workspace", str(ws), "cache", "ls"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == f"error: {ws / 'settings.toml'}:2: cache.decoded_gb: Input should be a valid number (got 'lots')"


@pytest.mark.e2e
def test_runs_of_a_sweep_in_a_workspace_decode_the_folder_once(folder: Path, tmp_path: Path) -> None:
    """Two runs of a sweep (different freeze depths, the same files): the first decodes into
    WORKSPACE/cache/decoded, the second reads that and trains on the same pixels."""
    import signal

    from tltui.core import protocol
    from tltui.worker import train

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    ws = tmp_path / "ws"
    reports = []
    try:
        for rid, depth in (("r0001", 0), ("r0002", 1)):
            run = ws / "runs" / rid
            run.mkdir(parents=True)
            (run / "preset.toml").write_text(presets.dumps(preset_for(folder, **{"freeze.depth": depth,
                                                                                 "train.epochs": 1})))
            assert train.main([str(run)]) == 0
            reports.append(json.loads((run / "data.json").read_text()))
            logs = [e.message for e in protocol.read_events(run / "events.jsonl") if e.type == "log"]
            assert any("read from the cache" in m for m in logs) == (rid == "r0002"), logs
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    first, second = (r["decoded_cache"] for r in reports)
    assert first["path"] == second["path"] and (first["hit"], second["hit"]) == (False, True)
    assert Path(first["path"]).parent == ws / "cache" / "decoded"
