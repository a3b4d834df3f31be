"""Augmentation in the training step (tltui.worker.augment): the maths and draws the CPU pipeline
had, per image so replicas augment as one device, the same under XLA. Training through it is plain
Keras's ``fit`` on the augmented batches: ``test_augment_e2e.py``, with the real worker."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tensorflow as tf  # noqa: E402

from bench.pipeline import cpu_augmentation  # noqa: E402 - the reference: the CPU augmentation it replaced
from tltui.worker import augment, data  # noqa: E402

SEED, B = 7, 16


def batch(n: int = B, h: int = 20, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def draws(g: int, n: int = B, seed: int = SEED) -> tf.Tensor:
    return augment.batch_draws(tf.constant(g, tf.int64), n, seed)


@pytest.mark.parametrize("size", [(20, 24), (32, 32), (7, 5), (1, 9)])
def test_it_is_the_cpu_augmentation_it_replaced_bit_for_bit(size: tuple[int, int]) -> None:
    old = cpu_augmentation(SEED)
    for g, n in ((0, B), (5, B), (123, 3), (10**9, B)):
        x = batch(n=n, h=size[0], w=size[1])
        np.testing.assert_array_equal(augment.augment(x, draws(g, n)).numpy(), old(x, tf.constant(g, tf.int64)).numpy())


def test_a_slice_of_a_batch_is_augmented_as_in_the_whole_batch() -> None:
    """Each replica gets a slice of the images with their rows of draws: what one device does."""
    x, u = batch(), draws(3)
    whole = augment.augment(x, u).numpy()
    for lo, hi in ((0, 8), (8, 16), (5, 6), (3, 3)):
        np.testing.assert_array_equal(augment.augment(x[lo:hi], u[lo:hi]).numpy(), whole[lo:hi])
    assert not np.array_equal(draws(4).numpy(), u.numpy())  # the next batch
    assert not np.array_equal(draws(3, seed=SEED + 1).numpy(), u.numpy())  # another seed


def test_it_flips_shifts_and_brightens_each_image_on_its_own() -> None:
    x = batch(n=64).astype("float32")
    u = draws(0, 64, seed=3)
    y = augment.augment(x, u).numpy()
    assert y.dtype == np.float32 and y.shape == x.shape and y.min() >= 0.0 and y.max() <= 255.0
    assert sum(not np.allclose(a, b) for a, b in zip(x, y, strict=True)) > 48
    assert 10 < (u.numpy()[:, 0] < 0.5).sum() < 54  # about half are flipped


def test_xla_compiles_it_to_the_same_values() -> None:
    x, u = batch(), draws(9)
    jitted = tf.function(augment.augment, jit_compile=True)
    # the same pixels moved; XLA fuses the brightness arithmetic (float rounding, 1e-5 of a level)
    np.testing.assert_allclose(jitted(x, u).numpy(), augment.augment(x, u).numpy(), rtol=0, atol=1e-3)


def test_the_pipeline_draws_for_each_batch_of_the_run_and_stays_uint8() -> None:
    split = data.in_memory(batch(n=10), np.arange(10))
    ds = data.train_batches(split, batch_size=4, seed=SEED, shuffle=True, augment=True, start_epoch=2)
    (x, u), y = next(iter(ds))  # epoch 3's first batch is the run's 7th (3 per epoch)
    assert x.dtype == tf.uint8 and y.shape == (4,)
    np.testing.assert_array_equal(u.numpy(), draws(6, 4).numpy())


def test_padding_for_replicas_keeps_each_image_with_its_draws() -> None:
    """With train.gpus = N a partial batch is padded with copies of its images (weighted 0): their draws
    come along (checked end to end on 2 logical devices: the same weights as one device)."""
    from tltui.worker import replicas

    split = data.in_memory(batch(n=5), np.arange(5))
    stream = data.train_batches(split, batch_size=4, seed=SEED, shuffle=False, augment=True)
    (x, u), y, w = next(iter(replicas.train_batches(stream.skip(1), 2)))  # the last batch: 1 image, padded to 2
    assert x.shape[0] == u.shape[0] == y.shape[0] == 2 and w.numpy().tolist() == [2.0, 0.0]
    np.testing.assert_array_equal(u.numpy()[1], u.numpy()[0])
