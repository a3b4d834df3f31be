"""The decoded-image cache: decoded once and shared by every run on a folder (whatever its split,
seed or limits: the rows it picks are what decoding its own files gives), keyed by the files' identity
on disk, built atomically under a lock, evicted oldest-used first (never while held), a changed
folder's old entries dropped, memory-mapped beyond the in-memory limit without changing a batch; the
decoders die with their parent, and a script without a main guard fails with one line."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tltui.commands.main import main
from tltui.core import decoded_store, demo, memory, presets
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


def get(
    root: Path, files: list[tuple[str, int]], size: tuple[int, int] = (16, 16), **kw: object
) -> decoded_store.Entry:
    """The entry of ``files`` at ``size`` (their native size), released: as a run that copied it."""
    kw.setdefault("native", lambda _sizes: size)
    kw.setdefault("limit_bytes", 1e9)
    entry = decoded.get(root, files, size, **kw)  # type: ignore[arg-type]
    entry.release()
    return entry


def test_decoded_once_then_read_and_equal_to_what_predict_decodes(folder: Path, tmp_path: Path) -> None:
    (folder / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    root = tmp_path / "cache"
    files = files_of(folder)
    asked = []
    first = decoded.get(root, files, (16, 16), native=lambda _: asked.append(1) or (16, 16), limit_bytes=1e9)
    second = decoded.get(root, files, (16, 16), native=lambda _: asked.append(1) or (16, 16), limit_bytes=1e9)
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
    a = get(root, files)
    assert get(root, files, (24, 24)).path != a.path
    victim = Path(files[0][0])
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))  # edited (same size, new mtime)
    b = get(root, files)
    assert not b.hit and b.path != a.path
    assert not get(root, files[1:]).hit  # one file less


def bmp_folder(root: Path, per_class: int = 4) -> Path:
    """Two classes of 12x12 noise BMPs: an edit that keeps the pixels' count keeps the file's size."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / cls / f"{i}.bmp")
    return root


def test_an_edit_in_place_that_keeps_size_and_mtime_is_seen(tmp_path: Path) -> None:
    """As ``cp -p`` or ``rsync -t`` over a file can leave it: same inode, same size, same mtime."""
    folder = bmp_folder(tmp_path / "bmp")
    preset = preset_for(folder, **{"data.image_size": [12, 12]})
    first = data.load(preset, decoded_cache=tmp_path / "c")
    victim = folder / "a" / "0.bmp"
    before = os.stat(victim)
    inverted = 255 - np.asarray(Image.open(victim))
    Image.fromarray(inverted).save(victim)  # rewritten in place
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(victim)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    second = data.load(preset, decoded_cache=tmp_path / "c")
    assert not second.report["decoded_cache"]["hit"]
    assert second.report["decoded_cache"]["path"] != first.report["decoded_cache"]["path"]
    train_files, val_files = data.split_files(files_of(folder), 0.25, preset.train.seed)
    where = {p: (split, i) for split, fs in (("train", train_files), ("val", val_files)) for i, (p, _) in enumerate(fs)}
    split, i = where[str(victim)]
    seen = np.asarray(getattr(second, split).images[i])
    np.testing.assert_array_equal(seen, inverted)  # the new pixels
    assert not np.array_equal(seen, np.asarray(getattr(first, split).images[i]))
    # the old entry can never be read again: building the new one removed it
    assert [e.path for e in decoded_store.entries(tmp_path / "c")] == [Path(second.report["decoded_cache"]["path"])]


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
        got.append(
            decoded.get(
                root, files, (16, 16), native=lambda _: (16, 16), limit_bytes=1e9, on_wait=lambda: waits.append(1)
            )
        )

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
        get(root, files)
    assert decoded_store.entries(root) == [] and not list(root.glob(".tmp-*"))
    monkeypatch.undo()
    assert not get(root, files).hit


