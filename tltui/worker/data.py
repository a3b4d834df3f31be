"""tf.data pipelines for ``tfds:NAME`` and ``folder:PATH`` sources.

Images stay small and ``uint8`` through tf.data (decoded and resized once to a
"native" size, cached when they fit in memory); shuffling, batching and the
random augmentation happen per batch, and the cast to float32 is the last step.
The model resizes to ``image_size`` and preprocesses inside itself, so training
and inference see the same thing.

The folder scan (:func:`scan_folder`, :func:`split_files`, :func:`check_images`)
needs no TensorFlow; it finds unreadable images before training starts.
"""

from __future__ import annotations

import math
import os
import random
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tltui.presets import Preset
from tltui.workspace import RunPaths, write_json

if TYPE_CHECKING:
    import tensorflow as tf

#: What ``tf.io.decode_image`` can read.
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})
#: Cache decoded images in RAM below this many bytes.
CACHE_LIMIT_BYTES = 2 * 1024**3
#: How many images the folder's typical size is measured on.
SIZE_SAMPLE = 500

LogFn = Callable[[str, str], None]  # (level, message)


class DataError(Exception):
    """A data problem the user can fix (one line naming the source and what to do)."""


@dataclass(frozen=True)
class FolderScan:
    classes: list[str]
    files: list[tuple[str, int]]  # (path, class index), sorted


@dataclass(frozen=True)
class ImageCheck:
    good: list[tuple[str, int]]
    bad: list[tuple[str, str]]  # (path, why)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (h, w) of a sample of good images


@dataclass
class Dataset:
    """What training needs from the data, whichever the source."""

    source: str
    train: Any  # tf.data.Dataset of (float32 images, int32 labels), batched
    val: Any | None
    class_names: list[str]
    native_size: tuple[int, int]
    train_examples: int | None
    val_examples: int | None
    steps_per_epoch: int | None
    skipped: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------- folder scan (no TF)


def scan_folder(root: str | Path) -> FolderScan:
    """Class subfolders (sorted names) and their image files (searched recursively)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.source: folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"data.source: folder {root} needs at least 2 class subfolders, found {len(classes)}")
    files: list[tuple[str, int]] = []
    empty: list[str] = []
    for label, name in enumerate(classes):
        found = sorted(
            str(p)
            for p in (root / name).rglob("*")
            if p.suffix.lower() in IMAGE_EXTS and p.is_file() and not p.name.startswith(".")
        )
        if not found:
            empty.append(name)
        files.extend((f, label) for f in found)
    if empty:
        raise DataError(
            f"data.source: class folder(s) {', '.join(empty)} in {root} hold no images "
            f"({', '.join(sorted(IMAGE_EXTS))}); add images or remove the folder"
        )
    return FolderScan(classes, files)


def split_files(
    files: Sequence[tuple[str, int]], validation_fraction: float, seed: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """A stratified, deterministic train/validation split (same seed, same split)."""
    by_class: dict[int, list[tuple[str, int]]] = {}
    for item in sorted(files):
        by_class.setdefault(item[1], []).append(item)
    train: list[tuple[str, int]] = []
    val: list[tuple[str, int]] = []
    for label in sorted(by_class):
        items = by_class[label]
        random.Random(f"{seed}:{label}").shuffle(items)
        n_val = round(len(items) * validation_fraction)
        if len(items) >= 2:
            n_val = min(max(n_val, 1), len(items) - 1)
        else:
            n_val = 0
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val


def limit(items: Sequence[tuple[str, int]], n: int | None, seed: int) -> list[tuple[str, int]]:
    """At most ``n`` items, drawn deterministically across classes."""
    items = list(items)
    if n is None or n >= len(items):
        return items
    random.Random(seed).shuffle(items)
    return sorted(items[:n])


def _check_one(path: str) -> tuple[str, tuple[int, int] | None, str]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
            img.draft("RGB", (max(1, w // 8), max(1, h // 8)))  # JPEG: decode small, still reads it all
            img.load()
        return path, (h, w), ""
    except Exception as e:  # noqa: BLE001 - any failure to decode means "skip this file"
        return path, None, str(e).splitlines()[0][:120] if str(e) else type(e).__name__


def check_images(files: Sequence[tuple[str, int]], workers: int = 4) -> ImageCheck:
    """Decode every image once (PIL); unreadable ones go to ``bad`` with the reason."""
    labels = dict(files)
    good: list[tuple[str, int]] = []
    bad: list[tuple[str, str]] = []
    sizes: list[tuple[int, int]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for path, size, why in pool.map(_check_one, [f for f, _ in files]):
            if size is None:
                bad.append((path, why))
            else:
                good.append((path, labels[path]))
                if len(sizes) < SIZE_SAMPLE:
                    sizes.append(size)
    return ImageCheck(good, bad, sizes)


def native_size(sizes: Sequence[tuple[int, int]], image_size: Sequence[int]) -> tuple[int, int]:
    """The size images are kept at in the pipeline: the folder's typical size, at most ``image_size``."""
    if not sizes:
        return int(image_size[0]), int(image_size[1])
    h = int(statistics.median(s[0] for s in sizes))
    w = int(statistics.median(s[1] for s in sizes))
    return max(1, min(h, int(image_size[0]))), max(1, min(w, int(image_size[1])))


