"""Fixtures for the app's tests: a scripted workspace and an app on it with a fixed clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tui import fake_ws
from tltui.core.workspace import Workspace


@pytest.fixture
def scripted(tmp_path: Path):
    """(workspace, role -> run id) with completed, sweep, running, failed and queued runs."""
    ws = Workspace(tmp_path / "scripted")
    ids = fake_ws.build(ws)
    yield ws, ids
    ws.close()


@pytest.fixture
def make_app(scripted) -> Callable[..., object]:
    from tltui.tui.app import TltuiApp

    ws, _ids = scripted

    def make(**kwargs):
        kwargs.setdefault("clock", lambda: fake_ws.NOW)
        return TltuiApp(ws, **kwargs)

    return make
