"""The app against the real queue operations, runner and the scripted fake worker (no TF)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from PIL import Image

from tltui.client import queue_ops
from tltui.tui.app import TltuiApp
from tltui.tui.widgets.metric_chart import MetricChart

PRESET = """\
name = "tiny"

[data]
source = "folder:imgs"
image_size = [32, 32]
batch_size = 2

[model]
backbone = "tiny_cnn"
weights = "none"

[train]
epochs = 3
"""


def _preset(tmp_path: Path) -> Path:
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "imgs" / cls / f"{i}.png")
    path = tmp_path / "tiny.toml"
    path.write_text(PRESET)
    return path


def test_queue_from_the_app_then_watch_it_finish(ws, tmp_path, fake_worker_env):
    preset = _preset(tmp_path)

    async def scenario() -> None:
        app = TltuiApp(ws, background=False)
        async with app.run_test(size=(100, 30)) as pilot:
            app.queue(preset)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                await pilot.pause(0.2)
                app.refresh_now()
                rec = app.store.record("r0001")
                if rec is not None and rec.status == "completed":
                    break
            assert app.store.record("r0001").status == "completed"
            snap = app.store.snapshot("r0001")
            assert [h["epoch"] for h in snap.history] == [1, 2, 3]
            app.open_run("r0001")
            # The run screen draws on its own refresh; wait for it (a loaded machine may take a while).
            deadline = time.monotonic() + 30
            xs: tuple[float, ...] = ()
            while time.monotonic() < deadline:
                await pilot.pause(0.1)
                app.refresh_now()
                charts = app.screen.query("#chart-loss").results(MetricChart)
                chart = next(iter(charts), None)
                xs = chart.series[0].xs if chart is not None and chart.series else ()
                if xs == (1.0, 2.0, 3.0):
                    break
            assert xs == (1.0, 2.0, 3.0)

    try:
        asyncio.run(scenario())
    finally:
        queue_ops.stop_runner(ws)
