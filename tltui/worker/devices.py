"""Where a run trains: the devices TensorFlow sees against what the run asks (``train.gpus``), the
distribution strategy, and the precision policy (``train.mixed_precision``; the rule is
:func:`tltui.core.accel.choose_precision`).

Every GPU gets memory growth before TensorFlow touches it, so several runs (``max_runs_per_gpu``) and
other people's jobs can share a card. ``TLTUI_TEST_CPU_DEVICES=N`` (test-only, :func:`faults.cpu_devices`)
splits the CPU into N logical devices and builds the strategy for ``train.gpus`` over them as over GPUs.

TensorFlow is imported when these are called, not with this module: :mod:`tltui.worker.train`
imports it before TensorFlow loads, so a stop request during that import is still a clean cancel.
"""

from __future__ import annotations

import os
from typing import Any

from tltui.core import accel, presets
from tltui.worker import faults
from tltui.worker.errors import TrainError


def setup_devices(preset: presets.Preset) -> tuple[list[str], Any]:
    """Visible devices as names, and the distribution strategy for ``train.gpus``."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        try:
            tf.config.experimental.set_memory_growth(g, True)
        except (RuntimeError, ValueError):  # already initialised (a second run in one process): as it is
            pass
    cpu_devices = faults.cpu_devices()
    if cpu_devices and not gpus:
        return _logical_cpus(tf, preset, cpu_devices)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    named = [g for g in visible.split(",") if g.strip()] if visible and visible != "-1" else []
    if named and len(gpus) < len(named):
        raise TrainError(
            f"CUDA_VISIBLE_DEVICES={visible} but TensorFlow sees {len(gpus)} GPU(s): check the driver "
            "(nvidia-smi) and install the CUDA build (pip install 'tltui[gpu]')"
        )
    want = preset.train.gpus
    if want is not None and want > len(gpus):
        raise TrainError(f"train.gpus = {want} but TensorFlow sees {len(gpus)} GPU(s)")
    if want == 0 and gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    use = gpus[: want or 1] if gpus else []
    names = [g.name.replace("/physical_device:", "") for g in use] or ["CPU"]
    if len(use) > 1:
        strategy = tf.distribute.MirroredStrategy(devices=[f"/gpu:{i}" for i in range(len(use))])
    else:
        strategy = tf.distribute.get_strategy()
    return names, strategy


def _logical_cpus(tf: Any, preset: presets.Preset, n: int) -> tuple[list[str], Any]:
    """Test-only: the CPU split into ``n`` logical devices standing in for GPUs (the same Keras and
    tf.distribute code as on GPUs; only the all-reduce differs)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) < n:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    want = preset.train.gpus or 1
    if want > n:
        raise TrainError(f"train.gpus = {want} but the test split the CPU into {n} devices")
    if want == 1:
        return ["CPU"], tf.distribute.get_strategy()
    # Reduced on one device, not by CPU collectives: their keys restart with every strategy, so a second
    # strategy in one process (tests run several runs in one) would meet the first one's collectives.
    strategy = tf.distribute.MirroredStrategy(
        [f"/cpu:{i}" for i in range(want)], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    return [f"CPU:{i}" for i in range(want)], strategy


def gpu_descriptions(devices: list[str]) -> list[accel.Gpu]:
    """What TensorFlow says about the GPUs of ``devices`` (names as :func:`setup_devices` returns them)."""
    import tensorflow as tf

    out = []
    for g in tf.config.list_physical_devices("GPU"):
        name = g.name.replace("/physical_device:", "")
        if name in devices:
            try:
                details = tf.config.experimental.get_device_details(g)
            except (RuntimeError, ValueError):
                details = {}
            out.append(accel.gpu_from_details(details, name))
    return out


def default_strategy() -> Any:
    """TensorFlow's default (single-device) strategy."""
    import tensorflow as tf

    return tf.distribute.get_strategy()


def set_precision(preset: presets.Preset, gpus: list[accel.Gpu] | None = None) -> accel.Decision:
    """Set the global Keras dtype policy ``train.mixed_precision`` gives on ``gpus`` (the run's GPUs;
    none: a CPU), float32 included (a second run in one process must not inherit the first's)."""
    import keras

    decision = accel.choose_precision(preset.train.mixed_precision, gpus or [])
    keras.mixed_precision.set_global_policy(decision.value)
    return decision
