"""The decoded-image cache on disk: where it lives, its entries, their use and eviction.

The worker builds entries (:mod:`tltui.worker.decoded`); ``tltui cache ls|rm`` lists and removes
them. An entry is ``KEY/images.npy`` (uint8 ``[n, h, w, 3]``, read memory-mapped) and
``KEY/meta.json`` (native size, files and labels in row order, the ones that did not decode, its
size); ``meta.json``'s mtime is when it was last used. Numpy and stdlib only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Bumped when decoding changes (a new Pillow path, another resize): old entries stop matching.
DECODE_VERSION = 1
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
    """A complete cache entry: rows of ``images`` (memory-mapped) for the files that decoded."""

    path: Path
    meta: dict[str, Any]
    hit: bool  # read as it was (True) or built now (False)

    @property
    def images(self) -> np.ndarray:
        return np.load(self.path / IMAGES, mmap_mode="r")

    @property
    def native_size(self) -> tuple[int, int]:
        h, w = self.meta["native_size"]
        return int(h), int(w)

    @property
    def bad(self) -> list[tuple[str, str]]:
        return [(p, why) for p, why in self.meta["skipped"]]


def read_entry(path: Path) -> Entry | None:
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("version") != DECODE_VERSION or not (path / IMAGES).is_file():
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


def evict(root: Path, limit_bytes: float, keep: Path | None = None) -> list[Path]:
    """Delete the oldest-used entries until the rest fit in ``limit_bytes`` (never ``keep``)."""
    removed = []
    total = 0
    for e in entries(root):
        total += entry_bytes(e)
        if total > limit_bytes and e.path != keep:
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(e.path)
            total -= entry_bytes(e)
    return removed
