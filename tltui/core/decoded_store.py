"""The decoded-image cache on disk: where it lives, its entries, their use and eviction.

The worker builds entries (:mod:`tltui.worker.decoded`); ``tltui cache ls|rm`` lists and removes
them. An entry is ``KEY/images.npy`` (uint8 ``[n, h, w, 3]``, read memory-mapped) and
``KEY/meta.json`` (the folder's files and labels in row order, their sizes, the native size, the
files that did not decode, its size); ``meta.json``'s mtime is when it was last used.

A run that reads an entry holds a shared ``flock`` on ``.locks/KEY.use`` while it opens it (and,
for a memory-mapped split, as long as the split lives); the size cap and the removal of a changed
folder's entries take that lock exclusively, without waiting, so they skip an entry in use. Numpy
and stdlib only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Bumped when decoding or an entry's layout changes: older entries are never read again (their
#: keys differ too); they are listed, and evicted like any other. 2: rows are the folder's files.
DECODE_VERSION = 2
#: The size beyond which the oldest-used entries are deleted (``[cache] decoded_gb``).
DEFAULT_LIMIT_GB = 20.0
LOCK_DIR = ".locks"
IMAGES, META = "images.npy", "meta.json"


def cache_for(run_dir: str | os.PathLike[str]) -> tuple[Path, float]:
    """Where a run's decoded images are cached and the cache's size limit in bytes: the workspace's
    ``cache/decoded`` (``[cache] decoded_gb`` of its settings) for a run in a workspace, else
    ``RUN_DIR/decoded``."""
    from tltui.core.hubcache import workspace_root_of_run

    root = workspace_root_of_run(run_dir)
    if root is None:
        return Path(run_dir) / "decoded", DEFAULT_LIMIT_GB * 1e9
    return workspace_cache(root)


def workspace_cache(root: str | os.PathLike[str]) -> tuple[Path, float]:
    """A workspace's decoded-image cache folder and its size limit in bytes (``[cache] decoded_gb``).

    A problem with ``[cache]`` (or with the file as a whole) is a ``PresetError``; one elsewhere in
    the settings is not this caller's business (the worker reads this, long after ``queue add``)."""
    from tltui.core.settings import Settings

    root = Path(root)
    gb = Settings.load(root, strict=False).check("cache").cache.decoded_gb
    return root / "cache" / "decoded", gb * 1e9


@dataclass
class Entry:
    """A complete cache entry: rows of ``images`` (memory-mapped), one per file of ``meta["files"]``;
    the rows in ``meta["rows"]`` hold a decoded image. An entry returned by the worker's ``get``
    holds its use lock until :meth:`release` (or until it is garbage-collected)."""

    path: Path
    meta: dict[str, Any]
    hit: bool  # read as it was (True) or built now (False)
    _release: Any = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def current(self) -> bool:
        """Written in this version's layout (only those are read)."""
        return self.meta.get("version") == DECODE_VERSION

    @property
    def images(self) -> np.ndarray:
        return np.load(self.path / IMAGES, mmap_mode="r")

    @property
    def native_size(self) -> tuple[int, int]:
        h, w = self.meta["native_size"]
        return int(h), int(w)

    @property
    def sizes(self) -> list[tuple[int, int] | None]:
        """Each file's (height, width) as its header says (``None``: unreadable), in row order."""
        return [(int(s[0]), int(s[1])) if s else None for s in self.meta["sizes"]]

    @property
    def bad(self) -> list[tuple[str, str]]:
        return [(p, why) for p, why in self.meta["skipped"]]

    def hold(self, fd: int) -> None:
        """Keep ``fd`` (a shared lock on the entry's use lock) open while this entry is used."""
        self._release = weakref.finalize(self, os.close, fd)

    def release(self) -> None:
        """No longer used by this process: the size cap may remove it."""
        if self._release is not None:
            self._release()


def use_lock(root: Path, key: str) -> Path:
    return root / LOCK_DIR / f"{key}.use"


def hold(root: Path, key: str) -> int:
    """A shared lock on ``key``'s use lock (waits only while a removal is under way): the entry is
    not removed while the returned fd is open."""
    path = use_lock(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_entry(path: Path) -> Entry | None:
    """The complete entry at ``path`` (of any version: see :attr:`Entry.current`), or ``None``."""
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not (path / IMAGES).is_file():
        return None
    return Entry(path, meta, hit=True)


def touch(entry: Entry) -> None:
    """Mark an entry used now (eviction is oldest-used first)."""
    with contextlib.suppress(OSError):
        os.utime(entry.path / META)


def entries(root: Path) -> list[Entry]:
    """Every complete entry under ``root``, most recently used first."""
    out = []
    with contextlib.suppress(OSError):
        for p in root.iterdir():
            if p.is_dir() and not p.name.startswith("."):
                e = read_entry(p)
                if e is not None:
                    out.append(e)
    return sorted(out, key=lambda e: last_used(e), reverse=True)


def last_used(entry: Entry) -> float:
    try:
        return (entry.path / META).stat().st_mtime
    except OSError:
        return 0.0


def entry_bytes(entry: Entry) -> int:
    return int(entry.meta.get("bytes", 0))


def remove_unused(entry: Entry) -> bool:
    """Delete ``entry`` unless a run holds it (then ``False``): under its use lock, taken exclusively
    without waiting, so a run that is opening it never finds it half deleted."""
    path = use_lock(entry.path.parent, entry.key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        shutil.rmtree(entry.path, ignore_errors=True)
        return True
    finally:
        os.close(fd)


def evict(root: Path, limit_bytes: float, keep: Path | None = None) -> list[Path]:
    """Delete the oldest-used entries until the rest fit in ``limit_bytes`` (never ``keep``, nor an
    entry a run holds: the cache may then stay above the limit until those runs end)."""
    removed = []
    total = 0
    for e in entries(root):
        total += entry_bytes(e)
        if total > limit_bytes and e.path != keep and remove_unused(e):
            removed.append(e.path)
            total -= entry_bytes(e)
    return removed
