"""EpochScalars (tltui/worker/scalars.py): the epoch scalars TensorBoard shows, without a per-batch hook."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tltui.worker.scalars import EpochScalars  # noqa: E402


def _model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    m = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization(), keras.layers.Dense(2)]
    )
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    return m


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    return rng.randn(32, 4).astype("float32"), rng.randint(0, 2, 32)


def test_epoch_scalars_writes_what_tensorboard_shows(tmp_path: Path) -> None:
    import tensorflow as tf

    x, y = _data()
    m = _model(0)
    m.fit(x, y, validation_data=(x, y), epochs=2, batch_size=8, verbose=0, callbacks=[EpochScalars(tmp_path)])
    tags: dict[str, list[tuple[str, int]]] = {}
    for sub in ("train", "validation"):
        for f in (tmp_path / sub).glob("events.out.tfevents.*"):
            for ev in tf.compat.v1.train.summary_iterator(str(f)):
                tags.setdefault(sub, []).extend((v.tag, ev.step) for v in ev.summary.value)
    assert {("epoch_loss", 0), ("epoch_loss", 1), ("epoch_learning_rate", 1)} <= set(tags["train"])
    assert {("epoch_loss", 0), ("epoch_loss", 1)} <= set(tags["validation"])
