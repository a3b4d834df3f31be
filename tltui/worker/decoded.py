"""The decoded-image cache: a folder's images decoded once, shared by every run that needs them.

A folder of camera JPEGs costs far more to decode than a GPU takes to train on it, and every run
of a sweep would decode it again. So a folder's images (all its files, in the scan's sorted order,
whatever a run's split, seed or limits) are decoded once, in parallel across the host's cores (a
process pool: Pillow is the decoder, for parity with ``tltui predict``, and holds the GIL for part
of its work), at the pipeline's native size, into ``WORKSPACE/cache/decoded/KEY/``:

- ``images.npy``: ``uint8 [n, h, w, 3]``, one row per file, read memory-mapped (a folder larger
  than memory is paged in by the batch, never loaded whole); a run picks its training and
  validation rows from it by index;
- ``meta.json``: the files and their labels in row order, their header sizes, the native size,
  the ones that did not decode (with why), its size and when it was last used. Its presence marks
  the entry complete.

KEY (:func:`fingerprint`) hashes the decode settings and every file's path, label and identity on
disk: a changed, added or removed file makes another entry, and building it removes the folder's
older entries that no run holds (:func:`drop_stale`). An entry is built in a temporary folder and
renamed into place (a killed build leaves no entry, only a temporary folder the next build
removes), under an exclusive ``flock`` on ``cache/decoded/.locks/KEY.lock``: a second run that
needs the same images waits, says so, and then reads them. Entries are evicted oldest-used first
beyond ``[cache] decoded_gb`` of ``settings.toml`` (``DEFAULT_LIMIT_GB`` of
:mod:`tltui.core.decoded_store`), never one a run holds.

The decoders die with the process that started them (even by ``kill -9``), and one that is asked
to load while it starts (a script without a main guard) fails with one line instead of waiting
for the lock its parent holds. Without a workspace (a run folder elsewhere) the cache lives in
``RUN_DIR/decoded``.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from tltui.core import decoded_store as store
from tltui.core import images
from tltui.core.decoded_store import DECODE_VERSION, IMAGES, LOCK_DIR, META, Entry
from tltui.worker.errors import WorkerError

#: Fewer files than this are decoded by threads (a process pool takes about a second to start).
PROCESS_POOL_MIN_FILES = 200
#: Files per process-pool task.
CHUNK = 16
#: How often a decoder without ``PR_SET_PDEATHSIG`` (not Linux) checks that its parent lives.
PARENT_POLL_SECONDS = 1.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
Files = Sequence[tuple[str, int]]  # (path, label)
Size = tuple[int, int]  # (height, width)


class DecodeError(WorkerError):
    """The decoders could not decode a folder (one line: what happened and what to do)."""


class MainGuardError(WorkerError):
    """``data.load`` was called while a decoder process was starting (a script without a main guard)."""


def workers() -> int:
    """Decoders to run in parallel: the host's cores, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def decode(path: str, size: Sequence[int]) -> np.ndarray:
    """One image as ``tltui predict`` decodes it, at ``size`` ([height, width]): uint8 RGB."""
    return np.asarray(images.prepare(path, size), dtype=np.uint8)


def fingerprint(files: Files, size: Sequence[int], at: Size | None = None) -> str:
    """The entry key: the decode settings (``at``: the native size, for an entry decoded at
    another size than its files choose) and every file's path, label, size, modification time,
    change time and inode, in order.

    The change time is what makes an edit that keeps the size and restores the modification time
    (``cp -p``, ``rsync -t``, ``os.utime``) a new entry: the kernel sets it on every write and on
    ``utime`` itself, and nothing can set it back; the inode changes when a file is replaced by
    another. Reading every file's bytes would catch more, but costs a read of the whole folder per
    run. A ``chmod``, ``chown`` or new hard link changes the change time too: the folder is
    decoded again, needlessly but never wrongly."""
    return _key(_identities(files), size, at)


def _identities(files: Files) -> bytes:
    out = []
    for path, label in files:
        try:
            st = os.stat(path)
            out.append(f"\0{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}")
        except OSError:
            out.append(f"\0{path}\0{label}\0missing")  # reported when it is decoded
    return "".join(out).encode()


def _key(identities: bytes, size: Sequence[int], at: Size | None) -> str:
    settings: dict[str, Any] = {"version": DECODE_VERSION, "image_size": [int(v) for v in size]}
    if at is not None:
        settings["native_size"] = [int(v) for v in at]
    h = hashlib.sha256(json.dumps(settings).encode())
    h.update(identities)
    return h.hexdigest()[:24]


@contextlib.contextmanager
def _locked(root: Path, key: str, on_wait: Callable[[], None], stop: Callable[[], bool]) -> Any:
    from tltui.worker.tfds_fetch import exclusive

    with exclusive(root / LOCK_DIR / f"{key}.lock", on_wait, stop):
        yield


def check_not_starting() -> None:
    """Refuse to load inside a decoder process that is starting: the spawn start method runs the
    parent's main script again there, and a script that loads without an
    ``if __name__ == "__main__":`` guard would wait forever on the lock its parent holds.

    (``multiprocessing.parent_process()`` is still ``None`` at that point; ``_inheriting`` is what
    the standard library itself checks to refuse a process started during bootstrapping.)"""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise MainGuardError(
            "tltui.worker.data.load was called while an image decoder process was starting (each one runs the "
            'calling script again): call it under `if __name__ == "__main__":`'
        )


