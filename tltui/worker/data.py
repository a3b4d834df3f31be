"""tf.data pipelines for ``tfds:NAME`` and ``folder:PATH`` sources.

What training sees is what inference sees, and what a plain Keras loop would see:

- **Decoding.** Folder images are decoded by :func:`tltui.core.images.prepare`, the function
  ``tltui predict`` uses: Pillow, EXIF orientation applied, palette/CMYK/16-bit converted,
  resized to the pipeline's native size. Every file with an image extension is used or reported
  by name (``data.json`` counts them); files of other types are listed as ignored.
- **Size.** Images stay ``uint8`` at a native size through tf.data; the model resizes to
  ``image_size`` and preprocesses inside itself. For folders the native size is ``image_size``,
  unless every image has one and the same smaller size (CIFAR-like folders: that size, which
  ``predict --low-res`` reproduces); for TFDS it is the dataset's fixed size.
- **Epochs.** An epoch is exactly ``ceil(n / batch_size)`` batches (or ``train.steps_per_epoch``
  from an endless stream), and ``fit`` is always told so: the optimizer takes exactly
  ``epochs x steps`` steps. Shuffling is a function of ``(seed, epoch)`` (stateless random ops), not
  of how many iterators a process has made, so epoch k+1 of a resumed run sees what epoch k+1 of an
  uninterrupted run saw.
- **Augmentation** is not done here: with ``data.augment`` the training batches stay ``uint8`` and
  carry each image's four random draws, from ``(seed, the batch's index in the run)``, and the
  training step augments them on the accelerator (:mod:`tltui.worker.augment`): anew every epoch,
  the same in a resumed run.
- **Memory.** A folder's images are decoded once, in parallel, into the decoded cache
  (:mod:`tltui.worker.decoded`: one entry of all the folder's files, shared by every run on the
  folder whatever its seed, validation fraction or limits; a run picks its rows by index). A run
  copies its rows into its own memory (one copy: nothing else holds the pixels) when they fit its
  :class:`~tltui.core.memory.Budget` (``[cache] in_memory_fraction`` of the memory available),
  otherwise it reads them memory-mapped by the batch; both are fully reshuffled every epoch. A TFDS
  split over the budget is streamed from disk through a shuffle buffer (``data.shuffle_buffer``),
  whose order a resumed run does not reproduce (the trainer says so; unshuffled, it does).

The folder scan (:func:`scan_folder`, :func:`split_files`) needs no TensorFlow.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tltui.core import decoded_store, images, memory, preflight
from tltui.core.presets import Preset
from tltui.core.workspace import RunPaths, write_json
from tltui.worker import decoded, tfds_fetch
from tltui.worker.errors import WorkerError
from tltui.worker.progress import Emit, Reporter

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

#: File name endings treated as images: what ``tltui predict`` reads.
IMAGE_EXTS = images.IMAGE_EXTENSIONS
#: Salt that keeps the shuffle's random stream apart from the augmentation's (any fixed number).
SHUFFLE_SALT = 0x5EED
#: Epoch indices of the endless training stream (far more than any run trains).
EPOCH_LIMIT = 1 << 40

LogFn = Callable[[str, str], None]  # (level, message)


class DataError(WorkerError):
    """A data problem the user can fix (one line naming the source and what to do)."""


@dataclass(frozen=True)
class FolderScan:
    classes: list[str]
    files: list[tuple[str, int]]  # (path, class index), sorted
    ignored: list[str] = field(default_factory=list)  # files under the class folders that are not images


# --------------------------------------------------------------------------- folder scan (no TF)


def scan_folder(root: str | Path) -> FolderScan:
    """Class subfolders (sorted names) and their image files, searched recursively by the traversal
    ``tltui predict`` uses (:func:`tltui.core.images.walk_files`: hidden parts skipped, folder
    symlinks followed, each real folder read once)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.source: folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"data.source: folder {root} needs at least 2 class subfolders, found {len(classes)}")
    index = {name: label for label, name in enumerate(classes)}
    found: list[list[str]] = [[] for _ in classes]
    ignored: list[str] = []
    for parts, path in images.walk_files(root):  # sorted by relative path: class by class
        label = index.get(parts[0]) if len(parts) > 1 else None
        if label is None:
            continue  # a file at the top level
        (found[label] if images.is_image_name(parts[-1]) else ignored).append(str(path))
    files = [(f, label) for label, paths in enumerate(found) for f in paths]
    empty = [name for name, paths in zip(classes, found, strict=True) if not paths]
    if empty:
        real = {name: (root / name).resolve() for name in classes}
        links = [
            name
            for name in empty
            if (root / name).is_symlink() and any(real[name].is_relative_to(real[c]) for c in classes if c != name)
        ]
        why = f" ({', '.join(links)}: a symlink to a folder already read as another class)" if links else ""
        raise DataError(
            f"data.source: class folder(s) {', '.join(empty)} in {root} hold no images "
            f"({', '.join(sorted(IMAGE_EXTS))}){why}; add images or remove the folder"
        )
    return FolderScan(classes, files, ignored)


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


