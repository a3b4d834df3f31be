"""Cluster executors (Ray, Slurm): optional, imported only when a run asks for one.

:data:`tltui.runner.executor.EXECUTORS` names them by import path, so ``import tltui``
never imports ``ray`` or ``submitit``; each module imports its engine inside
its functions and says which extra to install when it is missing.

Their settings are tables of ``<ws>/settings.toml``::

    [executor]
    default = "local"            # what `tltui queue add` uses without --executor

    [ray]
    address = "http://127.0.0.1:8265"   # the cluster's job server (dashboard)

    [slurm]
    partition = "gpu"
    time_limit = 240             # minutes
"""

from __future__ import annotations

import logging
import os
from typing import Any

from tltui.core.workspace import Workspace, WorkspaceError
from tltui.core.workspace import settings_table as workspace_settings

log = logging.getLogger("tltui.runner.executors")

KNOWN = ("local", "ray", "slurm")


def settings_table(ws: Workspace, name: str) -> dict[str, Any]:
    """The ``[name]`` table of ``<ws>/settings.toml`` (``{}`` when absent); a broken file is one clear error."""
    return workspace_settings(ws.root, name)


def default_executor(ws: Workspace) -> str:
    """``$TLTUI_EXECUTOR``, else ``[executor] default`` of the settings, else ``local``."""
    name = os.environ.get("TLTUI_EXECUTOR") or settings_table(ws, "executor").get("default") or "local"
    if name not in KNOWN:
        raise WorkspaceError(
            f"{ws.root / 'settings.toml'}: [executor] default = {name!r} is not one of {', '.join(KNOWN)}"
        )
    return str(name)


def missing_extra(engine: str, extra: str, err: ImportError) -> WorkspaceError:
    return WorkspaceError(f"the {engine} executor needs {engine}: pip install 'tltui[{extra}]' ({err})")
