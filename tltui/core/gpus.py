"""GPU discovery and utilisation sampling through NVML, with a CPU fallback.

Core module: stdlib + ``pynvml`` (nvidia-ml-py), imported lazily. Nothing here
raises because a driver, a library or a device is missing: no NVML means no
GPUs (``[]``), and the scheduler falls back to CPU slots.

Tests (and demos on GPU-less boxes) inject a fake inventory with
``TLTUI_FAKE_GPUS``: a count (``"2"``: two idle 16 GiB GPUs) or a JSON list of
objects with any of ``name``, ``mem_total``, ``mem_used`` (bytes) and ``util``
(percent).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

FAKE_ENV = "TLTUI_FAKE_GPUS"
_GIB = 1024**3


@dataclass(frozen=True)
class GpuInfo:
    """One device as NVML sees it now. ``index`` is the PCI-bus order that
    ``CUDA_VISIBLE_DEVICES`` uses when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``."""

    index: int
    name: str
    uuid: str
    mem_total: int  # bytes
    mem_used: int  # bytes
    util: int  # percent, 0..100

    @property
    def mem_fraction(self) -> float:
        return self.mem_used / self.mem_total if self.mem_total else 0.0


def _fake(raw: str) -> list[GpuInfo]:
    try:
        spec: Any = json.loads(raw)
    except ValueError:
        return []
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = [{} for _ in range(max(0, spec))]
    if not isinstance(spec, list):
        return []
    out = []
    for i, d in enumerate(spec):
        d = d if isinstance(d, dict) else {}
        out.append(
            GpuInfo(
                index=i,
                name=str(d.get("name", "Fake GPU")),
                uuid=str(d.get("uuid", f"GPU-fake-{i}")),
                mem_total=int(d.get("mem_total", 16 * _GIB)),
                mem_used=int(d.get("mem_used", 0)),
                util=int(d.get("util", 0)),
            )
        )
    return out


_lock = threading.Lock()
_nvml_ready: bool | None = None  # None: not tried yet


def _nvml() -> Any | None:
    """The initialised ``pynvml`` module, or ``None`` (no library, no driver)."""
    global _nvml_ready
    with _lock:
        try:
            import pynvml
        except ImportError:
            _nvml_ready = False
            return None
        if _nvml_ready is None:
            try:
                pynvml.nvmlInit()
                _nvml_ready = True
            except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
                _nvml_ready = False
        return pynvml if _nvml_ready else None


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _read_device(nv: Any, i: int) -> GpuInfo | None:
    try:
        h = nv.nvmlDeviceGetHandleByIndex(i)
        mem = nv.nvmlDeviceGetMemoryInfo(h)
        util = 0
        with contextlib.suppress(Exception):  # some boards do not report utilisation
            util = int(nv.nvmlDeviceGetUtilizationRates(h).gpu)
        return GpuInfo(
            index=i,
            name=_text(nv.nvmlDeviceGetName(h)),
            uuid=_text(nv.nvmlDeviceGetUUID(h)),
            mem_total=int(mem.total),
            mem_used=int(mem.used),
            util=util,
        )
    except Exception:  # noqa: BLE001 - a device that vanished or errs is simply not offered
        return None


def discover() -> list[GpuInfo]:
    """All GPUs with their current memory use and utilisation; ``[]`` without NVML."""
    raw = os.environ.get(FAKE_ENV)
    if raw is not None:
        return _fake(raw)
    nv = _nvml()
    if nv is None:
        return []
    try:
        count = int(nv.nvmlDeviceGetCount())
    except Exception:  # noqa: BLE001 - NVML that cannot count its devices offers none
        return []
    return [g for g in (_read_device(nv, i) for i in range(count)) if g is not None]


def driver_version() -> str | None:
    """The NVIDIA driver's version (``"550.54.15"``), ``None`` without NVML (or with a fake inventory)."""
    if os.environ.get(FAKE_ENV) is not None:
        return None
    nv = _nvml()
    if nv is None:
        return None
    try:
        return _text(nv.nvmlSystemGetDriverVersion())
    except Exception:  # noqa: BLE001 - a driver that cannot say is reported as unknown
        return None


def sample() -> dict[int, GpuInfo]:
    """Fresh utilisation and memory per device index (same source as :func:`discover`)."""
    return {g.index: g for g in discover()}


def is_busy(g: GpuInfo, util_threshold: float, mem_threshold: float) -> bool:
    """Another process already uses this GPU heavily (utilisation in percent, memory as a fraction)."""
    return g.util >= util_threshold or g.mem_fraction >= mem_threshold