def native_size(sizes: Sequence[tuple[int, int]], image_size: Sequence[int]) -> tuple[int, int]:
    """The size folder images are kept at: ``image_size``, unless every image has one same size
    that fits inside it (then that size: no upscaled copies in memory, and ``predict --low-res``
    feeds exactly what training fed)."""
    h, w = int(image_size[0]), int(image_size[1])
    distinct = set(sizes)
    if len(distinct) == 1:
        ((sh, sw),) = distinct
        if sh <= h and sw <= w:
            return sh, sw
    return h, w


# --------------------------------------------------------------------------- splits


@dataclass
class Split:
    """One split's examples, in one of three forms:

    - ``images``: in memory, a numpy array ``[n, ...]`` (uint8 images, or float32 features for the
      feature cache), with ``labels``; read by the batch like a mapped split, so no TensorFlow
      constant (and no copy of it in tf.data's graph) ever holds the pixels;
    - ``mapped``: decoded images too large for memory, memory-mapped from the decoded cache
      (:mod:`tltui.worker.decoded`) and read by the batch;
    - ``stream``: a TFDS split too large for memory, an unbatched ``(uint8 image, int32 label)``
      dataset read from disk.
    """

    n: int
    labels: Any = None  # int32 numpy [n] (in memory and mapped)
    images: Any = None
    size: tuple[int, int] = (0, 0)
    stream: Any = None
    mapped: Any = None  # a memory-mapped uint8 [rows, h, w, 3] (the decoded cache), read by the batch
    rows: Any = None  # int64 numpy [n]: the rows of ``mapped`` this split's examples are
    entry: Any = None  # the decoded-cache entry ``mapped`` is read from, held while the split lives

    @property
    def indexed(self) -> bool:
        """Examples can be fetched by index (in memory or by path): exact per-epoch shuffles."""
        return self.stream is None


def in_memory(images_array: Any, labels: Any) -> Split:
    """A split held in memory: ``images_array`` as it is (a numpy array is not copied)."""
    import numpy as np

    labels = np.asarray(labels, dtype=np.int32)
    return Split(n=len(labels), labels=labels, images=np.asarray(images_array))


def _fetch(split: Split) -> Callable[[Any], tuple[Any, Any]]:
    """index batch -> (uint8 images, int32 labels), read from the numpy array (in memory or mapped):
    only the batch is copied (a mapped split pages in this batch's rows only)."""
    import numpy as np
    import tensorflow as tf

    labels = tf.constant(split.labels, dtype=tf.int32)
    if split.images is not None:
        array, rows = split.images, None
    elif split.mapped is not None:
        array, rows = split.mapped, np.asarray(split.rows, dtype=np.int64)
    else:
        raise ValueError("a split is in memory, memory-mapped or a stream")

    def read(idx: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array[idx if rows is None else rows[idx]])

    def fetch(idx: Any) -> tuple[Any, Any]:
        x = tf.numpy_function(read, [idx], tf.as_dtype(array.dtype), stateful=False)
        x.set_shape([None, *array.shape[1:]])
        return x, tf.gather(labels, idx)

    return fetch


def _seed(seed: int, salt: int) -> Any:
    import tensorflow as tf

    return tf.constant([seed, salt], dtype=tf.int64)