def get(
    root: Path,
    files: Files,
    size: Sequence[int],
    *,
    native: Callable[[list[Size]], Size],
    at: Size | None = None,
    sizes: Sequence[Size | None] | None = None,
    limit_bytes: float,
    source: str = "",
    folder: str = "",
    progress: Any = None,
    on_wait: Callable[[], None] = lambda: None,
    stop: Callable[[], bool] = lambda: False,
) -> Entry:
    """The entry for ``files`` (a folder's files, sorted), read from ``root`` or built there now,
    decoded at ``at``, or (``None``) at the size ``native(sizes)`` chooses from the header sizes
    of the files that have one (asked only when it is built). ``sizes``, the files' header sizes
    in order, spares probing them. ``progress`` (a Reporter) advances per file decoded.

    The entry comes back held: the size cap and :func:`drop_stale` leave it alone until
    ``entry.release()`` (or until it is garbage-collected)."""
    check_not_starting()
    key = fingerprint(files, size, at)
    fd = store.hold(root, key)  # before reading it: nothing removes it from now on
    try:
        entry = _read(root / key, files)
        if entry is None:
            with _locked(root, key, on_wait, stop):
                entry = _read(root / key, files)  # another run built it while this one waited
                if entry is None:
                    if sizes is None:
                        sizes = probe([p for p, _ in files])
                    hw = at or native([s for s in sizes if s is not None])
                    entry = _build(root, key, files, size, at, hw, sizes, source, folder, progress)
            if not entry.hit:
                store.evict(root, limit_bytes, keep=entry.path)
    except BaseException:
        os.close(fd)
        raise
    entry.hold(fd)
    return entry


def _read(path: Path, files: Files) -> Entry | None:
    """The entry at ``path`` if it is complete, of this version and of exactly ``files``."""
    found = store.read_entry(path)
    if found is None or not found.current or found.meta.get("files") != [[p, lab] for p, lab in files]:
        return None
    store.touch(found)
    return found


def probe(paths: Sequence[str]) -> list[Size | None]:
    """Each file's (height, width) from its header (``None``: unreadable), in parallel."""
    with ThreadPoolExecutor(max_workers=workers()) as pool:
        return list(pool.map(images.probe_size, paths))


def drop_stale(root: Path, built: Entry, rescan: Callable[[], Files]) -> list[Path]:
    """After ``built`` was built, remove the entries of its folder that the folder's files, scanned
    again now (``rescan``), no longer match, unless a run holds them. Such an entry is never read
    again (a file's change time and inode cannot be set back); an entry another run built meanwhile
    from the newer files matches, and stays. A folder that cannot be scanned now removes nothing."""
    folder = built.meta.get("folder")
    others = [
        e
        for e in store.entries(root)
        if folder and e.current and e.path != built.path and e.meta.get("folder") == folder
    ]
    if not others:
        return []
    try:
        ids = _identities(rescan())
    except (OSError, WorkerError):
        return []
    removed = []
    for e in others:
        at = e.meta.get("at")
        now = _key(ids, e.meta["image_size"], (int(at[0]), int(at[1])) if at else None)
        if now != e.key and store.remove_unused(e):
            removed.append(e.path)
    return removed


def _build(
    root: Path,
    key: str,
    files: Files,
    size: Sequence[int],
    at: Size | None,
    native: Size,
    sizes: Sequence[Size | None],
    source: str,
    folder: str,
    progress: Any,
) -> Entry:
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
            "folder": folder,
            "image_size": [int(v) for v in size],
            "at": list(at) if at is not None else None,
            "native_size": [h, w],
            "files": [[p, lab] for p, lab in files],
            "sizes": [list(s) if s is not None else None for s in sizes],
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
        # spawn, not fork: the worker has TensorFlow's threads running by now. The decoders are
        # started by this thread (submit), which outlives them (the with block), as
        # PR_SET_PDEATHSIG requires: it fires when the creating thread ends.
        ctx = multiprocessing.get_context("spawn")
        pool: Any = ProcessPoolExecutor(
            max_workers=workers(), mp_context=ctx, initializer=_die_with_parent, initargs=(os.getpid(),)
        )
    else:
        pool = ThreadPoolExecutor(max_workers=workers())
    try:
        with pool:
            futures = [pool.submit(_decode_rows, str(npy), [(i, paths[i]) for i in c], tuple(size)) for c in chunks]
            for c, fut in zip(chunks, futures, strict=True):
                bad.update(fut.result())
                done += len(c)
                if progress is not None:
                    progress.update(done)
    except BrokenProcessPool as e:
        raise DecodeError(_pool_died(n)) from e
    if progress is not None:
        progress.finish()
    return bad


def _pool_died(n: int) -> str:
    msg = f"decoding {n} images: an image decoder process ended abruptly (killed, or out of memory?)"
    script = _script_the_decoders_rerun()
    if script:
        msg += (
            f"; each decoder runs {script} again as it starts, so a script must call tltui.worker.data.load "
            'under `if __name__ == "__main__":`'
        )
    return msg


def _script_the_decoders_rerun() -> str | None:
    """The main script or module a spawned process runs again as it starts (the rule of
    ``multiprocessing.spawn``), or ``None`` (a package's ``__main__``, an interactive session)."""
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        return None if name == "__main__" or name.endswith(".__main__") else name
    path = getattr(main, "__file__", None)
    return str(path) if path else None


def _die_with_parent(parent: int) -> None:
    """Pool initializer: end this decoder when the process that started it dies (``kill -9``, the
    OOM killer). Otherwise it waits for work forever, reparented to init, and keeps the resource
    tracker waiting on it too. On Linux the kernel kills it at once (``PR_SET_PDEATHSIG``);
    elsewhere a thread polls the parent."""
    if not _set_pdeathsig():
        threading.Thread(target=_watch_parent, args=(parent,), name="tltui-watch-parent", daemon=True).start()
    if os.getppid() != parent:  # it died before the above took effect
        os._exit(1)


def _set_pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


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
