"""What this machine gives a run, and what stands in its way: ``tltui doctor``'s findings as a pure
function of the facts gathered (:class:`Facts`), so they are tested with faked device lists.

The facts come from three places: TensorFlow, asked in a worker subprocess
(``python -m tltui.worker doctor``, :mod:`tltui.worker.doctor`: the build's CUDA and cuDNN versions,
the GPUs it sees with their compute capability); NVML (:mod:`tltui.core.gpus`: the GPUs the driver
sees, their memory, the driver version); and this process (CPU cores, free disk).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tltui.core import accel
from tltui.core.gpus import GpuInfo

_GIB = 1024**3

#: Images per CPU-second of the training input pipeline (tf.data, uint8 through the pipeline, resize
#: and augmentation inside the model's training step), measured with ``time.process_time``: a cached
#: folder at 224 by ``python -m bench.folder`` (docs/benchmarks.md: 13,918-16,521 on 2026-12-07, the
#: lower figure here); TFDS CIFAR at 32x32 in the second ML review, when augmentation still ran in
#: tf.data (a lower bound now).
PIPELINE_IMAGES_PER_CPU_SECOND = {
    "folder at 224": 13_900,
    "CIFAR (32x32)": 19_400,
}
#: Images per second one current data-centre GPU trains ResNet50 at 224 with mixed precision: an
#: order of magnitude from public figures, not measured here (no GPU on the machines tltui is tested on).
GPU_IMAGES_PER_SECOND = 3_000
#: Less free disk than this in the workspace or a cache is a problem (checkpoints, decoded images,
#: prepared datasets and weights take gigabytes).
MIN_FREE_BYTES = 5 * _GIB


@dataclass(frozen=True)
class TfFacts:
    """What the worker's TensorFlow reports (``ok`` False: it did not load; ``error`` says why)."""

    ok: bool
    error: str = ""
    version: str = ""
    cuda_build: bool = False
    cuda_version: str = ""
    cudnn_version: str = ""
    gpus: list[accel.Gpu] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TfFacts:
        gpus = [accel.gpu_from_details(g, f"GPU:{i}") for i, g in enumerate(d.get("gpus") or [])]
        return cls(
            ok=bool(d.get("ok")),
            error=str(d.get("error") or ""),
            version=str(d.get("version") or ""),
            cuda_build=bool(d.get("cuda_build")),
            cuda_version=str(d.get("cuda_version") or ""),
            cudnn_version=str(d.get("cudnn_version") or ""),
            gpus=gpus,
        )


@dataclass(frozen=True)
class Disk:
    label: str  # "workspace", "TFDS data", ...
    path: str
    free: int  # bytes
    total: int


@dataclass(frozen=True)
class Facts:
    tf: TfFacts | None  # None: TensorFlow was not asked (--no-tf)
    nvml: list[GpuInfo]
    driver: str | None
    cpus: int
    disks: list[Disk]
    cuda_visible_devices: str | None = None


@dataclass(frozen=True)
class Finding:
    """A problem (what is wrong and what to do) or a note (what the box gives)."""

    text: str
    problem: bool = False


def _gib(n: float) -> str:
    return f"{n / _GIB:.1f} GiB"


def disks(ws_root: Path, cache: Path) -> list[Disk]:
    """Free space of the workspace, its caches, the TFDS data dir and Keras's weights folder (each file
    system once; a folder that does not exist yet is measured where it will be created)."""
    from tltui.core.preflight import tfds_data_dir

    keras_home = Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser()
    out = []
    seen: set[int] = set()
    for label, path in (
        ("workspace", ws_root),
        ("caches", cache),
        ("TFDS data", tfds_data_dir()),
        ("Keras weights", keras_home),
    ):
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        try:
            dev = existing.stat().st_dev
            usage = shutil.disk_usage(existing)
        except OSError:
            continue
        if dev in seen:  # one line per file system
            continue
        seen.add(dev)
        out.append(Disk(label, str(path), usage.free, usage.total))
    return out


def gather(ws_root: Path, cache: Path, tf: TfFacts | None = None) -> Facts:
    """This machine's facts (``tf``: TensorFlow's answer, or None when it was not asked)."""
    from tltui.core import gpus

    return Facts(
        tf=tf,
        nvml=gpus.discover(),
        driver=gpus.driver_version(),
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        disks=disks(ws_root, cache),
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )


def diagnose(f: Facts) -> list[Finding]:
    """The findings, in the order the user reads them: GPUs, precision and XLA, CPUs, disks."""
    out: list[Finding] = []
    out += _gpus(f)
    out += _cpus(f)
    out += _disks(f)
    return out


def _gpus(f: Facts) -> list[Finding]:
    out: list[Finding] = []
    tf = f.tf
    driver = f"driver {f.driver}" if f.driver else "no NVIDIA driver (NVML not found)"
    if tf is None:
        out.append(Finding(f"TensorFlow: not asked (--no-tf); NVML sees {len(f.nvml)} GPU(s), {driver}"))
    elif not tf.ok:
        out.append(
            Finding(
                f"TensorFlow does not load in the worker: {tf.error}: reinstall it "
                "(pip install 'tltui[gpu]' on a GPU box)",
                problem=True,
            )
        )
    else:
        build = (
            f"CUDA {tf.cuda_version or '?'}, cuDNN {tf.cudnn_version or '?'}" if tf.cuda_build else "a CPU-only build"
        )
        out.append(
            Finding(f"TensorFlow {tf.version} ({build}) sees {len(tf.gpus)} GPU(s); NVML: {len(f.nvml)}, {driver}")
        )
    for g in f.nvml:
        used = f", {_gib(g.mem_used)} in use by others" if g.mem_used > 0.05 * g.mem_total else ""
        out.append(Finding(f"GPU {g.index}: {g.name}, {_gib(g.mem_total)}{used}"))
        if g.mem_total and g.mem_used >= 0.5 * g.mem_total:
            out.append(
                Finding(
                    f"GPU {g.index}: {_gib(g.mem_used)} of {_gib(g.mem_total)} already in use: the runner skips it "
                    "while it is busy ([runner] gpu_busy_memory); wait for it or pick another",
                    problem=True,
                )
            )
    if tf is not None and tf.ok:
        out += _tf_gpus(f, tf)
    if not f.nvml and (tf is None or not tf.gpus):
        out.append(Finding("no GPU: runs train on the CPU (ResNet50 at 224 trains at a few images per second)"))
    return out


