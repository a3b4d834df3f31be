"""Snapshots of each screen at 80x24 and 160x48 on the scripted workspace (fixed clock).

Update after reviewing a change on purpose: ``pytest tests/tui/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import pytest

from tests.tui.screen_host import HostApp, screen_text, until
from tests.tui.test_sweep_screen import budgeted_sweep
from tltui.tui.screens.compare import CompareScreen
from tltui.tui.screens.sweep import SweepScreen

SIZES = [(80, 24), (160, 48)]
SWEEP = ["r0002", "r0003", "r0004", "r0005"]


@pytest.fixture
def stable_home(monkeypatch, scripted):
    """The title shows the workspace relative to ~: make ~ the folder that holds it."""
    monkeypatch.setenv("HOME", str(scripted[0].root.parent))


async def _settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    pilot.app.redraw_now()
    await pilot.pause()


def _before(action):
    async def run_before(pilot) -> None:
        await _settle(pilot)
        if action is not None:
            action(pilot.app)
            await pilot.pause()
            await _settle(pilot)

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_screen(snap_compare, make_app, stable_home, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=_before(None))


def test_runs_screen_120x40(snap_compare, make_app, stable_home):
    """The most common width: the footer keeps enter, i, ? and q; the table fits."""
    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=_before(None))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_screen_live(snap_compare, make_app, stable_home, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=_before(lambda app: app.open_run("r0006")))


def test_run_screen_failed(snap_compare, make_app, stable_home):
    assert snap_compare(make_app(), terminal_size=(160, 48), run_before=_before(lambda app: app.open_run("r0007")))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_screen(snap_compare, make_app, stable_home, size):
    assert snap_compare(
        make_app(), terminal_size=size, run_before=_before(lambda app: app.push_screen(CompareScreen(SWEEP)))
    )


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare, make_app, stable_home, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=_before(lambda app: app.action_help()))


def test_sweep_screen(snap_compare, ws, monkeypatch):
    """A budgeted sweep: rungs with their marks, the epochs spent against the full sweep's, the leader."""
    monkeypatch.setattr("tltui.core.workspace.secrets.token_hex", lambda n: "5eed" * n)  # the sweep's id
    ids = budgeted_sweep(ws)
    app = HostApp(lambda: SweepScreen(ids[1], workspace=ws))

    async def shown(pilot) -> None:
        await until(pilot, lambda: "leader: r0001" in screen_text(pilot.app), "the sweep")

    assert snap_compare(app, terminal_size=(120, 24), run_before=shown)
