"""Target 7: a folder of camera-sized JPEGs, delivered to the model: the first run (decode into the
decoded cache) against later runs (read from it), against Keras's own folder loader, against the
model's step rate; and memory when the folder is far larger than the in-memory limit.

- first pass: ``tltui.worker.data.load`` into an empty cache (scan, probe, decode every JPEG once
  in parallel, write the memory-mapped entry) plus the first epoch of ``train_batches``;
- later epochs: an epoch read from the cache (every later epoch, and every epoch of a sweep's
  other runs, whose load from the cache is timed too);
- Keras: ``keras.utils.image_dataset_from_directory`` (decode + resize every image every epoch,
  ``tf.data`` parallelism), one epoch, after one warm-up epoch (file cache warm for both);
- demo: model-ready images/s from the cache for the demo's shapes folder vs the demo preset's
  model consuming them on this CPU (the pipeline must never be the bottleneck);
- memory: with the in-memory budget at a tenth of the decoded size (so the split is memory-mapped),
  the anonymous memory (RssAnon) one epoch adds, against the decoded bytes it reads;
- augmentation's CPU cost: a cached folder at 224 with ``data.augment = true``, images per CPU-second
  (``time.process_time``: every thread of the process) of the worker's pipeline, which leaves the
  augmentation to the training step on the accelerator, against the same stream augmented on the CPU
  in tf.data as tltui did before (``bench.pipeline.cpu_augmentation``), interleaved; and what the
  augmentation costs where it now runs, on this CPU (on a GPU it is the GPU's);
- peak memory of an in-memory split before and after the copies went: the old path (a TensorFlow
  tensor gathered inside tf.data, whose graph rewrite serializes and re-creates it) against the
  worker's (one numpy copy read by the batch) and the memory-mapped one, each in a fresh process,
  sampled every 5 ms; 4,000 images at 224 (0.6 GB decoded) stand for the 2 GiB of the old threshold:
  each side's growth over the mapped side's (the pipeline's buffers), / the decoded size, is the factor
  that scales.

``python -m bench.folder [--tiny]``
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import Figure, Result, emit, median, tiny_flag

BATCH = 32


def make_photos(root: Path, n: int, size: tuple[int, int]) -> Path:
    """``n`` JPEGs (quality 90) of ``size`` (width, height) in 4 class folders: smooth gradients
    plus sensor-like noise, so they compress like photos rather than like flat colour."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        c = i % 4
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        base = (np.sin(x / (50 + 10 * c) + i) + np.cos(y / (37 + i % 7))) * 60 + 128
        img = np.stack([base, base * 0.8 + 20 * c, 255 - base], -1) + rng.normal(0, 12, (h, w, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"{i:05d}.jpg", quality=90)
    return root


def preset_for(folder: Path, image_size: int = 224, batch: int = BATCH, augment: bool = False) -> Any:
    from tltui.core import presets

    return presets.from_dict(
        {
            "name": "bench-folder",
            "data": {
                "source": f"folder:{folder}",
                "image_size": [image_size, image_size],
                "batch_size": batch,
                "validation_fraction": 0.1,
                "augment": augment,
            },
            "model": {"backbone": "resnet50", "weights": "none"},
        }
    )


def first_run(preset: Any, cache: Path) -> tuple[float, int]:
    """(seconds, training images) of a first run's wait: load into an empty cache + its first epoch."""
    from tltui.worker import data

    t0 = time.perf_counter()
    ds = data.load(preset, decoded_cache=cache)
    assert not ds.report["decoded_cache"]["hit"]
    for _ in ds.train_batches(0).take(ds.steps_per_epoch):
        pass
    return time.perf_counter() - t0, ds.train_examples


def later_run(preset: Any, cache: Path, epochs: int) -> tuple[float, list[float]]:
    """A later run: seconds to load from the cache, and images/s of each epoch after the first."""
    from tltui.worker import data

    t0 = time.perf_counter()
    ds = data.load(preset, decoded_cache=cache)
    loaded = time.perf_counter() - t0
    assert ds.report["decoded_cache"]["hit"]
    it = iter(ds.train_batches(0))  # one endless stream, as fit iterates it
    for _ in range(ds.steps_per_epoch):  # epoch 1 pays the pipeline's start-up, as Keras's warm-up epoch does
        next(it)
    rates = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for _ in range(ds.steps_per_epoch):
            next(it)
        rates.append(ds.train_examples / (time.perf_counter() - t0))
    return loaded, rates


def epoch_memory(preset: Any, cache: Path, way: str = "memory", *, fresh: bool = True) -> tuple[int, int]:
    """Anonymous memory and peak RSS (bytes) a load from the cache and one epoch add at their peak,
    measured in a fresh process (after TensorFlow's import and a warm-up pipeline). ``way``:
    ``"mapped"`` (budget 0), ``"memory"`` (the worker's in-memory split) or ``"old"`` (the in-memory
    split as a tensor gathered in tf.data, as before). ``fresh=False`` (tiny mode): in this process,
    where earlier allocations blur the figures."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if not fresh:
        return _memory_probe(preset.to_toml_dict(), str(cache), way)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_memory_probe, preset.to_toml_dict(), str(cache), way).result()


def _memory_probe(raw: dict, cache: str, way: str) -> tuple[int, int]:
    import threading

    import numpy as np

    from tltui.core import memory, presets
    from tltui.worker import data

    preset = presets.from_dict(raw)
    warm = data.in_memory(np.zeros((64, 8, 8, 3), np.uint8), np.zeros(64, np.int32))
    for _ in data.train_batches(warm, batch_size=32, seed=1, shuffle=True, augment=False).take(4):
        pass
    for _ in old_train_batches(np.zeros((64, 8, 8, 3), np.uint8), np.zeros(64, np.int32), 32).take(4):
        pass
    budget = memory.Budget(0.0 if way == "mapped" else 1.0, 1 << 50)
    before, hwm0 = rss_anon(), status_bytes("VmHWM")
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # copies live for a fraction of a second: sample often
        while not done.wait(0.005):
            peak[0] = max(peak[0], rss_anon())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        ds = data.load(preset, decoded_cache=Path(cache), budget=budget)
        assert (ds.train.mapped is not None) == (way == "mapped")
        if way == "old":
            stream = old_train_batches(ds.train.images, ds.train.labels, ds.batch_size)
            ds.train.images = None  # the tensor holds the pixels now, as the old split did
        else:
            stream = ds.train_batches(0)
        for _ in stream.take(ds.steps_per_epoch):
            pass
    finally:
        done.set()
        sampler.join()
    return max(peak[0], rss_anon()) - before, status_bytes("VmHWM") - hwm0


def old_train_batches(images: Any, labels: Any, batch: int) -> Any:
    """The in-memory training stream as tltui built it before (augmentation off): the images as a
    TensorFlow tensor, gathered by the batch inside tf.data."""
    import tensorflow as tf

    from tltui.worker import data

    stored = tf.convert_to_tensor(images)
    labels_t = tf.constant(labels, tf.int32)
    order = data._order(len(labels), 1, True)
    idx = tf.data.Dataset.range(0, data.EPOCH_LIMIT).flat_map(
        lambda e: tf.data.Dataset.from_tensor_slices(order(e)).batch(batch)
    )
    ds = idx.map(lambda i: (tf.gather(stored, i), tf.gather(labels_t, i)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.map(lambda x, y: (tf.cast(x, tf.float32), y)).prefetch(tf.data.AUTOTUNE)


def cpu_rate(it: Any, batches: int, batch: int) -> float:
    """Images per CPU-second (every thread of this process) of ``batches`` batches of ``it``."""
    for _ in range(2):
        next(it)
    t0 = time.process_time()
    for _ in range(batches):
        next(it)
    return batches * batch / max(time.process_time() - t0, 1e-9)


def augmentation_cpu(ds: Any, rounds: int, batches: int) -> tuple[float, float, float]:
    """Images per CPU-second of the worker's training stream (augmentation left to the training step),
    of the same stream augmented on the CPU as before, interleaved (medians); and of the training
    step's augmentation itself, run here on the CPU."""
    import tensorflow as tf

    from bench.pipeline import cpu_augmentation
    from tltui.worker import augment

    aug = cpu_augmentation(ds.seed)
    b = ds.batch_size
    new = iter(ds.train_batches(0))
    # the same batches, augmented in tf.data as before (the stream's own draws are left unused)
    g = tf.data.Dataset.counter()
    old = iter(
        tf.data.Dataset.zip(g, ds.train_batches(0))
        .map(lambda g, xu_y: (aug(xu_y[0][0], g), xu_y[1]), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    news, olds = [], []
    for _ in range(rounds):
        news.append(cpu_rate(new, batches, b))
        olds.append(cpu_rate(old, max(1, batches // 10), b))
    (x, u), _ = next(new)
    step = tf.function(augment.augment)
    in_step = iter(lambda: step(x, u), None)
    return median(news), median(olds), cpu_rate(in_step, max(2, batches // 10), int(x.shape[0]))


def status_bytes(key: str) -> int:
    """A ``/proc/self/status`` figure (kB there) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def keras_epoch(folder: Path, image_size: int) -> float:
    """Images/s of one epoch of Keras's folder loader (after a warm-up epoch)."""
    import keras

    ds = keras.utils.image_dataset_from_directory(
        folder, image_size=(image_size, image_size), batch_size=BATCH, shuffle=True, seed=1, verbose=False
    )
    for _ in ds:  # warm-up: OS file cache, tf.data start-up
        pass
    n = 0
    t0 = time.perf_counter()
    for x, _ in ds:
        n += int(x.shape[0])
    return n / (time.perf_counter() - t0)


def rss_anon() -> int:
    """This process's anonymous resident memory in bytes (file-backed pages of a memory map excluded)."""
    return status_bytes("RssAnon")


def run(tiny: bool = False) -> list[Result | Figure]:
    import tensorflow as tf  # noqa: F401 - import cost outside the timings

    from bench.pipeline import model_images_per_second
    from tltui.core import demo, presets
    from tltui.worker import data

    n, size, later_rounds = (24, (200, 150), 1) if tiny else (240, (1600, 1200), 5)
    work = Path(tempfile.mkdtemp(prefix="tltui-bench-folder-"))
    out: list[Result | Figure] = []
    try:
        folder = make_photos(work / "photos", n, size)
        preset = preset_for(folder)
        cache = work / "cache"
        first_s, examples = first_run(preset, cache)
        loaded, rates = later_run(preset, cache, later_rounds)
        first_ips, later_ips = examples / first_s, median(rates)
        out.append(
            Result(
                "folder",
                f"images/s delivered, {n} JPEGs of {size[0]}x{size[1]} at 224",
                "later epochs",
                later_ips,
                "first pass",
                first_ips,
                "img/s",
                ">= 20",
                note="first pass = load into an empty cache + epoch 1; later = an epoch read from the cache",
            )
        )
        out.append(
            Figure("folder", "a later run's load from the cache (what a sweep's next run waits)", loaded, "s", None)
        )
        _, aug_rates = later_run(preset_for(folder, augment=True), cache, later_rounds)
        out.append(
            Figure(
                "folder",
                "later epochs with data.augment = true (uint8 + draws: the training step augments)",
                median(aug_rates),
                "img/s",
                None,
            )
        )
        keras_ips = keras_epoch(folder, 224)  # (tiny: 48 small images, a number without meaning)
        out.append(
            Result(
                "folder",
                "images/s per epoch vs keras.utils.image_dataset_from_directory",
                "later run",
                later_ips,
                "keras loader",
                keras_ips,
                "img/s",
                ">= 5",
                note="Keras decodes and resizes every image every epoch; neither augments",
            )
        )
        out.append(
            Result(
                "folder",
                "first run vs keras loader (decode once vs decode every epoch)",
                "first run",
                first_ips,
                "keras loader",
                keras_ips,
                "img/s",
                "info",
            )
        )

        # the demo's folder: pipeline from the cache vs what the demo preset's model consumes
        shapes = demo.generate(work / "shapes", per_class=10 if tiny else 300, size=16 if tiny else 64)
        demo_preset = presets.load(Path(__file__).resolve().parent.parent / "tltui" / "presets" / "demo.toml")
        model = demo_preset.model.model_dump()
        if tiny:  # the smoke test checks the path, not MobileNetV2's speed
            from bench.pipeline import _tiny_backbone

            model = {"backbone": _tiny_backbone(), "weights": "none"}
        demo_preset = presets.from_dict(
            {
                **demo_preset.to_toml_dict(),
                "model": model,
                "data": {
                    **demo_preset.data.model_dump(),
                    "source": f"folder:{shapes}",
                    **({"image_size": [16, 16]} if tiny else {}),
                },
            }
        )
        first_run(demo_preset, cache)
        _, demo_rates = later_run(demo_preset, cache, 1 if tiny else 3)
        model_ips = model_images_per_second(demo_preset, 6, 2 if tiny else 10, demo_preset.data.batch_size)
        out.append(
            Result(
                "folder",
                "demo preset: pipeline (an epoch from the cache) vs model trains",
                "pipeline",
                median(demo_rates),
                "model trains",
                model_ips,
                "img/s",
                ">= 1",
                note="the pipeline must never be the bottleneck",
            )
        )

        # memory: a folder big enough that its decoded images dominate, memory-mapped (budget 0) vs
        # loaded in memory, now and as before, each in a fresh process
        many = make_photos(work / "many", 16 if tiny else 4000, (224, 224))
        big = preset_for(many)
        first_run(big, cache)
        ds = data.load(big, decoded_cache=cache)
        decoded_bytes = (ds.train_examples + (ds.val_examples or 0)) * ds.native_size[0] * ds.native_size[1] * 3
        del ds
        mapped_anon, mapped_hwm = epoch_memory(big, cache, "mapped", fresh=not tiny)
        memory_anon, memory_hwm = epoch_memory(big, cache, "memory", fresh=not tiny)
        old_anon, old_hwm = epoch_memory(big, cache, "old", fresh=not tiny)
        out.append(
            Result(
                "folder",
                f"anonymous memory a load + epoch adds ({decoded_bytes / 1e6:.0f} MB decoded)",
                "memory-mapped",
                max(1, mapped_anon) / 1e6,
                "in memory",
                max(1, memory_anon) / 1e6,
                "MB",
                "<= 0.5",
                note="mapped: in-memory budget 0; its pages are the OS's file cache",
            )
        )
        for label, anon, hwm in (("now", memory_anon, memory_hwm), ("as before", old_anon, old_hwm)):
            copies = (anon - mapped_anon) / decoded_bytes  # the mapped side's growth: the pipeline's own buffers
            out.append(
                Figure(
                    "folder",
                    f"in-memory split {label}: copies of the images at the peak (anonymous memory over the mapped "
                    f"side's {mapped_anon / 1e6:,.0f} MB of pipeline buffers, / decoded size; peak RSS growth "
                    f"{hwm / 1e6:,.0f} MB)",
                    copies,
                    "x",
                    None,
                    note=f"at the old 2 GiB threshold: {copies * 2 * 1024**3 / 1e9:.1f} GB of copies per run",
                )
            )
        out.append(
            Result(
                "folder",
                "in-memory split: peak anonymous memory, now vs before the copies went",
                "now",
                max(1, memory_anon) / 1e6,
                "before",
                max(1, old_anon) / 1e6,
                "MB",
                "<= 0.5",
            )
        )

        # augmentation's CPU cost at 224: left to the training step (now) vs in tf.data (before)
        aug_ds = data.load(preset_for(many, augment=True), decoded_cache=cache)
        new_rate, old_rate, step_rate = augmentation_cpu(aug_ds, 1 if tiny else 3, 3 if tiny else 100)
        out.append(
            Result(
                "folder",
                "images per CPU-second, cached folder at 224, data.augment = true",
                "pipeline now",
                new_rate,
                "CPU augmentation (before)",
                old_rate,
                "img/CPU-s",
                ">= 10",
                note="process CPU time of every thread; now the training step augments, on the accelerator",
            )
        )
        out.append(
            Figure(
                "folder",
                "CPU time per training image, cached folder at 224, augment on",
                1e6 / new_rate,
                "us",
                100.0,
                note="target: >= 10,000 images per CPU-second",
            )
        )
        out.append(
            Figure(
                "folder",
                "the training step's augmentation, run on this CPU (on a GPU: the GPU's work)",
                step_rate,
                "img/CPU-s",
                None,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    emit(run(tiny_flag(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