def _order(n: int, seed: int, shuffle: bool) -> Callable[[Any], Any]:
    """epoch (or pass) index -> the permutation of ``range(n)`` it uses."""
    import tensorflow as tf

    base = _seed(seed, SHUFFLE_SALT)

    def order(e: Any) -> Any:
        idx = tf.range(n, dtype=tf.int64)
        if not shuffle:
            return idx
        return tf.random.experimental.stateless_shuffle(idx, seed=tf.random.experimental.stateless_fold_in(base, e))

    return order


def train_batches(
    split: Split,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool,
    augment: bool,
    start_epoch: int = 0,
    steps_per_epoch: int | None = None,
    shuffle_buffer: int = 0,
) -> tf.data.Dataset:
    """The endless training stream from epoch ``start_epoch`` (0-based) on: ``(float32 images,
    labels)`` batches, or with ``augment`` ``((uint8 images, draws), labels)`` for
    :class:`tltui.worker.augment.AugmentInTraining` (draws: :func:`tltui.worker.augment.batch_draws`
    of the batch's index in the whole run).

    Without ``steps_per_epoch`` an epoch is one pass, ``ceil(n / batch_size)`` batches, the last
    one smaller, never mixed with the next epoch's. With it, passes follow one another and
    batches run across them (a stream), epoch k starting at batch ``k * steps_per_epoch``.
    Fit it with ``steps_per_epoch`` = :func:`steps_per_epoch` so Keras keeps one iterator.

    A split streamed from disk (not ``indexed``) starts epoch k at the same place in a pass as the
    uninterrupted stream does (it skips the examples read in the current pass); unshuffled, every pass
    reads the same order, so that is the same batches; through a shuffle buffer the pass's order differs.
    """
    import tensorflow as tf

    steps = steps_per_epoch or math.ceil(split.n / batch_size)
    first_batch = start_epoch * steps
    if split.indexed:
        order = _order(split.n, seed, shuffle)
        if steps_per_epoch is None:
            idx = tf.data.Dataset.range(start_epoch, EPOCH_LIMIT).flat_map(
                lambda e: tf.data.Dataset.from_tensor_slices(order(e)).batch(batch_size)
            )
        else:
            first_pass, offset = divmod(first_batch * batch_size, split.n)
            idx = (
                tf.data.Dataset.range(first_pass, EPOCH_LIMIT)
                .flat_map(lambda p: tf.data.Dataset.from_tensor_slices(order(p)))
                .skip(offset)
                .batch(batch_size)
            )
        fetch = _fetch(split)
        ds = idx.map(fetch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = split.stream
        if shuffle and shuffle_buffer:
            ds = ds.shuffle(max(1, min(shuffle_buffer, split.n)), seed=seed, reshuffle_each_iteration=True)
        if steps_per_epoch is None:
            ds = ds.batch(batch_size).repeat()
        else:  # resumed: on from where epoch k starts in its pass (skipping whole passes would re-read them)
            ds = ds.repeat().skip(first_batch * batch_size % max(1, split.n)).batch(batch_size)
    if augment:  # the pixels stay uint8: the training step augments them where it runs
        from tltui.worker.augment import batch_draws

        def with_draws(g: Any, batch: Any) -> tuple[Any, Any]:
            img, label = batch
            return (img, batch_draws(g, tf.shape(img)[0], seed)), label

        ds = tf.data.Dataset.zip(tf.data.Dataset.counter(first_batch), ds).map(with_draws)
    else:
        ds = ds.map(
            lambda img, label: (tf.cast(img, tf.float32), label),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_batches(split: Split, batch_size: int) -> tf.data.Dataset:
    """One pass in a fixed order, float32 batches (validation, test, feature extraction)."""
    import tensorflow as tf

    if split.indexed:
        idx = tf.data.Dataset.range(split.n).batch(batch_size)
        ds = idx.map(_fetch(split), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = split.stream.batch(batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    return ds.apply(tf.data.experimental.assert_cardinality(math.ceil(split.n / batch_size))).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- datasets


@dataclass
class Dataset:
    """What training needs from the data, whichever the source."""

    source: str
    class_names: list[str]
    native_size: tuple[int, int]
    train: Split
    val: Split | None
    test: Split | None
    batch_size: int
    seed: int
    shuffle: bool
    shuffle_buffer: int
    augment: bool
    fixed_steps: int | None = None  # train.steps_per_epoch
    report: dict[str, Any] = field(default_factory=dict)  # what data.json records about the files

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_examples(self) -> int:
        return self.train.n

    @property
    def val_examples(self) -> int | None:
        return self.val.n if self.val is not None else None

    @property
    def test_examples(self) -> int | None:
        return self.test.n if self.test is not None else None

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.train.n, self.batch_size, self.fixed_steps)

    @property
    def exact_resume(self) -> bool:
        """A resumed run sees the same batches as an uninterrupted one: always for a split in memory or
        memory-mapped; for one streamed from disk only unshuffled (``data.shuffle_buffer = 0``: every
        pass reads the files in one order), not through a shuffle buffer."""
        return self.train.indexed or not self.shuffle

    def train_batches(self, start_epoch: int = 0, augment: bool | None = None) -> tf.data.Dataset:
        return train_batches(
            self.train,
            batch_size=self.batch_size,
            seed=self.seed,
            shuffle=self.shuffle,
            augment=self.augment if augment is None else augment,
            start_epoch=start_epoch,
            steps_per_epoch=self.fixed_steps,
            shuffle_buffer=self.shuffle_buffer,
        )

    def eval_batches(self, split: Split | None) -> tf.data.Dataset | None:
        return eval_batches(split, self.batch_size) if split is not None else None


def steps_per_epoch(n: int, batch_size: int, fixed: int | None = None) -> int:
    return fixed or max(1, math.ceil(n / batch_size))


def load(
    preset: Preset,
    log: LogFn | None = None,
    emit: Emit | None = None,
    stop: Callable[[], bool] | None = None,
    *,
    decoded_cache: Path | None = None,
    decoded_limit_bytes: float = decoded_store.DEFAULT_LIMIT_GB * 1e9,
    budget: memory.Budget | None = None,
) -> Dataset:
    """Read the splits the preset describes. A folder's images are decoded once into the decoded
    cache ``decoded_cache`` (:mod:`tltui.worker.decoded`; a temporary one when ``None``) and read
    from it, in memory when they fit ``budget`` (``None``: the default share of the
    memory available now); a TFDS dataset not yet in ``data_dir`` is downloaded and prepared first
    (``data.download``). ``emit`` gets :class:`~tltui.core.protocol.Progress` events of the long
    steps, ``stop`` is polled while waiting for another run."""
    log = log or (lambda level, message: None)
    stop = stop or (lambda: False)
    if budget is None:
        from tltui.core.settings import CacheSettings

        budget = memory.budget(CacheSettings().in_memory_fraction)
    if preset.data.kind == "folder":
        private = decoded_cache is None
        if decoded_cache is None:  # this process's own, deleted when it exits
            import atexit
            import shutil
            import tempfile

            decoded_cache = Path(tempfile.mkdtemp(prefix="tltui-decoded-"))
            atexit.register(shutil.rmtree, decoded_cache, True)
        return _load_folder(preset, log, emit, stop, decoded_cache, decoded_limit_bytes, budget, private=private)
    return _load_tfds(preset, log, emit, stop, budget)


def _dataset(preset: Preset, **kw: Any) -> Dataset:
    d, t = preset.data, preset.train
    return Dataset(
        batch_size=d.batch_size,
        seed=t.seed,
        shuffle=d.shuffle_buffer > 0,
        shuffle_buffer=d.shuffle_buffer,
        augment=d.augment,
        fixed_steps=t.steps_per_epoch,
        **kw,
    )


def _load_folder(
    preset: Preset,
    log: LogFn,
    emit: Emit | None,
    stop: Callable[[], bool],
    cache_root: Path,
    limit_bytes: float,
    budget: memory.Budget,
    *,
    private: bool = False,
) -> Dataset:
    """The run's splits, picked by index from the decoded-cache entry of the whole folder (one
    entry whatever the seed, validation fraction or limits): the same images, in the same order and
    at the same native size, as decoding the run's own files would give."""
    import numpy as np

    d, seed = preset.data, preset.train.seed
    scan = scan_folder(d.target)
    if scan.ignored:
        shown = ", ".join(scan.ignored[:5]) + (f" and {len(scan.ignored) - 5} more" if len(scan.ignored) > 5 else "")
        log(
            "warning",
            f"ignoring {len(scan.ignored)} file(s) that are not images ({', '.join(sorted(IMAGE_EXTS))}): {shown}",
        )
    all_train, all_val = split_files(scan.files, d.validation_fraction, seed)
    train_files = limit(all_train, d.train_limit, seed)
    val_files = limit(all_val, d.val_limit, seed + 1)
    used = train_files + val_files
    n = len(scan.files)

    def waiting() -> None:
        log("info", f"waiting: another run is decoding the same {n} images into {cache_root}")
        if emit is not None:
            Reporter(emit, "wait", None, message="waiting for another run decoding the same images").update(
                0, force=True
            )

    def get(at: tuple[int, int] | None, sizes: Any = None) -> decoded_store.Entry:
        decoding = Reporter(emit, "decode", n, "items", f"decoding {n} images") if emit else None
        return decoded.get(
            cache_root,
            scan.files,
            d.image_size,
            native=lambda s: native_size(s, d.image_size),
            at=at,
            sizes=sizes,
            limit_bytes=limit_bytes,
            source=d.source,
            folder=str(Path(d.target).resolve()),
            progress=decoding,
            on_wait=waiting,
            stop=stop,
        )

    def rescan() -> Sequence[tuple[str, int]]:
        return scan_folder(d.target).files

    entry = get(None)
    built = not entry.hit
    row_of = {p: i for i, (p, _) in enumerate(scan.files)}
    sizes = entry.sizes
    # the native size the run's own files choose, as before the entry was shared: a limit may pick
    # files that all share one small size, while the folder's do not (then an entry at that size)
    want = native_size([s for s in (sizes[row_of[p]] for p, _ in used) if s is not None], d.image_size)
    if want != entry.native_size:
        other = get(want, sizes)
        entry.release()
        entry = other
        built = built or not entry.hit
    if built:  # the folder changed (or is new): its older entries go, unless a run holds them
        decoded.drop_stale(cache_root, entry, rescan)
    if entry.hit:
        log("info", f"{len(used)} decoded images read from the cache ({entry.path})")
    size = entry.native_size
    why = dict(entry.bad)
    bad = [(p, why[p]) for p, _ in used if p in why]
    if bad:
        shown = "; ".join(f"{p} ({reason})" for p, reason in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        log("warning", f"skipping {len(bad)} unreadable image(s): {shown}{more}")

    def rows_of(files: Sequence[tuple[str, int]]) -> tuple[Any, Any]:
        """The entry's rows of ``files`` that decoded, in the files' order, and their labels."""
        kept = [(row_of[p], label) for p, label in files if p not in why]
        rows, labels = zip(*kept, strict=True) if kept else ((), ())
        return np.asarray(rows, dtype=np.int64), np.asarray(labels, dtype=np.int32)

    train_rows, train_labels = rows_of(train_files)
    val_rows, val_labels = rows_of(val_files)
    if not len(train_rows):
        entry.release()
        raise DataError(f"data.source: no readable training images in {d.target}")
    wanted = (len(train_rows) + len(val_rows)) * size[0] * size[1] * 3
    keep = budget.fits(wanted)
    log("info", budget.why(wanted))
    mapped = entry.images

    def split_of(rows: Any, labels: Any) -> Split | None:
        if not len(rows):
            return None
        if keep:  # fits the budget: the one copy the run holds (numpy's gather; tf reads it by the batch)
            return in_memory(np.take(mapped, rows, axis=0), labels)
        return Split(n=len(rows), labels=labels, mapped=mapped, rows=rows, size=size, entry=entry)

    try:
        train = split_of(train_rows, train_labels)
        val = split_of(val_rows, val_labels)
    finally:
        if keep:  # copied: the entry may go now; a mapped split holds it as long as it lives
            entry.release()
    assert train is not None
    split = "\n".join(p for p, _ in val_files) + "\0" + "\n".join(p for p, _ in train_files)
    report = {
        "files_found": len(scan.files),
        # what each split holds: a resume after the folder changed says so (the split is not the earlier one)
        "split_digest": hashlib.sha1(split.encode()).hexdigest()[:16],
        "skipped": [{"path": p, "reason": reason} for p, reason in bad],
        "not_used": len(scan.files) - len(used),  # left out by data.train_limit / data.val_limit
        "ignored_files": scan.ignored,
        "in_memory": keep,
        "memory": _memory_report(budget, wanted),
        "decoded_cache": None if private else {"path": str(entry.path), "hit": entry.hit},
    }
    return _dataset(
        preset,
        source=d.source,
        class_names=scan.classes,
        native_size=size,
        train=train,
        val=val,
        test=None,
        report=report,
    )


def tfds_data_dir(preset: Preset) -> str:
    return str(preflight.tfds_data_dir(preset.data.data_dir))


def _load_tfds(
    preset: Preset, log: LogFn, emit: Emit | None, stop: Callable[[], bool], budget: memory.Budget
) -> Dataset:
    import tensorflow as tf
    import tensorflow_datasets as tfds

    d = preset.data
    name = d.target
    data_dir = tfds_data_dir(preset)
    try:
        tfds_fetch.ensure_prepared(name, data_dir, download=d.download, emit=emit, log=log, stop=stop)
    except tfds_fetch.FetchError as e:
        raise DataError(str(e)) from e
    wanted = [("data.train_split", d.train_split), ("data.val_split", d.val_split), ("data.test_split", d.test_split)]
    wanted = [(f, s) for f, s in wanted if s]

    def load(fields: list[tuple[str, str]], shuffle_files: bool) -> tuple[list[Any], Any]:
        if not fields:
            return [], None
        return tfds.load(  # type: ignore[no-any-return]
            name,
            split=[s for _, s in fields],
            data_dir=data_dir,
            download=False,
            as_supervised=True,
            with_info=True,
            shuffle_files=shuffle_files,
            read_config=tfds.ReadConfig(shuffle_seed=preset.train.seed),
        )

    try:
        # The training split's files in a new order every pass when it is shuffled (0: no shuffling, every
        # pass reads one order); validation and test always in the files' order, so that a split streamed
        # from disk with a limit (data.val_limit) is the same images at every epoch.
        training = [w for w in wanted if w[0] == "data.train_split"]
        evaluation = [w for w in wanted if w[0] != "data.train_split"]
        loaded_train, info = load(training, d.shuffle_buffer > 0)
        loaded_eval, eval_info = load(evaluation, False)
        info = info or eval_info
        by_field = dict(zip([f for f, _ in training + evaluation], [*loaded_train, *loaded_eval], strict=True))
        loaded = [by_field[f] for f, _ in wanted]
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(f'data.source = "tfds:{name}": unknown TFDS dataset ({str(e).splitlines()[0][:120]})') from e
    except (AssertionError, FileNotFoundError) as e:
        raise DataError(tfds_fetch.not_prepared(name, data_dir, "its files are missing")) from e
    except ValueError as e:
        if "supervised" in str(e):
            raise DataError(f'data.source = "tfds:{name}": the dataset has no (image, label) supervised keys') from e
        raise DataError(_bad_split(name, data_dir, wanted, e)) from e
    image_key, label_key = info.supervised_keys
    class_names = list(getattr(info.features[label_key], "names", None) or [])
    if not class_names:
        raise DataError(f'data.source = "tfds:{name}": label {label_key!r} is not a class label')
    shape = info.features[image_key].shape
    fixed = bool(shape[0] and shape[1])
    size = (int(shape[0]), int(shape[1])) if fixed else (int(d.image_size[0]), int(d.image_size[1]))
    channels = shape[2] if len(shape) > 2 else 3

    def prepare(img: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if channels == 1:
            img = tf.image.grayscale_to_rgb(img)
        if not fixed:
            img.set_shape([None, None, 3])
            img = tf.image.resize(img, size, antialias=True)
            img = tf.clip_by_value(tf.round(img), 0, 255)
        return tf.cast(img, tf.uint8), tf.cast(label, tf.int32)

    limits = {"data.train_split": d.train_limit, "data.val_split": d.val_limit, "data.test_split": d.test_limit}
    per_image = size[0] * size[1] * 3
    room, wanted_bytes = budget.bytes, 0
    splits: dict[str, Split] = {}
    for (fname, split_name), ds in zip(wanted, loaded, strict=True):
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        n = _split_examples(info, split_name, ds)
        if limit := limits[fname]:
            ds = ds.take(limit)
            n = min(n, limit) if n is not None else None
        if n is None:
            raise DataError(
                f'{fname} = "{split_name}": tfds:{name} does not say how many examples it has; '
                f"set a limit ({fname.replace('_split', '_limit')})"
            )
        wanted_bytes += n * per_image
        if n * per_image <= room:
            room -= n * per_image
            reading = (
                Reporter(emit, "decode", n, "items", f"reading {split_name} of tfds:{name} into memory")
                if emit
                else None
            )
            xs, ys = _read_into_memory(ds, n, (*size, 3), reading)
            if not len(ys):
                raise DataError(f'{fname} = "{split_name}": tfds:{name} has no examples in it')
            splits[fname] = in_memory(xs, ys)
        else:
            log(
                "info",
                f'{fname} = "{split_name}": {n} images ({n * per_image / 1e9:.2f} GB) do not fit the in-memory budget '
                f"({room / 1e9:.2f} GB of it left: [cache] in_memory_fraction); read from disk each epoch",
            )
            splits[fname] = Split(n=n, stream=ds, size=size)
    return _dataset(
        preset,
        source=d.source,
        class_names=class_names,
        native_size=size,
        train=splits["data.train_split"],
        val=splits.get("data.val_split"),
        test=splits.get("data.test_split"),
        report={"in_memory": all(s.indexed for s in splits.values()), "memory": _memory_report(budget, wanted_bytes)},
    )


def _read_into_memory(ds: Any, n: int, shape: tuple[int, ...], reading: Reporter | None) -> tuple[Any, Any]:
    """A split's ``(uint8 images, labels)`` read into one array of ``n`` rows (filled as read: no
    second copy), fewer when the split holds fewer; more are appended if its metadata undercounted."""
    import numpy as np

    xs = np.empty((n, *shape), np.uint8)
    ys = np.empty((n,), np.int32)
    extra: list[tuple[Any, Any]] = []
    filled = 0
    for x, y in ds.batch(1024).as_numpy_iterator():
        take = min(len(y), n - filled)
        xs[filled : filled + take], ys[filled : filled + take] = x[:take], y[:take]
        filled += take
        if take < len(y):
            extra.append((x[take:], y[take:]))
        if reading is not None:
            reading.advance(len(y))
    if reading is not None:
        reading.finish()
    if extra:
        return np.concatenate([xs, *(x for x, _ in extra)]), np.concatenate([ys, *(y for _, y in extra)])
    return xs[:filled], ys[:filled]


def _memory_report(budget: memory.Budget, wanted: int) -> dict[str, Any]:
    """What ``data.json`` records of the in-memory decision (bytes)."""
    return {"images_bytes": int(wanted), "budget_bytes": budget.bytes, "available_bytes": budget.available}


def _bad_split(name: str, data_dir: str, wanted: list[tuple[str, str]], e: ValueError) -> str:
    """Which of the preset's splits the dataset does not have, and the splits it has."""
    have: list[str] = []
    try:
        import tensorflow_datasets as tfds

        have = sorted(tfds.builder(name, data_dir=data_dir).info.splits)
    except Exception:  # noqa: BLE001 - the message is still useful without the list
        pass
    detail = str(e).splitlines()[0][:160]
    if have:
        missing = [(f, s) for f, s in wanted if s.split("[")[0] not in have]
        if missing:
            f, s = missing[0]
            hint = ' or "" for none' if f == "data.test_split" else ""
            return f'{f} = "{s}": tfds:{name} has no such split (it has: {", ".join(have)}); use one of them{hint}'
    return f'data.source = "tfds:{name}": {detail} (check data.train_split / val_split / test_split)'


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


def write_info(data: Dataset, paths: RunPaths, image_size: Sequence[int]) -> None:
    """Class names and the data facts inference needs (``native_size`` for ``--low-res``), and the
    file accounting: ``files_found`` = ``train_examples`` + ``val_examples`` + skipped + ``not_used``."""
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
            "test_examples": data.test_examples,
            **data.report,
        },
    )
