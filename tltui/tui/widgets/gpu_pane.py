"""The GPU pane: utilisation and memory per GPU with a short history, and who uses it.

A sampler (injected; by default NVML through :mod:`tltui.core.gpus`, the registry for
which run holds which GPU, and ``psutil`` for CPU and RAM) runs in a thread once
a second and hands an immutable :class:`PaneSample` to the UI. A sampler that
fails yields an empty reading; the pane never raises because a GPU vanished.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.text import Text
from textual import work
from textual.message import Message
from textual.widget import Widget

from tltui.core.status import RunStatus
from tltui.core.workspace import Workspace

HISTORY = 60
SPARKS = "▁▂▃▄▅▆▇█"
_GIB = 1024**3


@dataclass(frozen=True)
class DeviceReading:
    """One GPU at one instant. ``util`` is percent (``None``: not reported)."""

    index: int
    name: str
    util: float | None
    mem_used: int
    mem_total: int
    runs: tuple[str, ...] = ()

    @property
    def mem_fraction(self) -> float:
        return self.mem_used / self.mem_total if self.mem_total else 0.0


@dataclass(frozen=True)
class HostReading:
    cpu_percent: float
    ram_used: int
    ram_total: int
    runs: tuple[str, ...] = ()  # runs training on the CPU

    @property
    def ram_fraction(self) -> float:
        return self.ram_used / self.ram_total if self.ram_total else 0.0


@dataclass(frozen=True)
class PaneSample:
    gpus: tuple[DeviceReading, ...] = ()
    host: HostReading | None = None
    error: str | None = None
    problems: tuple[str, ...] = ()  # what `tltui doctor --no-tf` finds wrong with this machine


Sampler = Callable[[], PaneSample]


def machine_problems(ws: Workspace) -> tuple[str, ...]:
    """``tltui doctor --no-tf``'s problems for this machine (NVML, driver, CPUs per GPU, free disk)."""
    from tltui.core import doctor

    try:
        findings = doctor.diagnose(doctor.gather(ws.root, ws.cache_dir))
    except Exception:  # noqa: BLE001 - the pane's summary line never takes the pane down
        return ()
    return tuple(f.text for f in findings if f.problem)


def system_sampler(
    running_gpus: Callable[[], dict[str, list[int] | None]] | None = None,
    problems: Callable[[], tuple[str, ...]] | None = None,
) -> Sampler:
    """The real sampler: NVML GPUs, psutil CPU/RAM, ``running_gpus()`` -> ``{run_id: gpus}`` and
    ``problems()``, the machine's problems, asked once (on the first sample)."""
    import psutil

    psutil.cpu_percent(interval=None)  # prime: the first call always returns 0.0
    found: list[tuple[str, ...]] = []

    def sample() -> PaneSample:
        owners: dict[str, list[int] | None] = {}
        if running_gpus is not None:
            try:
                owners = running_gpus()
            except Exception:  # noqa: BLE001 - a busy or missing registry only hides the "used by" column
                owners = {}
        by_gpu: dict[int, list[str]] = {}
        on_cpu: list[str] = []
        for run_id, gpus in sorted(owners.items()):
            if gpus:
                for g in gpus:
                    by_gpu.setdefault(g, []).append(run_id)
            else:
                on_cpu.append(run_id)
        try:
            from tltui.core import gpus as gpu_api

            infos = sorted(gpu_api.sample().values(), key=lambda g: g.index)
        except Exception:  # noqa: BLE001 - NVML errors and vanished devices: no GPU readings this tick
            infos = []
        devices = tuple(
            DeviceReading(g.index, g.name, float(g.util), g.mem_used, g.mem_total, tuple(by_gpu.get(g.index, ())))
            for g in infos
        )
        try:
            vm = psutil.virtual_memory()
            host = HostReading(psutil.cpu_percent(interval=None), vm.total - vm.available, vm.total, tuple(on_cpu))
        except Exception:  # noqa: BLE001 - psutil on an odd host: no host reading this tick
            host = None
        if not found:
            found.append(problems() if problems is not None else ())
        return PaneSample(devices, host, problems=found[0])

    return sample


def workspace_running_gpus(ws: Workspace) -> Callable[[], dict[str, list[int] | None]]:
    """``{run_id: gpus}`` of the running runs of workspace ``ws`` on this machine (for :func:`system_sampler`);
    a cluster's runs (Slurm, Ray: their executor places them) use none of this machine's devices."""
    from tltui.client.queue_ops import places_devices

    def read() -> dict[str, list[int] | None]:
        return {r.id: r.gpus for r in ws.list_runs([RunStatus.RUNNING]) if not places_devices(r.executor)}

    return read


def sparkline(values: Sequence[float], width: int) -> str:
    """Fractions 0..1 as block characters, the newest on the right, padded to ``width``."""
    if width <= 0:
        return ""
    tail = list(values)[-width:]
    chars = "".join(SPARKS[min(len(SPARKS) - 1, max(0, int(v * len(SPARKS))))] for v in tail)
    return chars.rjust(width)


def _gib(n: int) -> str:
    return f"{n / _GIB:.1f}"


def _level_style(fraction: float) -> str:
    return "red" if fraction >= 0.9 else "yellow" if fraction >= 0.6 else "green"


@dataclass
class _History:
    util: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    mem: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))


