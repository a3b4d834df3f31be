"""Small helpers shared by tests that drive the queue runner."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tltui.core import protocol
from tltui.core.protocol import EpochEnd
from tltui.core.status import RunStatus
from tltui.core.workspace import FINAL, Workspace

SWEEP2 = '[sweep]\n"train.seed" = [1, 2]\n'


def wait_for(pred: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.05) -> Any:
    """Poll ``pred`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def write_preset(root: Path, epochs: int = 2, extra: str = "") -> Path:
    """A tiny two-class folder preset (``tiny_cnn``) at ``root/q.toml``; each class folder holds one
    empty ``0.png`` (enough for preflight, which checks names; a real worker could not decode it)."""
    for c in ("cats", "dogs"):
        (root / "data" / c).mkdir(parents=True, exist_ok=True)
        (root / "data" / c / "0.png").touch()
    p = root / "q.toml"
    p.write_text(
        f'name = "q"\n[data]\nsource = "folder:data"\nimage_size = [32, 32]\n'
        f'[model]\nbackbone = "tiny_cnn"\nweights = "none"\n'
        f"[train]\nepochs = {epochs}\ncheckpoint_every = 1\n{extra}"
    )
    return p


def finished(ws: Workspace, *rids: str) -> bool:
    """Every run has reached a final status."""
    return all(ws.get(r).status in FINAL for r in rids)


def sweep_settled(ws: Workspace, ids: list[str]) -> bool:
    """Nothing of the budgeted sweep runs or waits, and every paused run has its final word."""
    recs = [ws.get(r) for r in ids]
    return all(r.status in (RunStatus.COMPLETED, RunStatus.PAUSED) for r in recs) and all(
        (r.reason or "").startswith("stopped early") for r in recs if r.status == RunStatus.PAUSED
    )


def stop_runner_and_workers(ws: Workspace) -> None:
    """After a test: the workspace's queue runner stopped and any worker it left running killed."""
    from tltui.client import queue_ops
    from tltui.runner import supervisor

    queue_ops.stop_runner(ws)
    for r in ws.list_runs(["running"]):
        if supervisor.is_alive(r.pid, r.pid_start):
            os.killpg(r.pid, signal.SIGKILL)


def epochs_in_file(ws: Workspace, rid: str) -> list[int]:
    """The epochs of every ``epoch_end`` in a run's events file, in file order."""
    return [ev.epoch for ev in protocol.read_events(ws.run_paths(rid).events) if isinstance(ev, EpochEnd)]


def script(ws: Workspace, rid: str, **cfg: Any) -> None:
    """Script the fake worker for one run (``RUN_DIR/fake.json``)."""
    (ws.run_paths(rid).dir / "fake.json").write_text(json.dumps(cfg))
