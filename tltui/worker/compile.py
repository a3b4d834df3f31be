"""What a phase trains with: the optimizer and learning-rate schedule (``train.optimizer``,
``learning_rate``, ``lr_schedule``, ``weight_decay``, ``momentum``, ``nesterov``), the loss and the
metrics whose log keys the protocol knows (``loss``, ``acc``, ``top5_acc``), and the one-hot labels
label smoothing needs.

Keras and TensorFlow are imported when these are called, not with this module (see
:mod:`tltui.worker.devices`).
"""

from __future__ import annotations

from typing import Any

from tltui.core import accel, presets
from tltui.core.protocol import TOP5_MIN_CLASSES


def make_optimizer(preset: presets.Preset, steps_per_epoch: int | None, log_fn: Any) -> Any:
    import keras

    t = preset.train
    lr: Any = t.learning_rate
    if t.lr_schedule == "cosine":
        if steps_per_epoch:
            lr = keras.optimizers.schedules.CosineDecay(t.learning_rate, decay_steps=t.epochs * steps_per_epoch)
        else:
            log_fn("warning", 'train.lr_schedule = "cosine" needs a known epoch length; using a constant rate')
    wd = t.weight_decay or None
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=wd)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(lr, weight_decay=wd)
    if t.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=t.weight_decay)
    return keras.optimizers.RMSprop(lr, momentum=t.momentum, weight_decay=wd)


def compile_model(
    model: Any, preset: presets.Preset, num_classes: int, steps_per_epoch: int | None, log_fn: Any
) -> accel.Decision:
    """Loss and metrics whose log keys are exactly loss, acc, top5_acc (and val_ twins); no top5_acc
    with fewer than :data:`TOP5_MIN_CLASSES` classes. ``train.jit_compile = "auto"`` goes to Keras as
    ``"auto"`` (its own rule); returns whether XLA is on, and why."""
    import keras
    import tensorflow as tf

    t = preset.train
    top5 = num_classes >= TOP5_MIN_CLASSES  # with 5 classes or fewer top-5 accuracy is 100% by construction
    if t.label_smoothing > 0:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="acc")]
        if top5:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_acc"))
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="acc")]
        if top5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_acc"))
    # Several replicas: the worker pads partial batches with images weighted 0 (tltui.worker.replicas), which
    # only weighted metrics skip; the names stay "acc" and "top5_acc". Without weights both are the same.
    weighted = model.distribute_strategy.num_replicas_in_sync > 1
    model.compile(
        optimizer=make_optimizer(preset, steps_per_epoch, log_fn),
        loss=loss,
        metrics=None if weighted else metrics,
        weighted_metrics=metrics if weighted else None,
        jit_compile=t.jit_compile,
    )
    return accel.explain_jit(
        t.jit_compile,
        gpus=sum(d.device_type != "CPU" for d in tf.config.list_physical_devices()),
        replicas=model.distribute_strategy.num_replicas_in_sync,
        resolved=bool(model.jit_compile),
    )


def one_hot(ds: Any, num_classes: int) -> Any:
    """``(x, y)`` batches with one-hot ``y`` (for label smoothing); ``None`` stays ``None``."""
    if ds is None:
        return None
    import tensorflow as tf

    return ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