# --------------------------------------------------------------------------- pipelines


def load(preset: Preset, log: LogFn | None = None) -> Dataset:
    """Build the train/validation pipelines the preset describes."""
    log = log or (lambda level, message: None)
    if preset.data.kind == "folder":
        return _load_folder(preset, log)
    return _load_tfds(preset, log)


def _load_folder(preset: Preset, log: LogFn) -> Dataset:
    d, seed = preset.data, preset.train.seed
    scan = scan_folder(d.target)
    train_files, val_files = split_files(scan.files, d.validation_fraction, seed)
    train_files = limit(train_files, d.train_limit, seed)
    val_files = limit(val_files, d.val_limit, seed + 1)
    checked = check_images(train_files + val_files)
    skipped = [p for p, _ in checked.bad]
    if checked.bad:
        shown = "; ".join(f"{p} ({why})" for p, why in checked.bad[:10])
        more = f" and {len(checked.bad) - 10} more" if len(checked.bad) > 10 else ""
        log("warning", f"skipping {len(checked.bad)} unreadable image(s): {shown}{more}")
    ok = set(p for p, _ in checked.good)
    train_files = [f for f in train_files if f[0] in ok]
    val_files = [f for f in val_files if f[0] in ok]
    if not train_files:
        raise DataError(f"data.source: no readable training images in {d.target}")
    size = native_size(checked.sizes, d.image_size)
    train = _folder_images(train_files, size)
    val = _folder_images(val_files, size) if val_files else None
    return _finish(preset, train, val, scan.classes, size, len(train_files), len(val_files) or None, skipped)


