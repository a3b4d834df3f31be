"""Where a run trains: the devices TensorFlow sees against what the run asks (``train.gpus``), the
distribution strategy, and the precision policy (``train.mixed_precision``).

TensorFlow is imported when these are called, not with this module: :mod:`tltui.worker.train`
imports it before TensorFlow loads, so a stop request during that import is still a clean cancel.
"""

from __future__ import annotations

import os
from typing import Any

from tltui.core import presets
from tltui.worker.errors import TrainError


def setup_devices(preset: presets.Preset) -> tuple[list[str], Any]:
    """Visible devices as names, and the distribution strategy for ``train.gpus``."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
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


def default_strategy() -> Any:
    """TensorFlow's default (single-device) strategy."""
    import tensorflow as tf

    return tf.distribute.get_strategy()


def set_precision(preset: presets.Preset) -> None:
    """The global Keras dtype policy ``train.mixed_precision`` asks for (``true``: ``mixed_float16``)."""
    import keras

    mp = preset.train.mixed_precision
    if mp:
        keras.mixed_precision.set_global_policy("mixed_float16" if mp is True else mp)
