"""Target 2: model-ready batches/s of tltui's input pipeline vs the notebook's, and vs the model.

- tltui: ``tltui.worker.data.train_batches`` (the worker's own code) on CIFAR-sized uint8
  32x32 images held in memory: a per-epoch permutation, batch (gather), each image's four
  augmentation draws. Augmentation (``tltui.worker.augment``) and resizing to ``image_size`` happen
  inside the model's training step (on the accelerator), so a model-ready batch is 32x32 uint8 plus
  draws, and the model side below includes the augmentation.
- notebook: per image float32 resize to 224 + colour jitter, ``num_parallel_calls=4``,
  ``batch(32)``, ``prefetch(1)``.

Measured interleaved (A B A B ...), same data, same batch size. Then the pipeline's
images/s against what the model consumes per training step (demo preset, and
ResNet50 at 224 with ``weights=None``) on this CPU: the pipeline must deliver >= 5x.

``python -m bench.pipeline [--tiny]``
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from bench import Figure, Result, emit, median, tiny_flag

BATCH = 32


def cifar_like(n: int, seed: int = 0) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 100, size=(n,), dtype=np.int32)
    return x, y


def preset_for(n: int, *, image_size: int = 224, augment: bool = True, backbone: str = "resnet50") -> Any:
    from tltui.core import presets

    return presets.from_dict(
        {
            "name": "bench",
            "data": {
                "source": "folder:/nonexistent",
                "image_size": [image_size, image_size],
                "batch_size": BATCH,
                "augment": augment,
                "shuffle_buffer": n,
            },
            "model": {"backbone": backbone, "weights": "none"},
            "train": {"steps_per_epoch": max(1, n // BATCH), "seed": 1},
        }
    )


def tltui_pipeline(x: Any, y: Any) -> Any:
    from tltui.worker import data as data_mod

    preset = preset_for(len(x))
    d, t = preset.data, preset.train
    split = data_mod.in_memory(x, y)
    return data_mod.train_batches(
        split,
        batch_size=d.batch_size,
        seed=t.seed,
        shuffle=True,
        augment=d.augment,
        steps_per_epoch=t.steps_per_epoch,
    )


def cpu_augmentation(seed: int) -> Any:
    """The augmentation tltui ran on the CPU in tf.data until it moved into the training step
    (``tltui.worker.augment``), kept as the reference: ``augment(x, g)`` flips, shifts (whole pixels,
    up to 10 %, reflected) and brightens (+-15 %) each image of a batch of 0..255 pixels, drawn from
    ``(seed, g)``, ``g`` the batch's index in the run; float32 out. The tests check the new code
    against it, bit for bit, and ``bench.folder`` measures its CPU cost against the new pipeline's."""
    import tensorflow as tf

    from tltui.worker.augment import SALT

    base = tf.constant([seed, SALT], dtype=tf.int64)

    def augment(x: Any, g: Any) -> Any:
        shape = tf.shape(x)
        n, h, w = shape[0], shape[1], shape[2]
        u = tf.random.stateless_uniform([n, 4], seed=tf.random.experimental.stateless_fold_in(base, g))
        flip = tf.reshape(u[:, 0] < 0.5, [n, 1, 1, 1])
        x = tf.where(flip, tf.reverse(x, axis=[2]), x)
        dx = tf.round((u[:, 1] * 0.2 - 0.1) * tf.cast(w, tf.float32))
        dy = tf.round((u[:, 2] * 0.2 - 0.1) * tf.cast(h, tf.float32))
        one, zero = tf.ones([n]), tf.zeros([n])
        shift = tf.stack([one, zero, -dx, zero, one, -dy, zero, zero], axis=1)
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x,
            transforms=shift,
            output_shape=shape[1:3],
            fill_value=0.0,
            interpolation="NEAREST",
            fill_mode="REFLECT",
        )
        x = tf.cast(x, tf.float32)
        delta = tf.reshape((u[:, 3] * 0.3 - 0.15) * 255.0, [n, 1, 1, 1])
        return tf.clip_by_value(x + delta, 0.0, 255.0)

    return augment


