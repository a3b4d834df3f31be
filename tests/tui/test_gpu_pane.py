"""The GPU pane: sampled in a thread, history as sparklines, who uses which GPU, CPU fallback."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Footer, Static

from tests.tui.screen_host import asynctest, screen_text
from tltui.core.workspace import Workspace
from tltui.tui.widgets import gpu_pane
from tltui.tui.widgets.gpu_pane import (
    DeviceReading,
    GpuPane,
    HostReading,
    PaneSample,
    sparkline,
    system_sampler,
    workspace_running_gpus,
)

GIB = 1024**3


def two_gpus(step: int) -> PaneSample:
    return PaneSample(
        gpus=(
            DeviceReading(0, "NVIDIA A100-SXM4-40GB", float(10 * step % 100), (8 + step) * GIB, 40 * GIB, ("r0003",)),
            DeviceReading(1, "NVIDIA A100-SXM4-40GB", 0.0, GIB // 2, 40 * GIB, ()),
        ),
        host=HostReading(25.0 + step, 12 * GIB, 64 * GIB),
    )


def cpu_only(step: int) -> PaneSample:
    return PaneSample(host=HostReading(float(15 * step % 100), (3 + step % 4) * GIB, 16 * GIB, ("r0007",)))


class Script:
    """A sampler that returns ``make(step)`` for step 0, 1, 2, ..."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.step = 0

    def __call__(self) -> PaneSample:
        sample = self.make(self.step)
        self.step += 1
        return sample


class PaneApp(App[None]):
    def __init__(self, sampler: Any) -> None:
        super().__init__()
        self.sampler = sampler

    def compose(self) -> ComposeResult:
        yield Static("the screen above the pane", id="above")
        yield GpuPane(self.sampler, interval=None)
        yield Footer()


async def take(pilot: Any, n: int) -> GpuPane:
    """Let the sample taken on mount land, then take ``n`` more."""
    pane = pilot.app.query_one(GpuPane)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    for _ in range(n):
        pane.sample_now()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    return pane


# ---------------------------------------------------------------------------- pure parts


def test_sparkline_is_right_aligned_and_clamped() -> None:
    assert sparkline([0.0, 0.5, 1.0], 5) == "  ▁▅█"
    assert sparkline([2.0, -1.0], 2) == "█▁"
    assert sparkline([0.1] * 10, 3) == "▁▁▁"
    assert sparkline([], 0) == ""


