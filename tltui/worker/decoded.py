"""The decoded-image cache: a folder's images decoded once, shared by every run that needs them.

A folder of camera JPEGs costs far more to decode than a GPU takes to train on it, and every run
of a sweep would decode it again. So the images a run uses (its training and validation files, in
that order) are decoded once, in parallel across the host's cores (a process pool: Pillow is the
decoder, for parity with ``tltui predict``, and holds the GIL for part of its work), at the
pipeline's native size, into ``WORKSPACE/cache/decoded/KEY/``:

- ``images.npy``: ``uint8 [n, h, w, 3]``, read memory-mapped (a folder larger than memory is
  paged in by the batch, never loaded whole);
- ``meta.json``: the native size, the files and their labels in row order, the ones that did not
  decode (with why), its size and when it was last used. Its presence marks the entry complete.

KEY is a hash of the decode settings and of every file's path, size and modification time: a
changed, added or removed file makes another entry. An entry is built in a temporary folder and
renamed into place (a killed build leaves no entry, only a temporary folder the next build
removes), under an exclusive ``flock`` on ``cache/decoded/.locks/KEY.lock``: a second run that
needs the same images waits, says so, and then reads them. Entries are evicted oldest-used first
beyond ``[cache] decoded_gb`` of ``settings.toml`` (:data:`DEFAULT_LIMIT_GB`).

Without a workspace (a run folder elsewhere) the cache lives in ``RUN_DIR/decoded``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tltui.core import images
from tltui.core.decoded_store import DECODE_VERSION, IMAGES, LOCK_DIR, META, Entry, evict, read_entry, touch

#: Fewer files than this are decoded by threads (a process pool takes about a second to start).
PROCESS_POOL_MIN_FILES = 200
#: Files per process-pool task.
CHUNK = 16
Files = Sequence[tuple[str, int]]  # (path, label)


def workers() -> int:
    """Decoders to run in parallel: the host's cores, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def decode(path: str, size: Sequence[int]) -> np.ndarray:
    """One image as ``tltui predict`` decodes it, at ``size`` ([height, width]): uint8 RGB."""
    return np.asarray(images.prepare(path, size), dtype=np.uint8)


def fingerprint(files: Files, size: Sequence[int]) -> str:
    """The entry key: decode settings and every file's path, size and mtime, in order."""
    h = hashlib.sha256(json.dumps({"version": DECODE_VERSION, "image_size": list(size)}).encode())
    for path, label in files:
        try:
            st = os.stat(path)
            h.update(f"\0{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"\0{path}\0{label}\0missing".encode())  # reported when it is decoded
    return h.hexdigest()[:24]


@contextlib.contextmanager
def _locked(root: Path, key: str, on_wait: Callable[[], None], stop: Callable[[], bool]) -> Any:
    from tltui.worker.tfds_fetch import exclusive

    with exclusive(root / LOCK_DIR / f"{key}.lock", on_wait, stop):
        yield


def get(
    root: Path,
    files: Files,
    size: Sequence[int],
    *,
    native: Callable[[], tuple[int, int]],
    limit_bytes: float,
    source: str = "",
    progress: Any = None,
    on_wait: Callable[[], None] = lambda: None,
    stop: Callable[[], bool] = lambda: False,
) -> Entry:
    """The entry for ``files`` decoded at the native size ``native()`` (asked only when it is built),
    read from ``root`` or built there now. ``progress`` (a Reporter) advances per file decoded."""
    key = fingerprint(files, size)
    path = root / key
    found = read_entry(path)
    if found is not None:
        touch(found)
        return found
    with _locked(root, key, on_wait, stop):
        found = read_entry(path)  # another run built it while this one waited
        if found is not None:
            touch(found)
            return found
        entry = _build(root, key, files, native(), source, progress)
    evict(root, limit_bytes, keep=entry.path)
    return entry


def _build(root: Path, key: str, files: Files, native: tuple[int, int], source: str, progress: Any) -> Entry:
    for stale in root.glob(f".tmp-{key}-*"):  # a build killed half way
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{key}-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        h, w = native
        out = np.lib.format.open_memmap(tmp / IMAGES, mode="w+", dtype=np.uint8, shape=(len(files), h, w, 3))
        del out  # the header is written; the decoders fill the rows
        bad = decode_into(tmp / IMAGES, [p for p, _ in files], native, progress)
        ok = [i for i in range(len(files)) if i not in bad]
        meta = {
            "version": DECODE_VERSION,
            "source": source,
            "native_size": [h, w],
            "files": [[p, lab] for p, lab in files],
            "rows": ok,  # rows of images.npy that hold a decoded image, in file order
            "skipped": [[files[i][0], why] for i, why in sorted(bad.items())],
            "bytes": (tmp / IMAGES).stat().st_size,
            "created": time.time(),
        }
        with open(tmp / IMAGES, "rb+") as f:
            os.fsync(f.fileno())
        (tmp / META).write_text(json.dumps(meta))
        final = root / key
        shutil.rmtree(final, ignore_errors=True)  # an incomplete one (no meta) from an older build
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Entry(final, meta, hit=False)


def decode_into(npy: Path, paths: Sequence[str], size: Sequence[int], progress: Any = None) -> dict[int, str]:
    """Decode ``paths`` into the rows of the ``.npy`` file ``npy`` (already of the right shape), in
    parallel; returns ``{row: reason}`` for the files that did not decode (their rows stay zero)."""
    n = len(paths)
    bad: dict[int, str] = {}
    chunks = [list(range(i, min(n, i + CHUNK))) for i in range(0, n, CHUNK)]
    done = 0
    if n >= PROCESS_POOL_MIN_FILES and workers() > 1:
        # spawn, not fork: the worker has TensorFlow's threads running by now
        ctx = multiprocessing.get_context("spawn")
        pool: Any = ProcessPoolExecutor(max_workers=workers(), mp_context=ctx)
    else:
        pool = ThreadPoolExecutor(max_workers=workers())
    with pool:
        futures = [pool.submit(_decode_rows, str(npy), [(i, paths[i]) for i in c], tuple(size)) for c in chunks]
        for c, fut in zip(chunks, futures, strict=True):
            bad.update(fut.result())
            done += len(c)
            if progress is not None:
                progress.update(done)
    if progress is not None:
        progress.finish()
    return bad


def _decode_rows(npy: str, rows: list[tuple[int, str]], size: tuple[int, int]) -> dict[int, str]:
    """In a pool worker: decode each ``(row, path)`` and write it into the memory-mapped file."""
    out = np.load(npy, mmap_mode="r+")
    bad: dict[int, str] = {}
    try:
        for i, path in rows:
            try:
                out[i] = decode(path, size)
            except images.ImageSkip as e:
                bad[i] = str(e)
        out.flush()
    finally:
        del out
    return bad
