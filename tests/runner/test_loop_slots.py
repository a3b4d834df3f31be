"""Slot assignment, runner settings and GPU discovery: pure functions, no processes."""

from __future__ import annotations

import json
import sys
import types

import pytest

from tltui.core import gpus
from tltui.core.gpus import GpuInfo
from tltui.core.settings import RunnerSettings as Settings
from tltui.core.workspace import Workspace
from tltui.runner.loop import free_gpus, load_settings, pick_gpus

GIB = 1024**3


def inv(*specs: tuple[int, int]) -> dict[int, GpuInfo]:
    """GPUs from (util %, GiB used) pairs, 16 GiB each."""
    return {i: GpuInfo(i, "g", f"u{i}", 16 * GIB, used * GIB, util) for i, (util, used) in enumerate(specs)}


def test_pick_least_used_free_gpus() -> None:
    s = Settings()
    assert pick_gpus(1, inv((0, 0), (0, 0)), {}, s, set()) == [0]
    assert pick_gpus(1, inv((0, 0), (0, 0)), {0: 1}, s, set()) == [1]
    assert pick_gpus(2, inv((0, 0), (0, 0)), {0: 1}, s, set()) is None
    assert pick_gpus(2, inv((0, 0), (0, 0)), {}, s, set()) == [0, 1]


def test_gpus_held_for_an_earlier_run_are_not_given_away() -> None:
    assert pick_gpus(1, inv((0, 0), (0, 0)), {0: 1}, Settings(), {1}) is None


def test_busy_gpus_are_skipped_unless_we_share_them_on_purpose() -> None:
    busy = inv((90, 0), (0, 12), (10, 2))
    assert free_gpus(busy, {}, Settings(), set()) == [2]
    # two runs per GPU: a GPU our own run keeps busy is still offered, least-used first
    sharing = Settings(max_runs_per_gpu=2)
    assert free_gpus(busy, {0: 1}, sharing, set()) == [2, 0]
    assert free_gpus(busy, {}, Settings(gpu_busy_util=100, gpu_busy_memory=1.0), set()) == [0, 1, 2]


def test_settings_from_file_and_environment(ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    """The runner never dies of a bad settings.toml: each bad value is one logged line and keeps its
    default (a bad variable: the file's value)."""
    assert load_settings(ws, {}) == Settings()
    ws.settings_file.write_text(
        "[runner]\nidle_timeout = 5\ncpu_slots = 2\ncancel_grace = 10\nmax_runs_per_gpu = 'x'\n[tui]\ntheme = 'dark'\n"
    )
    with caplog.at_level("WARNING", logger="tltui.runner"):
        s = load_settings(ws, {"TLTUI_RUNNER_CPU_SLOTS": "3", "TLTUI_RUNNER_CANCEL_GRACE": "-1"})
    assert (s.idle_timeout, s.cpu_slots, s.max_runs_per_gpu, s.cancel_grace) == (5.0, 3, 1, 10.0)
    assert isinstance(s.cpu_slots, int)
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 3, logged
    assert any(m.startswith(f"{ws.settings_file}:5: runner.max_runs_per_gpu: ") for m in logged)
    assert any(m.startswith("TLTUI_RUNNER_CANCEL_GRACE: runner.cancel_grace: ") for m in logged)
    assert any(m.startswith(f"{ws.settings_file}:6: tui: unknown table") for m in logged)


def test_broken_settings_file_falls_back_to_defaults(ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    ws.settings_file.write_text("[runner\n")
    with caplog.at_level("WARNING", logger="tltui.runner"):
        assert load_settings(ws, {}) == Settings()
    assert "TOML syntax error" in caplog.text and "the runner uses the default" in caplog.text


def test_requested_gpus_reads_the_run_preset(ws: Workspace) -> None:
    recs = ws.create_runs(
        [("a", "[train]\ngpus = 2\n", {}), ("b", "[train]\nepochs = 1\n", {}), ("c", "not toml [", {})],
        preset_name="p",
    )
    assert [ws.requested_gpus(r.id) for r in recs] == [2, None, None]


def test_fake_inventory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gpus.FAKE_ENV, "2")
    found = gpus.discover()
    assert [g.index for g in found] == [0, 1] and all(g.util == 0 and g.mem_total > 0 for g in found)
    monkeypatch.setenv(gpus.FAKE_ENV, json.dumps([{"name": "A100", "util": 70, "mem_used": 8 * GIB}]))
    (g,) = gpus.discover()
    assert (g.name, g.util, g.mem_fraction) == ("A100", 70, 0.5)
    assert gpus.is_busy(g, 50, 0.9) and not gpus.is_busy(g, 80, 0.9)
    monkeypatch.setenv(gpus.FAKE_ENV, "garbage")
    assert gpus.discover() == []


class _FakeNvml(types.ModuleType):
    """Just enough of pynvml: two devices, the second one errs."""

    def __init__(self, fail_init: bool = False) -> None:
        super().__init__("pynvml")
        self.fail_init = fail_init

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        if i == 1:
            raise RuntimeError("GPU is lost")
        return i

    def nvmlDeviceGetMemoryInfo(self, h: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(total=8 * GIB, used=GIB)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(gpu=12)

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return b"Tesla T4"

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return "GPU-1234"


@pytest.mark.parametrize("fail_init", [False, True])
def test_nvml_discovery(monkeypatch: pytest.MonkeyPatch, fail_init: bool) -> None:
    monkeypatch.delenv(gpus.FAKE_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml(fail_init))
    monkeypatch.setattr(gpus, "_nvml_ready", None)
    found = gpus.discover()
    if fail_init:  # no driver / no library: no GPUs, no exception
        assert found == [] and gpus.sample() == {}
    else:  # a device that errs is left out, names are text
        assert found == [GpuInfo(0, "Tesla T4", "GPU-1234", 8 * GIB, GIB, 12)]
