"""Cluster executors (Ray, Slurm): optional, imported only when a run asks for one.

:data:`tltui.runner.executor.EXECUTORS` names them by import path, so ``import tltui``
never imports ``ray`` or ``submitit``; each module imports its engine inside
its functions and says which extra to install when it is missing.

Their settings are tables of ``<ws>/settings.toml`` (:mod:`tltui.core.settings` has every key)::

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
from typing import TYPE_CHECKING

from tltui.core.workspace import Workspace, WorkspaceError
from tltui.runner.executor import EXECUTORS

if TYPE_CHECKING:  # pydantic: not for ray_relay, which runs on the nodes
    from tltui.core.settings import Settings

log = logging.getLogger("tltui.runner.executors")


def default_executor(ws: Workspace, settings: Settings | None = None) -> str:
    """``$TLTUI_EXECUTOR``, else ``[executor] default`` of the settings, else ``local``; a name
    that is not an executor is a ``PresetError`` naming the variable or the line."""
    from tltui.core.settings import Settings

    settings = settings or Settings.load(ws)
    name = settings.executor.default
    if name not in EXECUTORS:
        raise settings.error("executor.default", f"{name!r} is not one of {', '.join(EXECUTORS)}")
    return name


def missing_extra(engine: str, extra: str, err: ImportError) -> WorkspaceError:
    return WorkspaceError(f"the {engine} executor needs {engine}: pip install 'tltui[{extra}]' ({err})")
