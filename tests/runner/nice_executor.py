"""A local-style executor from "another package", as CONTRIBUTING's executor recipe builds one.

``NiceExecutor`` runs workers on this machine like ``local``, at a lower CPU priority taken from
its own ``[nice]`` table of ``settings.toml``. It is a :class:`LocalExecutor`, so it keeps
``places_devices = False``: the runner gives its runs this machine's GPUs and CPU slots and counts
them with every other local-style executor's. :func:`install` makes it an installed plugin
(a ``*.dist-info`` with the ``tltui.executors`` entry point, on ``sys.path`` and ``PYTHONPATH``), so
the test process and the detached runner both find it the way they find a real one.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from tltui.core import plugins
from tltui.runner import supervisor
from tltui.runner.executor import EXECUTORS, Job, LocalExecutor, LocalJob

NAME = "nice"


class NiceSettings(BaseModel):
    """``[nice]``: how much lower the workers' CPU priority is than the runner's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    increment: int = Field(10, ge=0, le=19, description="added to the runner's niceness")


class NiceExecutor(LocalExecutor):
    """``local``, under ``nice``."""

    name = NAME
    settings_model = NiceSettings
    settings: NiceSettings

    def submit(self, run_id: str, *, gpus: Sequence[int], resume: bool) -> Job:
        increment = self.settings.increment
        popen = functools.partial(subprocess.Popen, preexec_fn=lambda: os.nice(increment))
        return LocalJob(supervisor.spawn_worker(self.ws, run_id, resume=resume, gpus=list(gpus), popen=popen))


def install(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Install this module as the ``nice`` executor of a package in ``root`` for the test (and the
    runners it starts); the registry forgets it afterwards."""
    dist = root / "tltui_nice-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tltui-nice\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{plugins.EXECUTOR_GROUP}]\n{NAME} = {__name__}:NiceExecutor\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    EXECUTORS.refresh()
    yield
    EXECUTORS.refresh()  # read again when next asked, once monkeypatch has put sys.path back