def _folder_images(files: Sequence[tuple[str, int]], size: tuple[int, int]) -> tf.data.Dataset:
    import tensorflow as tf

    paths = tf.constant([p for p, _ in files])
    labels = tf.constant([lab for _, lab in files], dtype=tf.int32)

    def decode(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return _to_native(img, size), label

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # The PIL check caught what we know of; a file TF still cannot decode is dropped, not fatal.
    return ds.ignore_errors(log_warning=True)


def _to_native(img: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    import tensorflow as tf

    img.set_shape([None, None, 3])
    img = tf.image.resize(img, size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def tfds_data_dir(preset: Preset) -> str:
    return preset.data.data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def _load_tfds(preset: Preset, log: LogFn) -> Dataset:
    import tensorflow as tf
    import tensorflow_datasets as tfds

    d = preset.data
    name = d.target
    data_dir = tfds_data_dir(preset)
    splits = [d.train_split] + ([d.val_split] if d.val_split else [])
    try:
        loaded, info = tfds.load(
            name,
            split=splits,
            data_dir=data_dir,
            download=False,
            as_supervised=True,
            with_info=True,
            shuffle_files=True,
            read_config=tfds.ReadConfig(shuffle_seed=preset.train.seed),
        )
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(f"data.source = \"tfds:{name}\": unknown TFDS dataset ({str(e).splitlines()[0][:120]})") from e
    except (AssertionError, FileNotFoundError) as e:
        raise DataError(_not_prepared(name, data_dir)) from e
    except ValueError as e:
        if "supervised" in str(e):
            raise DataError(f"data.source = \"tfds:{name}\": the dataset has no (image, label) supervised keys") from e
        raise DataError(f"data.source = \"tfds:{name}\": {str(e).splitlines()[0][:200]} (check data.train_split/val_split)") from e
    train, val = loaded[0], (loaded[1] if len(loaded) > 1 else None)
    image_key, label_key = info.supervised_keys
    label_feature = info.features[label_key]
    class_names = list(getattr(label_feature, "names", None) or [])
    if not class_names:
        raise DataError(f"data.source = \"tfds:{name}\": label {label_key!r} is not a class label")
    shape = info.features[image_key].shape
    size = (
        (int(shape[0]), int(shape[1])) if shape[0] and shape[1] else (int(d.image_size[0]), int(d.image_size[1]))
    )
    channels = shape[2] if len(shape) > 2 else 3

    def prepare(img: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if channels == 1:
            img = tf.image.grayscale_to_rgb(img)
        if not (shape[0] and shape[1]):
            img = _to_native(img, size)
        return tf.cast(img, tf.uint8), tf.cast(label, tf.int32)

    train = train.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    val = val.map(prepare, num_parallel_calls=tf.data.AUTOTUNE) if val is not None else None
    n_train = _split_examples(info, d.train_split, train)
    n_val = _split_examples(info, d.val_split, val) if val is not None else None
    if d.train_limit:
        train = train.take(d.train_limit)
        n_train = min(n_train, d.train_limit) if n_train is not None else None
    if val is not None and d.val_limit:
        val = val.take(d.val_limit)
        n_val = min(n_val, d.val_limit) if n_val is not None else None
    return _finish(preset, train, val, class_names, size, n_train, n_val, [])


def _not_prepared(name: str, data_dir: str) -> str:
    base = name.split(":")[0].split("/")[0]
    return (
        f"data.source = \"tfds:{name}\": the data is not prepared in {data_dir} and tltui never downloads; "
        f"on a machine with internet run `tfds build {base} --data_dir DIR`, copy DIR/{base} to {data_dir}/ "
        "(or set data.data_dir to where it is)"
    )


def _split_examples(info: Any, split: str, ds: Any) -> int | None:
    """Examples in a split: from the metadata when it has them (mock data has none), else the cardinality."""
    try:
        n = int(info.splits[split].num_examples)
        if n > 0:
            return n
    except Exception:  # noqa: BLE001 - missing/empty split metadata
        pass
    try:
        n = int(ds.cardinality())
    except Exception:  # noqa: BLE001
        return None
    return n if n >= 0 else None


def _finish(
    preset: Preset,
    train: tf.data.Dataset,
    val: tf.data.Dataset | None,
    class_names: list[str],
    size: tuple[int, int],
    n_train: int | None,
    n_val: int | None,
    skipped: list[str],
) -> Dataset:
    """Cache, shuffle, batch, augment, cast and prefetch."""
    import tensorflow as tf

    d, t = preset.data, preset.train
    per_image = size[0] * size[1] * 3
    if n_train is not None and n_train * per_image < CACHE_LIMIT_BYTES:
        train = train.cache()
    if d.shuffle_buffer:
        buf = min(d.shuffle_buffer, n_train) if n_train else d.shuffle_buffer
        train = train.shuffle(max(1, buf), seed=t.seed, reshuffle_each_iteration=True)
    if t.steps_per_epoch:
        train = train.repeat()
    train = train.batch(d.batch_size)
    augment = batch_augment(t.seed) if d.augment else None

    def to_float(img: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.cast(img, tf.float32)
        if augment is not None:
            x = augment(x, training=True)
        return x, label

    train = train.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    if val is not None:
        if n_val is not None and n_val * per_image < CACHE_LIMIT_BYTES:
            val = val.cache()
        val = val.batch(d.batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y)).prefetch(tf.data.AUTOTUNE)
    steps = t.steps_per_epoch or (math.ceil(n_train / d.batch_size) if n_train else None)
    return Dataset(
        source=d.source,
        train=train,
        val=val,
        class_names=class_names,
        native_size=size,
        train_examples=n_train,
        val_examples=n_val,
        steps_per_epoch=steps,
        skipped=skipped,
    )


def batch_augment(seed: int) -> Callable[..., Any]:
    """Random horizontal flip, shift (up to 10%, reflected, whole pixels) and brightness (+-15%)
    per image of a float32 batch of 0..255 pixels, with plain TensorFlow ops on the whole batch.

    What :func:`make_augment` does, about twice as fast in tf.data (the Keras preprocessing
    layers cost more per batch than the pixels do; see docs/benchmarks.md).
    """
    import tensorflow as tf

    def augment(x: tf.Tensor, training: bool = True) -> tf.Tensor:
        shape = tf.shape(x)
        n, h, w = shape[0], shape[1], shape[2]
        x = tf.image.random_flip_left_right(x, seed=seed)
        dx = tf.round(tf.random.uniform([n], -0.1, 0.1, seed=seed + 1) * tf.cast(w, tf.float32))
        dy = tf.round(tf.random.uniform([n], -0.1, 0.1, seed=seed + 2) * tf.cast(h, tf.float32))
        one, zero = tf.ones([n]), tf.zeros([n])
        shift = tf.stack([one, zero, -dx, zero, one, -dy, zero, zero], axis=1)
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=shift, output_shape=shape[1:3], fill_value=0.0,
            interpolation="NEAREST", fill_mode="REFLECT",
        )
        delta = tf.random.uniform([n, 1, 1, 1], -0.15 * 255.0, 0.15 * 255.0, seed=seed + 3)
        return tf.clip_by_value(x + delta, 0.0, 255.0)

    return augment


def make_augment(seed: int) -> Any:
    """Random flip, shift and brightness on a float32 batch of 0..255 pixels."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomBrightness(0.15, value_range=(0.0, 255.0), seed=seed + 2),
        ],
        name="augment",
    )


def write_info(data: Dataset, paths: RunPaths, image_size: Sequence[int]) -> None:
    """Class names and the data facts inference needs (``native_size`` for ``--low-res``)."""
    write_json(paths.classes, data.class_names)
    write_json(
        paths.data_info,
        {
            "source": data.source,
            "num_classes": data.num_classes,
            "native_size": list(data.native_size),
            "image_size": list(image_size),
            "train_examples": data.train_examples,
            "val_examples": data.val_examples,
            "skipped": data.skipped,
        },
    )
