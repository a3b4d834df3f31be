"""The app under signals and odd terminals: SIGTERM and SIGHUP close it cleanly while a queued run
goes on; a 40x10 terminal and back, NO_COLOR and TERM=dumb degrade it, never kill it.

The signal tests start the real ``tltui`` in a pseudo-terminal (Python's ``pty``, no tmux).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import helpers
from tltui.client import queue_ops
from tltui.core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
LEAVE_ALT_SCREEN = b"\x1b[?1049l"
sys.path.insert(0, str(ROOT))


class Terminal:
    """``python -m tltui`` on a pty of a given size; collects what it draws."""

    def __init__(self, ws_root: Path, env: dict[str, str] | None = None, size: tuple[int, int] = (100, 30)) -> None:
        self.master, slave = pty.openpty()
        self.resize(*size, fd=slave)
        full_env = {**os.environ, "TERM": "xterm-256color", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tltui", "--workspace", str(ws_root)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            env=full_env,
            cwd=ROOT,
        )
        os.close(slave)
        self.out = b""

    def resize(self, cols: int, rows: int, fd: int | None = None) -> None:
        fcntl.ioctl(self.master if fd is None else fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def read(self, seconds: float, until: Callable[[bytes], bool] | None = None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if until is not None and until(self.out):
                return True
            r, _, _ = select.select([self.master], [], [], 0.05)
            if r:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # the app closed its side
                    return until(self.out) if until else False
                if not data:
                    return until(self.out) if until else False
                self.out += data
        return until(self.out) if until else False

    def wait_drawn(self, text: bytes = b"r0001") -> None:
        assert self.read(60, lambda b: text in b), self.out[-2000:]

    def exit_code(self, timeout: float = 20) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the app did not exit") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self.master)


COLOUR = re.compile(rb"\x1b\[[0-9;]*?[34]8;(5;\d+|2;\d+;\d+;\d+)")
CUBE_GREYS = {16 + 43 * i for i in range(6)}  # r = g = b in the 6x6x6 cube: 16, 59, ..., 231


def colours(out: bytes) -> set[bytes]:
    return {m.group(1) for m in COLOUR.finditer(out)}


def grey(c: bytes) -> bool:
    parts = [int(x) for x in c.split(b";")[1:]]
    if c.startswith(b"2;"):
        return parts[0] == parts[1] == parts[2]
    return parts[0] in (0, 7, 8, 15) or parts[0] >= 232 or parts[0] in CUBE_GREYS


def wait_for(pred: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def queued_run(ws: Workspace, tmp_path: Path, fake_worker_env: list[str], monkeypatch: pytest.MonkeyPatch):
    """A workspace whose detached runner trains one fake run for a few seconds."""
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.6")
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "20")
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        (tmp_path / "data" / c / "0.png").touch()  # preflight checks the names only
    preset = tmp_path / "p.toml"
    preset.write_text(
        'name = "sig"\n[data]\nsource = "folder:data"\nimage_size = [32, 32]\n'
        '[model]\nbackbone = "tiny_cnn"\nweights = "none"\n[train]\nepochs = 6\ncheckpoint_every = 0\n'
    )
    (rec,) = queue_ops.add(ws, preset, {})
    yield ws, rec.id
    helpers.stop_runner_and_workers(ws)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=["SIGTERM", "SIGHUP", "SIGKILL"])
def test_a_signal_closes_the_app_and_the_run_goes_on(queued_run, sig: signal.Signals) -> None:
    ws, rid = queued_run
    term = Terminal(ws.root)
    try:
        term.wait_drawn(rid.encode())
        wait_for(lambda: ws.get(rid).status == "running", "the run to start")
        if sig == signal.SIGHUP:
            os.close(term.master)  # the SSH link is gone: nobody reads the terminal any more
            term.master = os.open(os.devnull, os.O_RDONLY)
        term.proc.send_signal(sig)
        rc = term.exit_code()
        if sig == signal.SIGTERM:
            term.read(1)
            assert LEAVE_ALT_SCREEN in term.out, "the terminal was not restored"
            assert b"Traceback" not in term.out
    finally:
        term.close()
    assert rc == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
    wait_for(lambda: ws.get(rid).status != "running", "the run to finish", timeout=60)
    assert ws.get(rid).status == "completed" and ws.get(rid).epoch == 6


@pytest.mark.parametrize(
    "env",
    [{"NO_COLOR": "1"}, {"TERM": "dumb"}, {"TERM": "dumb", "NO_COLOR": "1", "COLORTERM": ""}],
    ids=["NO_COLOR", "TERM=dumb", "both"],
)
def test_colourless_and_dumb_terminals_work(ws: Workspace, env: dict[str, str]) -> None:
    ws.create_runs([("plain", "[train]\nepochs = 1\n", {})], preset_name="plain")
    term = Terminal(ws.root, env=env)
    try:
        term.wait_drawn()
        if env.get("NO_COLOR"):
            assert colours(term.out) and not [c for c in colours(term.out) if not grey(c)], "colours despite NO_COLOR"
        # resize the pty while it runs: tiny, then back
        for cols, rows in ((40, 10), (100, 30)):
            term.resize(cols, rows)
            term.proc.send_signal(signal.SIGWINCH)
            term.read(1.0)
            assert term.proc.poll() is None
        os.write(term.master, b"q")
        rc = term.exit_code()
    finally:
        term.close()
    assert rc == 0 and b"Traceback" not in term.out


def test_resize_to_40x10_and_back_keeps_every_screen_alive(tmp_path: Path) -> None:
    from tests.tui import fake_ws
    from tltui.tui.app import TltuiApp
    from tltui.tui.screens.run import RunScreen

    ws = Workspace(tmp_path / "scripted")
    ids = fake_ws.build(ws)

    async def scenario() -> None:
        app = TltuiApp(ws, clock=lambda: fake_ws.NOW)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            for size in ((40, 10), (100, 30), (20, 5), (40, 10)):
                await pilot.resize_terminal(*size)
                await pilot.pause()
                app.redraw_now()
                await pilot.pause()
            await pilot.press("enter")  # open the run under the cursor, small as it is
            await pilot.pause()
            assert isinstance(app.screen, RunScreen)
            for size in ((40, 10), (100, 30)):
                await pilot.resize_terminal(*size)
                await pilot.pause()
            app.redraw_now()
            await pilot.pause()
            assert app.is_running and app.size == (100, 30)
            await pilot.press("escape")
            await pilot.pause()

    try:
        asyncio.run(scenario())
    finally:
        ws.close()
    assert ids