def test_system_sampler_reads_fake_gpus_and_owners(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLTUI_FAKE_GPUS", '[{"util": 55, "mem_used": 4294967296}, {}]')
    sample = system_sampler(lambda: {"r0002": [1], "r0001": [0, 1], "r0005": None})()
    assert [g.index for g in sample.gpus] == [0, 1]
    assert sample.gpus[0].util == 55.0 and sample.gpus[0].mem_used == 4 * GIB
    assert sample.gpus[0].runs == ("r0001",) and sample.gpus[1].runs == ("r0001", "r0002")
    assert sample.host is not None and sample.host.runs == ("r0005",) and sample.host.ram_total > 0


def test_system_sampler_survives_nvml_and_registry_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from tltui.core import gpus

    def vanished() -> dict[int, Any]:
        raise RuntimeError("NVML: GPU is lost")

    def busy() -> dict[str, list[int] | None]:
        raise OSError("database is locked")

    monkeypatch.setattr(gpus, "sample", vanished)
    sample = system_sampler(busy)()
    assert sample.gpus == () and sample.host is not None


def test_workspace_running_gpus_lists_running_runs(ws: Workspace) -> None:
    a, b = ws.create_runs([("a", 'name = "a"\n', {}), ("b", 'name = "b"\n', {})], preset_name="a")
    ws.update(a.id, status="running", gpus=[0])
    assert workspace_running_gpus(ws)() == {a.id: [0]}
    (c,) = ws.create_runs([("c", 'name = "c"\n', {})], preset_name="c", executor="slurm")
    ws.update(c.id, status="running", gpus=[], host="node7")  # on the cluster: not this machine's CPU or GPUs
    ws.update(b.id, status="running", gpus=[])
    assert workspace_running_gpus(ws)() == {a.id: [0], b.id: []}


# ---------------------------------------------------------------------------- the widget


@asynctest
async def test_gpu_lines_show_utilisation_memory_history_and_runs() -> None:
    app = PaneApp(Script(two_gpus))
    async with app.run_test(size=(100, 24)) as pilot:
        pane = await take(pilot, 3)  # steps 0..3
        text = screen_text(app)
        assert "GPUs (2)" in text
        gpu0 = next(line for line in text.splitlines() if "GPU0" in line)
        assert "30%" in gpu0 and "11.0/40.0G" in gpu0 and "r0003" in gpu0
        assert "▁▁▂▃" in gpu0  # utilisation history 0, 10, 20, 30 %
        gpu1 = next(line for line in text.splitlines() if "GPU1" in line)
        assert "idle" in gpu1
        assert "CPU" in text and "RAM" in text
        assert pane.last_sample is not None and len(pane.last_sample.gpus) == 2


@asynctest
async def test_cpu_and_ram_without_gpus() -> None:
    app = PaneApp(Script(cpu_only))
    async with app.run_test(size=(80, 24)) as pilot:
        await take(pilot, 2)  # steps 0..2
        text = screen_text(app)
        assert "CPU (no GPU)" in text
        cpu = next(line for line in text.splitlines() if "CPU " in line and "RAM" in line)
        assert "30%" in cpu and "5.0/16.0G" in cpu and "r0007" in cpu


@asynctest
async def test_a_failing_sampler_is_a_line_not_a_crash() -> None:
    def broken() -> PaneSample:
        raise RuntimeError("NVML driver/library version mismatch")

    app = PaneApp(broken)
    async with app.run_test(size=(80, 24)) as pilot:
        await take(pilot, 2)
        assert "sampler: NVML driver/library version mismatch" in screen_text(app)


@asynctest
async def test_slow_sampler_never_piles_up() -> None:
    release = threading.Event()
    calls: list[int] = []

    def slow() -> PaneSample:
        calls.append(1)
        release.wait(10)
        return cpu_only(1)

    app = PaneApp(slow)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(GpuPane)
        await pilot.pause()
        for _ in range(5):  # timer ticks while the first sample is still running
            pane.sample_now()
        release.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert len(calls) == 1
        assert pane.last_sample is not None


@asynctest
async def test_timer_samples_by_itself() -> None:
    script = Script(cpu_only)

    class TimedApp(App[None]):
        def compose(self) -> ComposeResult:
            yield GpuPane(script, interval=0.05)

    app = TimedApp()
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(500):
            await pilot.pause(0.02)
            if script.step >= 3:
                break
        assert script.step >= 3


@asynctest
async def test_mounting_and_removing_the_pane(ws: Workspace) -> None:
    """What the app's `g` does: mount a default pane (the app's workspace names the runs), remove it again."""
    app = App[None]()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.screen.mount(GpuPane(workspace=ws, interval=None))
        await app.workers.wait_for_complete()
        await pilot.pause()
        pane = app.query_one(GpuPane)
        assert pane.last_sample is not None and pane.last_sample.host is not None
        await pane.remove()
        await pilot.pause()
        assert not app.query(GpuPane)


@asynctest
async def test_the_machines_problems_are_one_line_that_names_doctor(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default pane asks `tltui doctor --no-tf`'s checks once; a problem shows as one line."""
    from tltui.core import doctor

    monkeypatch.setenv("TLTUI_FAKE_GPUS", "8")
    monkeypatch.setattr(doctor.os, "sched_getaffinity", lambda _pid: {0}, raising=False)  # 1 core for 8 GPUs
    asked: list[int] = []
    real = gpu_pane.machine_problems

    def counting(w: Workspace) -> tuple[str, ...]:
        asked.append(1)
        return real(w)

    monkeypatch.setattr(gpu_pane, "machine_problems", counting)
    app = App[None]()
    async with app.run_test(size=(160, 24)) as pilot:
        await app.screen.mount(GpuPane(workspace=ws, interval=None))
        await app.workers.wait_for_complete()
        await pilot.pause()
        pane = app.query_one(GpuPane)
        pane.sample_now()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert pane.last_sample is not None
        (first, *_rest) = pane.last_sample.problems
        assert first.startswith("folder at 224: 0.1 cores per GPU feed")
        assert "⚠ folder at 224: 0.1 cores per GPU" in str(pane.render()) and "tltui doctor" in str(pane.render())
        assert asked == [1]  # once, not per sample


# ---------------------------------------------------------------------------- snapshots


def _settled(n: int) -> Any:
    async def run(pilot: Any) -> None:
        await take(pilot, n)

    return run


def test_snapshot_gpus_80x24(snap_compare: Any) -> None:
    assert snap_compare(PaneApp(Script(two_gpus)), terminal_size=(80, 24), run_before=_settled(12))


def test_snapshot_gpus_160x48(snap_compare: Any) -> None:
    assert snap_compare(PaneApp(Script(two_gpus)), terminal_size=(160, 48), run_before=_settled(30))


def test_snapshot_cpu_only_80x24(snap_compare: Any) -> None:
    assert snap_compare(PaneApp(Script(cpu_only)), terminal_size=(80, 24), run_before=_settled(8))
