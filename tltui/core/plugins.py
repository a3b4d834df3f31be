"""The entry-point groups through which another installed package extends tltui.

Read from the installed packages' metadata: nothing here imports a plugin, so every process (the
app, the worker, the runner) sees the same names at the same cost. The executor registry
(:mod:`tltui.runner.executor`) loads the executors of :data:`EXECUTOR_GROUP`; the settings
(:mod:`tltui.core.settings`) accept a ``[NAME]`` table for each name there, which that executor
validates with its own model. Stdlib only (cheap to import).
"""

from __future__ import annotations

from importlib import metadata

#: Executors from other packages, in their ``pyproject.toml``:
#: ``[project.entry-points."tltui.executors"]`` ``kube = "tltui_kube:KubeExecutor"``.
EXECUTOR_GROUP = "tltui.executors"


def entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """The group's installed entry points by name (a name declared twice: the first one)."""
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        found.setdefault(ep.name, ep)
    return found
