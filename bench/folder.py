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
- memory: with the in-memory limit at a tenth of the decoded size (so the split is memory-mapped),
  the anonymous memory (RssAnon) one epoch adds, against the decoded bytes it reads.

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


def epoch_memory(preset: Any, cache: Path, limit_bytes: int | None = None, *, fresh: bool = True) -> int:
    """Anonymous memory (bytes) a load from the cache and one epoch add at their peak, measured in
    a fresh process (after TensorFlow's import and a warm-up pipeline), ``limit_bytes`` as the
    in-memory limit (``None``: the default). ``fresh=False`` (tiny mode): in this process, where
    earlier allocations blur the figure."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if not fresh:
        from tltui.worker import data

        saved = data.CACHE_LIMIT_BYTES
        try:
            return _memory_probe(preset.model_dump(), str(cache), limit_bytes)
        finally:
            data.CACHE_LIMIT_BYTES = saved
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_memory_probe, preset.model_dump(), str(cache), limit_bytes).result()


def _memory_probe(raw: dict, cache: str, limit_bytes: int | None) -> int:
    import numpy as np

    from tltui.core import presets
    from tltui.worker import data

    preset = presets.from_dict(raw)
    warm = data.in_memory(np.zeros((64, 8, 8, 3), np.uint8), np.zeros(64, np.int32))
    for _ in data.train_batches(warm, batch_size=32, seed=1, shuffle=True, augment=False).take(4):
        pass
    if limit_bytes is not None:
        data.CACHE_LIMIT_BYTES = limit_bytes
    before = peak = rss_anon()
    ds = data.load(preset, decoded_cache=Path(cache))
    for _ in ds.train_batches(0).take(ds.steps_per_epoch):
        peak = max(peak, rss_anon())
    assert (ds.train.mapped is not None) == (limit_bytes is not None)
    return peak - before


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
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


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
                "later epochs with data.augment = true (flip, shift, brightness at 224)",
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
                **demo_preset.model_dump(),
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

        # memory: a folder big enough that its decoded images dominate, memory-mapped (the in-memory
        # limit at a tenth of its size) vs loaded in memory, each in a fresh process
        many = make_photos(work / "many", 16 if tiny else 4000, (224, 224))
        big = preset_for(many)
        first_run(big, cache)
        ds = data.load(big, decoded_cache=cache)
        decoded_bytes = ds.train_examples * ds.native_size[0] * ds.native_size[1] * 3
        del ds
        mapped_growth = epoch_memory(big, cache, decoded_bytes // 10, fresh=not tiny)
        memory_growth = epoch_memory(big, cache, fresh=not tiny)
        out.append(
            Result(
                "folder",
                f"anonymous memory a load + epoch adds ({decoded_bytes / 1e6:.0f} MB decoded)",
                "memory-mapped",
                max(1, mapped_growth) / 1e6,
                "in memory",
                max(1, memory_growth) / 1e6,
                "MB",
                "<= 0.5",
                note="mapped: in-memory limit at a tenth of the decoded size; its pages are the OS's file cache",
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