def notebook_pipeline(x: Any, y: Any) -> Any:
    """The seed notebook's input pipeline (per-image float32 resize to 224 + colour jitter)."""
    import tensorflow as tf

    def prep(img: Any, label: Any) -> Any:
        img = tf.image.convert_image_dtype(img, tf.float32)
        img = tf.image.resize(img, (224, 224))
        img = tf.image.random_brightness(img, 0.2)
        img = tf.image.random_contrast(img, 0.8, 1.2)
        img = tf.image.random_saturation(img, 0.8, 1.2)
        img = tf.image.random_flip_left_right(img)
        return img, label

    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).repeat()
    return ds.map(prep, num_parallel_calls=4).batch(BATCH).prefetch(1)


def batches_per_second(it: Any, n: int) -> float:
    next(it)  # the first batch pays start-up
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    return n / (time.perf_counter() - t0)


def model_images_per_second(preset: Any, num_classes: int, steps: int, batch: int) -> float:
    """Training images/s of the worker's own model (built, frozen, compiled as the worker does)."""
    import numpy as np

    from tltui.worker import model as model_mod
    from tltui.worker.compile import compile_model
    from tltui.worker.freeze import apply_freeze

    model, backbone = model_mod.build_classifier(preset, num_classes)
    spec = model_mod.backbone_spec(preset)
    apply_freeze(model, backbone, spec.family, preset.freeze.depth, preset.freeze.batchnorm)
    compile_model(model, preset, num_classes, None, lambda *a: None)
    h, w = preset.data.image_size
    x: Any = np.random.default_rng(0).uniform(0, 255, size=(batch, h, w, 3)).astype("float32")
    if preset.data.augment:  # the training step augments the uint8 batch, as in a run
        from tltui.worker.augment import AugmentInTraining

        model = AugmentInTraining(model)
        compile_model(model, preset, num_classes, None, lambda *a: None)
        x = (x.astype("uint8"), np.random.default_rng(1).uniform(size=(batch, 4)).astype("float32"))
    y = np.zeros((batch,), dtype="int32")
    model.train_on_batch(x, y)  # tracing
    model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t0)
    return batch / median(times)


def run(tiny: bool = False) -> list[Result | Figure]:
    import tensorflow as tf  # noqa: F401 - import cost outside the timings

    n = 2048 if tiny else 20_000
    rounds, nb_tl, nb_nb = (1, 5, 2) if tiny else (3, 400, 30)
    x, y = cifar_like(n)
    tl_it = iter(tltui_pipeline(x, y))
    next(tl_it)  # the images are in memory already (no cache to fill)
    nb_it = iter(notebook_pipeline(x, y))
    tl, nb = [], []
    for _ in range(rounds):  # interleaved
        tl.append(batches_per_second(tl_it, nb_tl))
        nb.append(batches_per_second(nb_it, nb_nb))
    tl_bps, nb_bps = median(tl), median(nb)
    out: list[Result | Figure] = [
        Result(
            "pipeline",
            "model-ready batches/s (batch 32, CIFAR-sized uint8)",
            "tltui",
            tl_bps,
            "notebook",
            nb_bps,
            "batch/s",
            ">= 10",
            note=f"median of {rounds} interleaved rounds; tltui resizes in the model",
        )
    ]
    pipe_ips = tl_bps * BATCH
    from tltui.core import presets

    demo = presets.load(__import__("bench").REPO / "tltui" / "presets" / "demo.toml")
    cases = [("demo preset (MobileNetV2 a0.35, 64 px)", demo, 6, 3 if tiny else 10, BATCH)]
    if not tiny:
        cases.append(("ResNet50 at 224, weights=None", preset_for(n, backbone="resnet50"), 100, 3, 8))
    else:
        cases = [("tiny model (test backbone)", preset_for(n, image_size=32, backbone=_tiny_backbone()), 100, 2, BATCH)]
    for label, preset, classes, steps, batch in cases:
        model_ips = model_images_per_second(preset, classes, steps, batch)
        out.append(
            Result(
                "pipeline",
                f"pipeline vs model consumption, {label}",
                "pipeline",
                pipe_ips,
                "model trains",
                model_ips,
                "img/s",
                ">= 5",
                note="model step measured on this CPU",
            )
        )
    return out


def _tiny_backbone() -> str:
    """The test-only two-layer CNN (registered by ``TLTUI_TEST_BACKBONES=1``)."""
    import os

    os.environ["TLTUI_TEST_BACKBONES"] = "1"
    return "tiny_cnn"


def main(argv: Sequence[str] | None = None) -> int:
    emit(run(tiny_flag(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
