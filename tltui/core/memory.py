"""How much memory a run may fill with its decoded images: a share of what the box has free now.

A folder's decoded images (and a TFDS split read into memory) are either copied into the run's own
memory or, when they would take more than :func:`budget` allows, read by the batch from the
memory-mapped decoded cache (which is no slower per epoch, and whose pages the OS shares between
the runs reading one folder and gives back under pressure). The budget is ``[cache]
in_memory_fraction`` of the memory available when the run loads its data: the smaller of what the
OS has available (``psutil``) and what the run's memory cgroup still allows (a Slurm job's
``--mem``, a container's limit). No TensorFlow here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: cgroup limits at or above this are "no limit" (v1 writes 2**63 rounded down to a page).
_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class Budget:
    """Bytes of images a run may hold in memory: ``fraction`` of ``available`` bytes."""

    fraction: float
    available: int

    @property
    def bytes(self) -> int:
        return int(self.fraction * self.available)

    def fits(self, size: int) -> bool:
        return size <= self.bytes

    def why(self, size: int) -> str:
        """One phrase for the run's log: where ``size`` bytes of images go and why."""
        gb = 1e9
        where = "kept in memory" if self.fits(size) else "read memory-mapped from the decoded cache"
        cmp = "within" if self.fits(size) else "more than"
        return (
            f"{size / gb:.2f} GB of images {where} ({cmp} {self.fraction:g} of the {self.available / gb:.1f} GB "
            "available, [cache] in_memory_fraction)"
        )


def budget(fraction: float, available: int | None = None) -> Budget:
    """The budget now (``available``: measured when not given)."""
    return Budget(fraction, available_bytes() if available is None else available)


def budget_for(run_dir: str | os.PathLike[str]) -> Budget:
    """A run's budget: its workspace's ``[cache] in_memory_fraction`` (its default for a run outside a
    workspace). A problem with ``[cache]`` is a ``PresetError``."""
    from tltui.core.hubcache import workspace_root_of_run
    from tltui.core.settings import CacheSettings, Settings

    root = workspace_root_of_run(run_dir)
    if root is None:
        return budget(CacheSettings().in_memory_fraction)
    return budget(Settings.load(root, strict=False).check("cache").cache.in_memory_fraction)


def available_bytes(cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """Memory this process can still take: the OS's available memory, or less when its cgroup's
    limit leaves less (usage counted without the page cache the kernel reclaims first)."""
    import psutil

    free = int(psutil.virtual_memory().available)
    room = cgroup_room(cgroup_root, proc_cgroup)
    return free if room is None else min(free, room)


def cgroup_room(cgroup_root: Path, proc_cgroup: Path) -> int | None:
    """Bytes left under the tightest memory limit of this process's cgroup and its parents (v2:
    ``memory.max``; v1: ``memory.limit_in_bytes``), ``None`` when there is none or it is unreadable."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    rooms: list[int] = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "" and (cgroup_root / "cgroup.controllers").exists():  # v2, unified
            files = ("memory.max", "memory.current", "inactive_file")
            base = cgroup_root
        elif "memory" in controllers.split(","):  # v1
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
            base = cgroup_root / "memory"
        else:
            continue
        rooms += _rooms(base, path.strip("/"), *files)
    return min(rooms) if rooms else None


def _rooms(base: Path, path: str, limit_file: str, usage_file: str, inactive_key: str) -> list[int]:
    """Room under each limit from ``base/path`` up to ``base`` (a namespaced container sees its own
    cgroup as ``base``, so the walk ends there too)."""
    out: list[int] = []
    parts = [p for p in path.split("/") if p]
    for depth in range(len(parts), -1, -1):
        folder = base.joinpath(*parts[:depth])
        limit = _number(folder / limit_file)
        if limit is None or limit >= _UNLIMITED:
            continue
        usage = _number(folder / usage_file) or 0
        inactive = _stat(folder / "memory.stat", inactive_key)
        out.append(max(0, limit - max(0, usage - inactive)))
    return out


def _number(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0
