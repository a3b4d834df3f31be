"""EpochScalars (tltui/worker/scalars.py): the epoch scalars TensorBoard shows, without a per-batch hook."""

from __future__ import annotations

from pathlib import Path

import pytest

keras = pytest.importorskip("keras")

from tests.worker.tiny_keras import tiny_data, tiny_model  # noqa: E402
from tltui.worker.scalars import EpochScalars  # noqa: E402


def test_epoch_scalars_writes_what_tensorboard_shows(tmp_path: Path) -> None:
    import tensorflow as tf

    x, y = tiny_data()
    m = tiny_model(0)
    m.fit(x, y, validation_data=(x, y), epochs=2, batch_size=8, verbose=0, callbacks=[EpochScalars(tmp_path)])
    tags: dict[str, list[tuple[str, int]]] = {}
    for sub in ("train", "validation"):
        for f in (tmp_path / sub).glob("events.out.tfevents.*"):
            for ev in tf.compat.v1.train.summary_iterator(str(f)):
                tags.setdefault(sub, []).extend((v.tag, ev.step) for v in ev.summary.value)
    assert {("epoch_loss", 0), ("epoch_loss", 1), ("epoch_learning_rate", 1)} <= set(tags["train"])
    assert {("epoch_loss", 0), ("epoch_loss", 1)} <= set(tags["validation"])
