"""Does the exported artifact still compute what the run's Keras model computes? Measured on the run's data.

The artifact (through its own runtime) and the Keras model are run batch by batch on the very same
uint8 images of each held-out split (validation, and test when the run has one; a run without
either: :data:`TRAIN_CHECK_IMAGES` of its training images, and a note says so). Each split gives a
:class:`~tltui.core.export_records.SplitCheck`: top-1 and top-5 of both, their agreement and the
largest probability difference. :func:`draw` also picks the int8 calibration images: the run's own
training images, drawn with its seed. Splits are :class:`tltui.worker.data.Split` in any of their
forms (in memory, memory-mapped, a stream).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tltui.core.export_records import SplitCheck
from tltui.core.presets import Preset
from tltui.core.protocol import top_k_na

#: Images per batch when verifying (both the Keras model and the artifact see the same batch).
BATCH = 64
#: Without a validation or test split, the export is verified on this many training images.
TRAIN_CHECK_IMAGES = 1000
#: The Keras model's measured top-1 may differ from what the run recorded by this much (rounding
#: of a float32 mean) before a note says the data changed since training.
RECORDED_TOLERANCE = 1e-4


class ShapeMismatch(Exception):
    """The artifact returned another shape than the Keras model (the message says both)."""


def uint8_batches(split: Any, batch: int) -> Iterator[tuple[Any, Any]]:
    """A split's (uint8 images [B, H, W, 3], int labels [B]) in its order, whatever its form
    (:class:`tltui.worker.data.Split`: in memory, memory-mapped, or a stream)."""
    import numpy as np

    if split.images is not None:
        images = np.asarray(split.images)
        for i in range(0, split.n, batch):
            yield images[i : i + batch], split.labels[i : i + batch]
    elif split.mapped is not None:
        rows = np.asarray(split.rows)
        for i in range(0, split.n, batch):
            yield np.ascontiguousarray(split.mapped[rows[i : i + batch]]), split.labels[i : i + batch]
    else:
        yield from split.stream.batch(batch).as_numpy_iterator()


def draw(split: Any, count: int, seed: int) -> tuple[Any, Any]:
    """``count`` of a split's images (all when it has fewer) and their labels, drawn with ``seed``:
    the same ones every time for the same run."""
    import numpy as np

    k = min(count, split.n)
    if split.images is not None or split.mapped is not None:
        idx = np.sort(np.random.default_rng(seed).choice(split.n, size=k, replace=False))
        if split.images is not None:
            return np.asarray(split.images)[idx], split.labels[idx]
        return np.ascontiguousarray(split.mapped[np.asarray(split.rows)[idx]]), split.labels[idx]
    # a split too large for memory: the first k of a shuffle seeded the same way
    pairs = list(split.stream.shuffle(min(split.n, 10_000), seed=seed).take(k).as_numpy_iterator())
    return np.stack([x for x, _ in pairs]), np.asarray([y for _, y in pairs])


class Tally:
    """Top-1/top-5 of both models, their agreement and largest probability difference over batches."""

    def __init__(self, num_classes: int) -> None:
        self.top5 = top_k_na(num_classes) is None
        self.n = 0
        self.keras1 = self.export1 = self.keras5 = self.export5 = self.agree = 0
        self.max_diff = 0.0

    def add(self, labels: Any, keras: Any, export: Any) -> None:
        import numpy as np

        labels = np.asarray(labels).reshape(-1, 1)
        k_top, e_top = np.argsort(-keras, axis=1, kind="stable"), np.argsort(-export, axis=1, kind="stable")
        self.n += len(labels)
        self.keras1 += int((k_top[:, :1] == labels).sum())
        self.export1 += int((e_top[:, :1] == labels).sum())
        self.keras5 += int((k_top[:, :5] == labels).any(axis=1).sum())
        self.export5 += int((e_top[:, :5] == labels).any(axis=1).sum())
        self.agree += int((k_top[:, 0] == e_top[:, 0]).sum())
        self.max_diff = max(self.max_diff, float(np.abs(keras - export).max(initial=0.0)))

    def check(self, split: str, name: str) -> SplitCheck:
        n = max(self.n, 1)
        return SplitCheck(
            split=split,
            name=name,
            images=self.n,
            keras_top1=self.keras1 / n,
            export_top1=self.export1 / n,
            agreement=self.agree / n,
            max_abs_diff=self.max_diff,
            keras_top5=self.keras5 / n if self.top5 else None,
            export_top5=self.export5 / n if self.top5 else None,
        )


def held_out(dataset: Any, preset: Preset) -> tuple[list[tuple[str, str, Any]], list[str]]:
    """``(split, name, data)`` of each split to verify on, and the notes that go with them."""
    d = preset.data
    splits: list[tuple[str, str, Any]] = []
    if dataset.val is not None:
        splits.append(("validation", "validation" if d.kind == "folder" else d.val_split, dataset.val))
    if dataset.test is not None:
        splits.append(("test", d.test_split, dataset.test))
    if splits:
        return splits, []
    images, labels = draw(dataset.train, TRAIN_CHECK_IMAGES, preset.train.seed + 1)
    return [("train", "train", InMemory(images, labels))], [
        f"no validation or test split: verified on {len(labels)} training images"
    ]


def compare(
    model: Any, runner: Callable[[Any], Any], splits: list[tuple[str, str, Any]], num_classes: int, progress: Any
) -> list[SplitCheck]:
    """The Keras model (``predict_on_batch`` on float32 pixels) and the artifact (``runner`` on the uint8
    batch) on each split; ``progress(step, message, done, total)`` after each batch."""
    import numpy as np

    total = sum(s.n for _, _, s in splits)
    done = 0
    checks = []
    for split, name, data in splits:
        tally = Tally(num_classes)
        progress("verify", f"verifying on {data.n} {split} images", done, total)
        for images, labels in uint8_batches(data, BATCH):
            keras_probs = np.asarray(model.predict_on_batch(images.astype(np.float32)), dtype=np.float32)
            export_probs = np.asarray(runner(np.ascontiguousarray(images, dtype=np.uint8)), dtype=np.float32)
            if export_probs.shape != keras_probs.shape:
                raise ShapeMismatch(
                    f"the artifact returned shape {export_probs.shape}, the Keras model {keras_probs.shape}"
                )
            tally.add(labels, keras_probs, export_probs)
            done += len(labels)
            progress("verify", f"verifying on {data.n} {split} images", done, total)
        checks.append(tally.check(split, name))
    return checks


def data_changed(check: SplitCheck, kept: dict[str, Any] | None) -> str | None:
    """A note when the Keras model's top-1 on the validation split now is not what the run recorded
    for its kept epoch (the folder changed since training), else ``None``."""
    recorded = kept.get("val_acc") if kept else None
    if check.split != "validation" or kept is None or recorded is None:
        return None
    if abs(check.keras_top1 - recorded) <= RECORDED_TOLERANCE:
        return None
    return (
        f"the Keras model scores {100 * check.keras_top1:.2f}% on the validation split now; the run recorded "
        f"{100 * recorded:.2f}% at epoch {kept['epoch']}: has the data changed since training?"
    )


class InMemory:
    """A few training images as a split (the verification of a run without a held-out split)."""

    def __init__(self, images: Any, labels: Any) -> None:
        self.images, self.labels, self.n = images, labels, len(labels)
        self.mapped = self.stream = None