def test_oldest_used_entries_are_evicted_beyond_the_limit(folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    files = files_of(folder)
    sizes = [(16, 16), (20, 20), (24, 24)]
    made = []
    for i, s in enumerate(sizes):
        made.append(get(root, files, s))
        os.utime(made[-1].path / decoded_store.META, (1000 + i, 1000 + i))
    os.utime(made[0].path / decoded_store.META, (2000, 2000))  # the first is used again: now the newest
    limit = decoded_store.entry_bytes(made[0]) + decoded_store.entry_bytes(made[2]) + 1
    fd = decoded_store.hold(root, made[1].key)  # a run is reading the oldest one
    try:
        assert decoded_store.evict(root, limit) == [] and len(decoded_store.entries(root)) == 3
    finally:
        os.close(fd)
    assert decoded_store.evict(root, limit) == [made[1].path]
    assert sorted(e.path for e in decoded_store.entries(root)) == sorted([made[0].path, made[2].path])


def test_the_process_pool_decodes_the_same_pixels(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decoded, "workers", lambda: 2)
    files = files_of(folder)
    threads = get(tmp_path / "a", files)
    monkeypatch.setattr(decoded, "PROCESS_POOL_MIN_FILES", 1)
    procs = get(tmp_path / "b", files)
    np.testing.assert_array_equal(threads.images, procs.images)
    assert threads.meta["rows"] == procs.meta["rows"]


def test_memory_mapped_splits_give_the_batches_in_memory_ones_do(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = preset_for(folder, **{"train.steps_per_epoch": 3})
    mem = data.load(preset, decoded_cache=tmp_path / "c")
    assert mem.train.images is not None and mem.report["in_memory"]
    monkeypatch.setattr(memory, "available_bytes", lambda: 0)  # a folder far larger than memory allows
    mapped = data.load(preset, decoded_cache=tmp_path / "c")
    assert mapped.train.mapped is not None and mapped.train.images is None and not mapped.report["in_memory"]
    assert mapped.report["decoded_cache"]["hit"]
    for epoch in (0, 2):
        a = list(mem.train_batches(epoch).take(4).as_numpy_iterator())
        b = list(mapped.train_batches(epoch).take(4).as_numpy_iterator())
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            np.testing.assert_equal(xa, xb)  # (uint8 images, augmentation draws)
            np.testing.assert_array_equal(ya, yb)
    va = list(mem.eval_batches(mem.val).as_numpy_iterator())
    vb = list(mapped.eval_batches(mapped.val).as_numpy_iterator())
    assert len(va) == len(vb) and all(np.array_equal(x[0], y[0]) for x, y in zip(va, vb, strict=True))


def test_cache_ls_and_rm(folder: Path, tmp_path: Path, capsys) -> None:
    ws = tmp_path / "ws"
    root, limit = decoded_store.workspace_cache(ws)
    assert root == ws / "cache" / "decoded" and limit == decoded_store.DEFAULT_LIMIT_GB * 1e9
    files = files_of(folder)
    a = get(root, files, limit_bytes=limit, source=f"folder:{folder}")
    get(root, files, (20, 20), limit_bytes=limit)
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
    (ws / "settings.toml").write_text('[cache]\ndecoded_gb = "lots"\n')
    assert main(["--workspace", str(ws), "cache", "ls"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == f"error: {ws / 'settings.toml'}:2: cache.decoded_gb: Input should be a valid number (got 'lots')"


def old_entry(path: Path, files: list[tuple[str, int]]) -> None:
    """An entry as tltui wrote it before the layout changed (version 1: rows in train+val order)."""
    path.mkdir(parents=True)
    np.save(path / decoded_store.IMAGES, np.zeros((len(files), 16, 16, 3), dtype=np.uint8))
    meta = {
        "version": 1,
        "source": "folder:x",
        "native_size": [16, 16],
        "files": [[p, lab] for p, lab in files],
        "rows": list(range(len(files))),
        "skipped": [],
        "bytes": len(files) * 16 * 16 * 3,
        "created": 0,
    }
    (path / decoded_store.META).write_text(json.dumps(meta))


def test_an_entry_in_the_older_layout_is_never_read_but_listed_and_removable(
    folder: Path, tmp_path: Path, capsys
) -> None:
    ws = tmp_path / "ws"
    root, _ = decoded_store.workspace_cache(ws)
    files = files_of(folder)
    old_entry(root / decoded.fingerprint(files, (16, 16)), files)  # even under the very key it would need
    new = get(root, files)
    assert not new.hit and new.meta["version"] == decoded_store.DECODE_VERSION
    np.testing.assert_array_equal(new.images[0], decoded.decode(files[0][0], (16, 16)))
    old_entry(root / "0123456789abcdef01234567", files)
    assert main(["--workspace", str(ws), "cache", "ls", "--json"]) == 0
    listed = {e["key"]: e["current"] for e in json.loads(capsys.readouterr().out)["entries"]}
    assert listed == {new.key: True, "0123456789abcdef01234567": False}
    assert main(["--workspace", str(ws), "cache", "ls"]) == 0
    assert "(old format: never read again)" in capsys.readouterr().out
    assert main(["--workspace", str(ws), "cache", "rm", "0123"]) == 0
    assert [e.path for e in decoded_store.entries(root)] == [new.path]


@pytest.mark.e2e
def test_runs_of_a_sweep_in_a_workspace_decode_the_folder_once(folder: Path, tmp_path: Path) -> None:
    """Two runs of a sweep (different freeze depths, the same files): the first decodes into
    WORKSPACE/cache/decoded, the second reads that and trains on the same pixels."""
    from tltui.core import protocol
    from tltui.worker import train

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    ws = tmp_path / "ws"
    reports = []
    try:
        for rid, depth in (("r0001", 0), ("r0002", 1)):
            run = ws / "runs" / rid
            run.mkdir(parents=True)
            (run / "preset.toml").write_text(
                presets.dumps(preset_for(folder, **{"freeze.depth": depth, "train.epochs": 1}))
            )
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


# ----------------------------------------------------------------- one entry per folder, rows by index


def split_images(ds: data.Dataset, split: data.Split | None) -> tuple[np.ndarray, np.ndarray]:
    """A split's images and labels in its order, through the pipeline's own reads (in memory or mapped)."""
    batches = list(ds.eval_batches(split).as_numpy_iterator())
    return np.concatenate([x for x, _ in batches]).astype(np.uint8), np.concatenate([y for _, y in batches])


def expected_split(folder: Path, preset: presets.Preset) -> list[list[tuple[str, int]]]:
    """The run's training and validation files, in order, as split and limited before the entry was shared."""
    d, seed = preset.data, preset.train.seed
    train, val = data.split_files(files_of(folder), d.validation_fraction, seed)
    return [data.limit(train, d.train_limit, seed), data.limit(val, d.val_limit, seed + 1)]


SWEEP = [{}, {"train.seed": 7}, {"data.validation_fraction": 0.4}, {"data.train_limit": 5}, {"data.val_limit": 1}]


@pytest.mark.parametrize("mapped", [False, True], ids=["in_memory", "mapped"])
def test_a_sweep_over_seed_fraction_and_limits_decodes_once_and_each_run_sees_its_own_split_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mapped: bool
) -> None:
    """Real photos (scikit-image's samples: PNG and JPEG, RGB and grayscale, 303x384 to 1134x1024).
    Every run of the sweep reads the one entry of the folder, and the rows it picks by index are,
    image for image and in order, what a fresh decode of its own split gives."""
    from tests.worker.test_folder_images import skimage_folder

    folder = skimage_folder(tmp_path / "photos")
    if mapped:
        monkeypatch.setattr(memory, "available_bytes", lambda: 0)
    cache = tmp_path / "cache"
    for i, overrides in enumerate(SWEEP):
        preset = preset_for(folder, **{"data.image_size": [24, 24], **overrides})
        ds = data.load(preset, decoded_cache=cache)
        assert ds.report["decoded_cache"]["hit"] == (i > 0) and ds.report["in_memory"] == (not mapped)
        assert ds.native_size == (24, 24)
        for split, files in zip((ds.train, ds.val), expected_split(folder, preset), strict=True):
            x, y = split_images(ds, split)
            assert y.tolist() == [label for _, label in files]
            np.testing.assert_array_equal(x, np.stack([decoded.decode(p, (24, 24)) for p, _ in files]))
        assert ds.train_examples + ds.val_examples == 12 - ds.report["not_used"]
    assert len(decoded_store.entries(cache)) == 1


def test_a_limit_that_picks_files_of_one_small_size_keeps_them_at_that_size(tmp_path: Path) -> None:
    """The native size is the run's files' (as it was before the entry was shared): a run whose
    files all share one size below image_size keeps them at that size, from an entry at that size."""
    folder = bmp_folder(tmp_path / "bmp", per_class=6)
    Image.new("RGB", (10, 14), (200, 10, 10)).save(folder / "a" / "odd.bmp")  # the folder's sizes differ
    full = preset_for(folder, **{"data.image_size": [16, 16]})

    def limited(seed: int) -> presets.Preset:
        return preset_for(
            folder, **{"data.image_size": [16, 16], "data.train_limit": 3, "data.val_limit": 1, "train.seed": seed}
        )

    seed = next(
        s for s in range(100) if all("odd" not in p for fs in expected_split(folder, limited(s)) for p, _ in fs)
    )
    cache = tmp_path / "cache"
    whole = data.load(full, decoded_cache=cache)
    assert whole.native_size == (16, 16)
    for hit in (False, True):
        ds = data.load(limited(seed), decoded_cache=cache)
        assert ds.native_size == (12, 12) and ds.report["decoded_cache"]["hit"] == hit
        for split, files in zip((ds.train, ds.val), expected_split(folder, limited(seed)), strict=True):
            np.testing.assert_array_equal(
                split_images(ds, split)[0], np.stack([decoded.decode(p, (12, 12)) for p, _ in files])
            )
    assert sorted(e.native_size for e in decoded_store.entries(cache)) == [(12, 12), (16, 16)]
    assert data.load(full, decoded_cache=cache).report["decoded_cache"]["hit"]  # neither removed the other


def test_a_changed_folder_drops_its_old_entries_but_never_one_a_run_holds(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    other = get(
        cache,
        files_of(demo.generate(tmp_path / "other", per_class=3, size=12, shapes=("circle", "ring"))),
        folder=str(tmp_path / "other"),
    )
    monkeypatch.setattr(memory, "available_bytes", lambda: 0)  # memory-mapped: the run holds its entry while it trains
    preset = preset_for(folder)
    first = data.load(preset, decoded_cache=cache)
    before = [x for x, _ in first.train_batches(0).take(2).as_numpy_iterator()]
    victim = Path(files_of(folder)[0][0])
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))
    second = data.load(preset, decoded_cache=cache)
    paths = {Path(ds.report["decoded_cache"]["path"]) for ds in (first, second)}
    assert len(paths) == 2 and {e.path for e in decoded_store.entries(cache)} == paths | {other.path}
    after = [x for x, _ in first.train_batches(0).take(2).as_numpy_iterator()]
    np.testing.assert_equal(after, before)  # the first run reads on
    del first, second
    gc.collect()  # both runs ended: their entries are no longer held
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    third = data.load(preset, decoded_cache=cache)
    assert {e.path for e in decoded_store.entries(cache)} == {Path(third.report["decoded_cache"]["path"]), other.path}


def test_an_older_build_finishing_late_keeps_the_entry_of_the_newer_files(folder: Path, tmp_path: Path) -> None:
    """A run that scanned before the folder changed, and finished its build after a run that
    scanned after, removes nothing the folder still matches: the folder is scanned again first."""
    cache = tmp_path / "cache"
    old_files = files_of(folder)
    late = get(cache, old_files, folder=str(folder))
    (folder / "ring").mkdir()
    shutil.copy(old_files[0][0], folder / "ring" / "new.png")
    new = get(cache, files_of(folder), folder=str(folder))
    assert decoded.drop_stale(cache, late, lambda: files_of(folder)) == []
    assert decoded.drop_stale(cache, new, lambda: files_of(folder)) == [late.path]
    assert [e.path for e in decoded_store.entries(cache)] == [new.path]


# ----------------------------------------------------------------- the decoders' processes

#: Loads a folder of PROCESS_POOL_MIN_FILES images (so the decoders are a process pool of 2).
#: Its top level runs again in each decoder (spawn), so the patches below apply there too:
#: a decode that is still under way when its parent dies; optionally no PR_SET_PDEATHSIG.
KILLED_LOADER = """
import os, sys, time
from pathlib import Path
from tltui.worker import decoded

decoded.workers = lambda: 2
if sys.argv[4] == "watchdog":
    decoded._set_pdeathsig = lambda: False  # as where prctl is missing
real = decoded._decode_rows

def under_way(npy, rows, size):
    Path(sys.argv[3], str(os.getpid())).touch()
    deadline = time.monotonic() + 300  # only so that nothing outlives a failing test for long
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return real(npy, rows, size)

decoded._decode_rows = under_way

def main():
    from tltui.core import presets
    from tltui.worker import data
    preset = presets.from_dict({"name": "k", "data": {"source": "folder:" + sys.argv[1], "image_size": [8, 8]},
                                "model": {"backbone": "tiny_cnn", "weights": "none"}})
    data.load(preset, decoded_cache=Path(sys.argv[2]))

if __name__ == "__main__":
    main()
"""

#: The same load without a main guard: each decoder runs it again as it starts.
UNGUARDED_LOADER = """
import sys
from pathlib import Path
from tltui.core import presets
from tltui.worker import data, decoded

decoded.workers = lambda: 2
preset = presets.from_dict({"name": "u", "data": {"source": "folder:" + sys.argv[1], "image_size": [8, 8]},
                            "model": {"backbone": "tiny_cnn", "weights": "none"}})
data.load(preset, decoded_cache=Path(sys.argv[2]))
print("loaded")
"""


@pytest.fixture
def pool_folder(tmp_path: Path) -> Path:
    """Just enough files for the process pool, tiny ones."""
    n = decoded.PROCESS_POOL_MIN_FILES
    return demo.generate(tmp_path / "many", per_class=(n + 1) // 2, size=8, shapes=("circle", "square"))


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaps, as init may leave it, is dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["pdeathsig", "watchdog"])
def test_the_decoders_die_with_a_loader_killed_mid_decode(pool_folder: Path, tmp_path: Path, how: str) -> None:
    from tests.helpers import wait_for

    script, started, log = tmp_path / "loader.py", tmp_path / "started", tmp_path / "loader.log"
    script.write_text(KILLED_LOADER)
    started.mkdir()
    kids: list[int] = []
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(pool_folder), str(tmp_path / "cache"), str(started), how],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: len(list(started.iterdir())) == 2 or proc.poll() is not None, "2 decoders decoding", 240)
        assert proc.poll() is None, log.read_text()[-2000:]
        kids = children(proc.pid)  # the 2 decoders and multiprocessing's resource tracker
        assert {int(p.name) for p in started.iterdir()} < set(kids)
        proc.kill()  # kill -9 mid-decode
        proc.wait()
        wait_for(lambda: not [k for k in kids if alive(k)], "the loader's children to end", 120)
    finally:
        for k in kids:
            if alive(k):
                os.kill(k, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_script_without_a_main_guard_fails_with_one_line_instead_of_hanging(
    pool_folder: Path, tmp_path: Path
) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_LOADER)
    done = subprocess.run(
        [sys.executable, str(script), str(pool_folder), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=300,  # a safety net: it used to wait forever
    )
    assert done.returncode != 0 and "loaded" not in done.stdout
    lines = done.stderr.splitlines()
    guard = 'call it under `if __name__ == "__main__":`'
    assert any(
        line.startswith("tltui.worker.decoded.MainGuardError: ") and guard in line for line in lines
    )  # a decoder
    parent = lines[-1]  # the script's own failure, last
    assert parent.startswith("tltui.worker.decoded.DecodeError: decoding 200 images: an image decoder"), lines[-5:]
    assert f"each decoder runs {script} again" in parent
    assert 'must call tltui.worker.data.load under `if __name__ == "__main__":`' in parent
    assert decoded_store.entries(tmp_path / "cache") == [] and not list((tmp_path / "cache").glob(".tmp-*"))
