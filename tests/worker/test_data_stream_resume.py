"""A TFDS split streamed from disk (over the in-memory budget): what a resumed run's epoch reads.

A small local TFDS dataset of several shards (image i carries i in its first pixel) is loaded as a
run does, with nothing fitting in memory; a pipeline started at epoch 1 (a resume) is compared with
the uninterrupted one's epoch 2. No model is involved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from tltui.core import memory, presets  # noqa: E402
from tltui.worker import data  # noqa: E402

NAME = "tltui_test_stream_shards"
N, BATCH = 120, 8


class StreamShards(tfds.core.GeneratorBasedBuilder):
    name = NAME
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):  # type: ignore[no-untyped-def]
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=(8, 8, 3)), "label": tfds.features.ClassLabel(num_classes=3)}
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):  # type: ignore[no-untyped-def]
        return {"train": self._generate_examples()}

    def _generate_examples(self):  # type: ignore[no-untyped-def]
        for i in range(N):
            img = np.zeros((8, 8, 3), np.uint8)
            img[0, 0, 0] = i
            yield i, {"image": img, "label": i % 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tfds")
    builder = StreamShards(data_dir=str(root))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=4))
    assert builder.info.splits["train"].num_shards == 4
    return root


def load(data_dir: Path, shuffle_buffer: int, steps: int | None = None, **extra: object) -> data.Dataset:
    preset = presets.from_dict(
        {
            "name": "s",
            "data": {
                "source": f"tfds:{NAME}",
                "data_dir": str(data_dir),
                "image_size": [8, 8],
                "batch_size": BATCH,
                "train_split": "train",
                "val_split": "",
                "test_split": "",
                "shuffle_buffer": shuffle_buffer,
                "augment": False,
                "download": False,
                **extra,
            },
            "model": {"backbone": "tiny_cnn", "weights": "none"},
            "train": {"epochs": 4, "steps_per_epoch": steps},
        }
    )
    return data.load(preset, budget=memory.Budget(0.0, 1))  # nothing fits: the splits stream from disk


def epochs(data_dir: Path, shuffle_buffer: int, steps: int | None, start: int, count: int) -> tuple[bool, list]:
    """Epochs ``start`` .. ``start + count - 1`` (0-based) of a freshly loaded run's training stream, as
    sorted-per-batch image ids; and whether the dataset claims an exact resume."""
    ds = load(data_dir, shuffle_buffer, steps)
    assert not ds.train.indexed
    spe = ds.steps_per_epoch
    batches = [x.numpy()[:, 0, 0, 0].astype(int).tolist() for x, _ in ds.train_batches(start).take(count * spe)]
    return ds.exact_resume, [batches[e * spe : (e + 1) * spe] for e in range(count)]


@pytest.mark.parametrize("steps", [None, 4], ids=["epoch=one pass", "steps_per_epoch"])
def test_an_unshuffled_stream_resumes_exactly(data_dir: Path, steps: int | None) -> None:
    """``data.shuffle_buffer = 0``: no file shuffling either, so every pass reads one order; with
    ``train.steps_per_epoch`` the resumed stream starts where epoch 2 starts, not at the split's start."""
    exact, (first, second) = epochs(data_dir, 0, steps, 0, 2)
    resumed_exact, (resumed,) = epochs(data_dir, 0, steps, 1, 1)
    assert exact and resumed_exact
    assert resumed == second
    if steps:
        assert not set(sum(first, [])) & set(sum(resumed, []))  # not epoch 1's images again
    else:
        assert first == second  # unshuffled: one order every pass


def test_a_shuffled_stream_says_its_resume_is_not_exact_and_does_not_reread_epoch_1(data_dir: Path) -> None:
    exact, (first,) = epochs(data_dir, 16, 4, 0, 1)
    resumed_exact, (resumed,) = epochs(data_dir, 16, 4, 1, 1)
    assert not exact and not resumed_exact
    assert not set(sum(first, [])) & set(sum(resumed, []))  # 4 x 8 of 120: epoch 2 is further into the pass


def test_a_limited_validation_split_streamed_from_disk_is_the_same_images_every_epoch(data_dir: Path) -> None:
    """Training shuffles its files (shuffle_buffer > 0); validation is read in the files' order, so its
    limit takes the same images at every epoch (else each epoch's val_acc was measured on others)."""
    ds = load(data_dir, 16, val_split="train[50%:]", val_limit=20)
    assert ds.val is not None and not ds.val.indexed
    passes = [sorted(int(i) for x, _ in ds.eval_batches(ds.val) for i in x.numpy()[:, 0, 0, 0]) for _ in range(3)]
    assert passes[0] == passes[1] == passes[2] and len(passes[0]) == 20
