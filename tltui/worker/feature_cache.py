"""Frozen-backbone feature cache: run the backbone once, train the head on its features.

When nothing before the head can change during training -- every backbone weight
frozen, every BatchNormalization in inference mode, no stochastic layer (Dropout,
noise, stochastic depth) inside the backbone, no random augmentation in the input
pipeline -- each image maps to the same pooled feature vector at every epoch. Then
(``train.feature_cache = "auto"``, the default) the worker computes the features of
the training and validation sets once, in inference mode, and fits only the head
(the layers after ``avg_pool``: optional Dropout, Dense, softmax) on them. The head
model *shares* its layers with the full classifier, so the full model -- what the
checkpoints and ``model.keras`` hold -- has the trained head weights at every moment.

Features are taken after ``GlobalAveragePooling2D`` (weightless and deterministic),
so the cache is ``examples x channels`` float32 (ResNet50: 8 KiB per image), kept in
memory up to :data:`CACHE_LIMIT_BYTES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tltui.core import catalog

#: In-memory feature cache at most this big (train + validation), else train normally.
CACHE_LIMIT_BYTES = 2 * 1024**3
#: Training steps per call for the head on cached features (see :func:`build`).
STEPS_PER_EXECUTION = 16
#: The layer whose output is cached (see ``tltui.worker.model.build_classifier``).
POOL_LAYER = "avg_pool"
#: Layer types that are random in training mode even when frozen.
STOCHASTIC_TYPES = (
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "StochasticDepth",
)


@dataclass(frozen=True)
class Plan:
    """Whether the cache is used, and why (one line for the run's log)."""

    use: bool
    reason: str


@dataclass
class Cached:
    """What ``fit`` gets instead of the full model and the image pipelines."""

    head: Any  # keras.Model: pooled features -> class probabilities, sharing the classifier's head layers
    train: Any  # tf.data.Dataset of (features, labels), batched
    val: Any | None
    feature_dim: int
    train_examples: int
    val_examples: int
    seconds: float  # time spent computing the features


def _walk(layer: Any) -> list[Any]:
    """``layer`` and every sublayer (nested models included)."""
    out = [layer]
    for sub in getattr(layer, "layers", None) or []:
        out.extend(_walk(sub))
    return out


def _stochastic(layer: Any) -> bool:
    """A random layer that draws while the model trains (one the freeze runs in inference mode does not)."""
    from tltui.worker.freeze import runs_in_inference_mode

    name = type(layer).__name__
    if name not in STOCHASTIC_TYPES or runs_in_inference_mode(layer):
        return False
    rate = getattr(layer, "rate", None)
    if rate is None:
        rate = getattr(layer, "stddev", None)
    return rate is None or float(rate) > 0


def plan(
    preset: Any,
    model: Any,
    backbone: Any,
    family: str,
    train_examples: int | None,
    val_examples: int | None,
    *,
    steps_per_epoch_set: bool = False,
) -> Plan:
    """Decide after the freeze is applied (``layer.trainable`` set) and before training."""
    if preset.train.feature_cache == "off":
        return Plan(False, 'feature cache off (train.feature_cache = "off")')
    if not catalog.family(family).feature_cache:
        return Plan(False, f"feature cache not used: {family} backbones are not cached")
    layers = _walk(backbone)
    bn = [l for l in layers[1:] if "BatchNormalization" in type(l).__name__ and l.trainable]
    others = [l for l in layers[1:] if l.trainable_weights and "BatchNormalization" not in type(l).__name__]
    if others or (backbone.trainable_weights and not bn):
        return Plan(False, 'feature cache not used: part of the backbone trains (freeze.depth below "all")')
    if bn:
        return Plan(
            False,
            f"feature cache not used: {len(bn)} BatchNormalization layer(s) of the backbone update "
            'their statistics (freeze.batchnorm = "trainable")',
        )
    noisy = [l.name for l in layers if _stochastic(l)]
    if noisy:
        return Plan(False, f"feature cache not used: the backbone has random layers in training ({noisy[0]}...)")
    if preset.data.augment:
        return Plan(False, "feature cache not used: data.augment = true changes the backbone's input every epoch")
    try:
        pool = model.get_layer(POOL_LAYER)
    except ValueError:
        return Plan(False, f"feature cache not used: the model has no {POOL_LAYER!r} layer")
    if train_examples is None:
        return Plan(False, "feature cache not used: the number of training images is unknown")
    dim = int(pool.output.shape[-1])
    size = (train_examples + (val_examples or 0)) * dim * 4
    if size > CACHE_LIMIT_BYTES:
        return Plan(
            False,
            f"feature cache not used: {size / 1024**3:.1f} GiB of features is more than "
            f"{CACHE_LIMIT_BYTES / 1024**3:.0f} GiB",
        )
    return Plan(
        True,
        f"feature cache on: the backbone is frozen (BatchNorm in inference mode, no augmentation), so its "
        f"features ({dim} per image, {size / 1024**2:.1f} MiB) are computed once and only the head trains",
    )


def head_model(model: Any) -> Any:
    """A model from pooled features to the output, made of the classifier's own head layers."""
    import keras

    layers = list(model.layers)
    idx = next(i for i, l in enumerate(layers) if l.name == POOL_LAYER)
    dim = int(layers[idx].output.shape[-1])
    inp = keras.Input(shape=(dim,), name="features", dtype="float32")
    x = inp
    for layer in layers[idx + 1 :]:
        x = layer(x)
    return keras.Model(inp, x, name=f"{model.name}_head")


def extract(model: Any, images: Any, progress: Any = None) -> tuple[Any, Any]:
    """Pooled features (float32) and labels of a batched ``(images, labels)`` dataset, in inference
    mode; ``progress`` (a :class:`tltui.worker.progress.Reporter`) advances by the images done."""
    import keras
    import numpy as np
    import tensorflow as tf

    features = keras.Model(model.inputs, model.get_layer(POOL_LAYER).output, name="feature_extractor")

    @tf.function(reduce_retracing=True)
    def step(x: Any) -> Any:
        return tf.cast(features(x, training=False), tf.float32)

    feats: list[Any] = []
    labels: list[Any] = []
    for x, y in images:
        feats.append(step(x).numpy())
        labels.append(y.numpy())
        if progress is not None:
            progress.advance(len(labels[-1]))
    if not feats:
        return np.zeros((0, int(model.get_layer(POOL_LAYER).output.shape[-1])), "float32"), np.zeros((0,), "int32")
    return np.concatenate(feats), np.concatenate(labels)


def build(
    model: Any, dataset: Any, compile_fn: Callable[[Any], object], *, start_epoch: int = 0, emit: Any = None
) -> Cached:
    """Compute the features once and return the head model (compiled by ``compile_fn``) and feature datasets.

    ``dataset`` is a :class:`tltui.worker.data.Dataset` (no augmentation). The features of the
    training split are extracted in its fixed order, so the head's epochs draw the very batches
    (same permutation per epoch, same steps) the full model's would have.
    """
    import time

    import tensorflow as tf

    from tltui.worker import data
    from tltui.worker.progress import Reporter

    t0 = time.perf_counter()
    total = dataset.train.n + (dataset.val.n if dataset.val is not None else 0)
    progress = Reporter(emit, "features", total, "items", "computing the frozen backbone's features") if emit else None
    x_train, y_train = extract(model, dataset.eval_batches(dataset.train), progress)
    val = None
    if dataset.val is not None:
        x_val, y_val = extract(model, dataset.eval_batches(dataset.val), progress)
        val = data.in_memory(x_val, y_val)
    if progress is not None:
        progress.finish()
    seconds = time.perf_counter() - t0
    train = data.in_memory(x_train, y_train)
    head = head_model(model)
    compile_fn(head)
    # A head step is tiny: run several per call so Python and the callbacks' per-call work
    # (which dominate here) are paid less often. Same batches, same updates, same order. The stream
    # is endless, so the number must divide the epoch's steps (Keras would run past the epoch's end).
    # Not under MirroredStrategy: there steps_per_execution > 1 fails ("You must feed a value for placeholder
    # tensor", keras-team/keras#19246); build() runs inside the run's strategy scope.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    head.steps_per_execution = steps_per_execution(dataset.steps_per_epoch) if replicas == 1 else 1
    return Cached(
        head=head,
        train=data.train_batches(
            train,
            batch_size=dataset.batch_size,
            seed=dataset.seed,
            shuffle=dataset.shuffle,
            augment=False,
            start_epoch=start_epoch,
            steps_per_epoch=dataset.fixed_steps,
        ),
        val=data.eval_batches(val, dataset.batch_size) if val is not None else None,
        feature_dim=int(x_train.shape[-1]),
        train_examples=train.n,
        val_examples=0 if val is None else val.n,
        seconds=seconds,
    )


def steps_per_execution(steps_per_epoch: int) -> int:
    """The largest divisor of ``steps_per_epoch`` up to :data:`STEPS_PER_EXECUTION`."""
    return max(d for d in range(1, STEPS_PER_EXECUTION + 1) if steps_per_epoch % d == 0)