def _tf_gpus(f: Facts, tf: TfFacts) -> list[Finding]:
    out: list[Finding] = []
    if f.nvml and not tf.gpus:
        if not tf.cuda_build:
            fix = "TensorFlow is a CPU-only build: pip install 'tltui[gpu]' (tensorflow[and-cuda])"
        elif f.cuda_visible_devices is not None and f.cuda_visible_devices.strip() in ("", "-1"):
            fix = f"CUDA_VISIBLE_DEVICES={f.cuda_visible_devices!r} hides them: unset it"
        else:
            fix = (
                f"its CUDA {tf.cuda_version or '?'} / cuDNN {tf.cudnn_version or '?'} do not load with "
                f"{f'driver {f.driver}' if f.driver else 'this driver'}: update the driver, or reinstall "
                "tensorflow[and-cuda]; the worker's log says which library failed"
            )
        out.append(Finding(f"NVML sees {len(f.nvml)} GPU(s) but TensorFlow none: {fix}", problem=True))
    elif f.nvml and len(tf.gpus) < len(f.nvml) and not f.cuda_visible_devices:
        out.append(
            Finding(
                f"TensorFlow sees {len(tf.gpus)} of the {len(f.nvml)} GPUs NVML sees: check the driver (nvidia-smi)",
                problem=True,
            )
        )
    for i, g in enumerate(tf.gpus):
        precision = accel.choose_precision("auto", [g])
        out.append(
            Finding(
                f"GPU:{i} {g.name}, compute capability {g.cc_text}: mixed precision auto = {precision.value}; "
                "XLA auto = on for a 1-GPU run (if every layer supports it)"
            )
        )
        if g.compute_capability is not None and g.compute_capability < accel.FLOAT16_CC:
            out.append(
                Finding(
                    f"GPU:{i} {g.name} has no tensor cores (compute capability {g.cc_text} < 7.0): runs train in "
                    "float32, several times slower than on a current GPU",
                    problem=True,
                )
            )
    if len(tf.gpus) > 1:
        out.append(
            Finding(
                f"train.gpus = {len(tf.gpus)}: MirroredStrategy, XLA off (Keras turns it off under tf.distribute), "
                f"data.batch_size must be a multiple of {len(tf.gpus)} (it is the global batch)"
            )
        )
    return out


def _cpus(f: Facts) -> list[Finding]:
    gpus = len(f.tf.gpus) if f.tf is not None and f.tf.ok and f.tf.gpus else len(f.nvml)
    if not gpus:
        return [Finding(f"CPU: {f.cpus} core(s) for this process")]
    per = f.cpus / gpus
    out = [Finding(f"CPU: {f.cpus} core(s) for {gpus} GPU(s), {per:.1f} per GPU")]
    for what, rate in PIPELINE_IMAGES_PER_CPU_SECOND.items():
        feed = per * rate
        if feed < GPU_IMAGES_PER_SECOND:
            need = -(-GPU_IMAGES_PER_SECOND // rate)
            out.append(
                Finding(
                    f"{what}: {per:.1f} cores per GPU feed ~{feed:,.0f} img/s ({rate:,} img per CPU-second) where a "
                    f"current GPU trains ResNet50 at ~{GPU_IMAGES_PER_SECOND:,}: the GPU waits; give each GPU "
                    f"{need} core(s) (Slurm cpus_per_task)",
                    problem=True,
                )
            )
    return out


def _disks(f: Facts) -> list[Finding]:
    out: list[Finding] = []
    for d in f.disks:
        if d.free < MIN_FREE_BYTES:
            out.append(
                Finding(
                    f"{d.label} {d.path}: {_gib(d.free)} free of {_gib(d.total)}: checkpoints and caches need room; "
                    "free space (`tltui cache` clears caches) or move it",
                    problem=True,
                )
            )
        else:
            out.append(Finding(f"{d.label} {d.path}: {_gib(d.free)} free"))
    return out


def to_json(f: Facts, findings: Sequence[Finding]) -> dict[str, Any]:
    """``--json``: the facts and the findings (``problems`` and ``notes``, one line each)."""
    tf = f.tf
    return {
        "tensorflow": None
        if tf is None
        else {
            "ok": tf.ok,
            "error": tf.error or None,
            "version": tf.version or None,
            "cuda_build": tf.cuda_build,
            "cuda_version": tf.cuda_version or None,
            "cudnn_version": tf.cudnn_version or None,
            "gpus": [
                {
                    "name": g.name,
                    "compute_capability": g.cc_text,
                    "mixed_precision_auto": accel.choose_precision("auto", [g]).value,
                }
                for g in tf.gpus
            ],
        },
        "nvml": [{"index": g.index, "name": g.name, "mem_total": g.mem_total, "mem_used": g.mem_used} for g in f.nvml],
        "driver": f.driver,
        "cpus": f.cpus,
        "disks": [{"label": d.label, "path": d.path, "free": d.free, "total": d.total} for d in f.disks],
        "problems": [x.text for x in findings if x.problem],
        "notes": [x.text for x in findings if not x.problem],
    }
