"""The tiny Keras model and data the worker's callback tests train (Dense, BatchNorm, Dense on 32 rows
of 4 features, 2 classes): a few milliseconds per fit. Import after ``pytest.importorskip("keras")``."""

from __future__ import annotations

import keras
import numpy as np


def tiny_model(seed: int, learning_rate: float = 0.01) -> keras.Model:
    keras.utils.set_random_seed(seed)
    m = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization(), keras.layers.Dense(2)]
    )
    m.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
    return m


def tiny_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    return rng.randn(32, 4).astype("float32"), rng.randint(0, 2, 32)