class GpuPane(Widget):
    """Per-GPU utilisation/memory sparklines, or CPU/RAM without GPUs.

    Without a ``sampler``, it samples the system; with a ``workspace``, it names the runs of that
    workspace that use each device. ``interval=None`` disables the timer (tests call :meth:`sample_now`).
    """

    DEFAULT_CSS = """
    GpuPane {
        height: auto;
        max-height: 12;
        border-top: solid $primary 50%;
        border-title-color: $text-muted;
        padding: 0 1;
    }
    """

    class Sampled(Message):
        def __init__(self, sample: PaneSample) -> None:
            self.sample = sample
            super().__init__()

    def __init__(
        self,
        sampler: Sampler | None = None,
        *,
        workspace: Workspace | None = None,
        interval: float | None = 1.0,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._sampler = sampler
        self._workspace = workspace
        self._interval = interval
        self._history: dict[str, _History] = {}
        self._last: PaneSample | None = None
        self._in_flight = False
        self._own_ws: Workspace | None = None
        self.border_title = "GPUs"

    @property
    def last_sample(self) -> PaneSample | None:
        return self._last

    def on_mount(self) -> None:
        if self._sampler is None:
            ws = self._workspace
            self._sampler = system_sampler(
                self._default_running_gpus(), (lambda: machine_problems(ws)) if ws is not None else None
            )
        self.sample_now()
        if self._interval:
            self.set_interval(self._interval, self.sample_now)

    def on_unmount(self) -> None:
        if self._own_ws is not None:
            self._own_ws.close()

    def _default_running_gpus(self) -> Callable[[], dict[str, list[int] | None]] | None:
        if self._workspace is None:
            return None
        # the sampler thread reads the registry on its own connection
        self._own_ws = Workspace(self._workspace.root, create=False)
        return workspace_running_gpus(self._own_ws)

    def sample_now(self) -> None:
        """Take one sample in a thread; skipped while the previous one is still running."""
        if self._in_flight:
            return
        self._in_flight = True
        self._sample()

    @work(thread=True, group="gpu-pane", exit_on_error=False)
    def _sample(self) -> None:
        assert self._sampler is not None
        try:
            sample = self._sampler()
        except Exception as e:  # noqa: BLE001 - a sampler must never take the UI down
            sample = PaneSample(error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        self.post_message(self.Sampled(sample))

    def on_gpu_pane_sampled(self, message: Sampled) -> None:
        message.stop()
        self._in_flight = False
        sample = message.sample
        self._last = sample
        for g in sample.gpus:
            h = self._history.setdefault(f"gpu{g.index}", _History())
            h.util.append((g.util or 0.0) / 100)
            h.mem.append(g.mem_fraction)
        if sample.host is not None:
            h = self._history.setdefault("host", _History())
            h.util.append(sample.host.cpu_percent / 100)
            h.mem.append(sample.host.ram_fraction)
        self.border_title = f"GPUs ({len(sample.gpus)})" if sample.gpus else "CPU (no GPU)"
        self.refresh(layout=True)

    def render(self) -> Text:
        sample = self._last
        if sample is None:
            return Text("sampling…", style="dim")
        width = max(20, self.content_size.width or 78)
        lines: list[Text] = []
        for g in sample.gpus:
            lines.append(self._gpu_line(g, width))
        if sample.host is not None:
            lines.append(self._host_line(sample.host, width, has_gpus=bool(sample.gpus)))
        if sample.error:
            lines.append(Text(f"sampler: {sample.error}", style="dim red"))
        if sample.problems:
            more = f" (+{len(sample.problems) - 1} more)" if len(sample.problems) > 1 else ""
            lines.append(
                Text(f"⚠ {sample.problems[0]}{more}: tltui doctor", style="yellow", no_wrap=True, overflow="ellipsis")
            )
        if not lines:
            lines.append(Text("no readings", style="dim"))
        return Text("\n").join(lines)

    @staticmethod
    def _line(parts: list[tuple[str, str] | tuple[Sequence[float], str]], width: int) -> Text:
        """Join text parts and sparklines (given as value lists); sparklines share the room left."""
        fixed = sum(len(p) for p, _ in parts if isinstance(p, str))
        sparks = sum(1 for p, _ in parts if not isinstance(p, str))
        sw = max(4, min(HISTORY // 2, (width - fixed) // max(1, sparks)))
        t = Text(no_wrap=True, overflow="ellipsis")
        for p, style in parts:
            t.append(p if isinstance(p, str) else sparkline(p, sw), style=style)
        return t

    def _gpu_line(self, g: DeviceReading, width: int) -> Text:
        h = self._history.get(f"gpu{g.index}", _History())
        util = "  n/a" if g.util is None else f"{g.util:4.0f}%"
        user = ",".join(g.runs) if g.runs else "idle"
        return self._line(
            [
                (f"GPU{g.index} ", "bold"),
                (f"{g.name.removeprefix('NVIDIA ')[:16]:<16} ", "dim"),
                (list(h.util), _level_style((g.util or 0) / 100)),
                (f"{util}  mem ", ""),
                (list(h.mem), _level_style(g.mem_fraction)),
                (f" {_gib(g.mem_used)}/{_gib(g.mem_total)}G".ljust(13) + "  ", ""),
                (user.ljust(12), "bold cyan" if g.runs else "dim"),
            ],
            width,
        )

    def _host_line(self, host: HostReading, width: int, *, has_gpus: bool) -> Text:
        h = self._history.get("host", _History())
        user = ",".join(host.runs) if host.runs else ("" if has_gpus else "idle")
        return self._line(
            [
                ("CPU  ", "bold"),
                (f"{'':<16} ", ""),
                (list(h.util), _level_style(host.cpu_percent / 100)),
                (f"{host.cpu_percent:4.0f}%  RAM ", ""),
                (list(h.mem), _level_style(host.ram_fraction)),
                (f" {_gib(host.ram_used)}/{_gib(host.ram_total)}G".ljust(13) + "  ", ""),
                (user.ljust(12), "bold cyan" if host.runs else "dim"),
            ],
            width,
        )
