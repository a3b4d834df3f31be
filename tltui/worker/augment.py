"""Random augmentation in the training step, on the accelerator: flip, shift and brightness per image.

The input pipeline (:mod:`tltui.worker.data`) only picks, batches and prefetches ``uint8`` images.
With ``data.augment`` each training batch comes as ``((images, draws), labels)``: four uniform
numbers per image (:func:`batch_draws`: flip, x shift, y shift, brightness), drawn on the CPU by
stateless Philox seeded by ``(train.seed, g)``, ``g`` the batch's index in the whole run: 128
numbers per batch of 32, nothing next to the pixels. :class:`AugmentInTraining` is what ``fit``
trains then: a model around the classifier whose training step applies :func:`augment` where the
step runs (the GPU) and trains the classifier on the result; its evaluation and prediction are the
classifier's own, untouched.

**The draws** are a function of the seed and the batch index alone, so every epoch draws anew
(``g`` keeps growing), a resumed run draws what the uninterrupted run drew (its pipeline restarts
``g`` where the run left off), and the replicas of a multi-GPU step, each holding a slice of the
batch with its rows of draws, augment as one device would. They are drawn in tf.data rather than in
the step because TensorFlow's stateless generators give other numbers under XLA than without.

**The maths** is the CPU pipeline's before it moved here (``bench/pipeline.py`` keeps that one, the
reference the tests compare with, bit for bit, draws included): a horizontal flip with probability
1/2; a shift by whole pixels, up to 10 % of the side each way, reflected at the edges (``d c b a |
a b c d``, as ``ImageProjectiveTransformV3`` with ``NEAREST``/``REFLECT`` did; here two gathers,
which XLA compiles); brightness ``+-15 %`` of 255; clipped to 0..255. It acts on the native-size
image before the model's ``Resizing``, as before.

**What is saved.** ``model.keras`` (and every checkpoint) is the classifier alone: this wrapper is
built per phase for ``fit`` and never saved, so the saved model loads with plain
``keras.models.load_model`` in a process that never imported tltui and predicts exactly what it
would without augmentation (which only ever ran in training). The wrapper's ``weights`` are the
classifier's, in the classifier's order, and it trains with the classifier's optimizer: the backup,
early stopping, the kept epoch and ``model.keras`` see the classifier's state.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

#: Salt that keeps the augmentation's random stream apart from the shuffle's (any fixed number).
SALT = 0xA06
#: Largest shift, a fraction of the image's side each way; brightness delta, a fraction of 255.
SHIFT, BRIGHTNESS = 0.1, 0.15


def batch_draws(g: Any, n: Any, seed: int) -> tf.Tensor:
    """``[n, 4]`` uniform numbers in [0, 1) for the ``n`` images of batch ``g`` of the run: flip, x
    shift, y shift, brightness. Philox, named: the numbers the CPU pipeline drew."""
    base = tf.constant([seed, SALT], dtype=tf.int64)
    step = tf.random.experimental.stateless_fold_in(base, tf.cast(g, tf.int64), alg="philox")
    return tf.random.stateless_uniform(tf.stack([tf.cast(n, tf.int32), 4]), seed=step, alg="philox")


def _reflect(index: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Indices outside ``[0, size)`` mirrored back in, the edge pixel repeated (``d c b a | a b c d``).
    Shifts are at most a tenth of the side, so one reflection is enough."""
    index = tf.where(index < 0, -index - 1, index)
    return tf.where(index >= size, 2 * size - index - 1, index)


def augment(images: Any, u: Any) -> tf.Tensor:
    """A batch of 0..255 pixels (``uint8`` or float, ``[n, h, w, 3]``) flipped, shifted and brightened
    per image by its row of :func:`batch_draws` ``u``, as the module says; float32 out."""
    x = tf.cast(images, tf.float32)
    shape = tf.shape(x)
    h, w = shape[1], shape[2]
    dx = tf.cast(tf.round((u[:, 1] * 2 * SHIFT - SHIFT) * tf.cast(w, tf.float32)), tf.int32)
    dy = tf.cast(tf.round((u[:, 2] * 2 * SHIFT - SHIFT) * tf.cast(h, tf.float32)), tf.int32)
    # output pixel (r, c) = input (reflect(r - dy), flip(reflect(c - dx))): the flip came first, then the shift
    rows = _reflect(tf.range(h)[None, :] - dy[:, None], h)
    cols = _reflect(tf.range(w)[None, :] - dx[:, None], w)
    cols = tf.where((u[:, 0] < 0.5)[:, None], w - 1 - cols, cols)
    x = tf.gather(x, rows, axis=1, batch_dims=1)
    x = tf.gather(x, cols, axis=2, batch_dims=1)
    delta = tf.reshape((u[:, 3] * 2 * BRIGHTNESS - BRIGHTNESS) * 255.0, [-1, 1, 1, 1])
    return tf.clip_by_value(x + delta, 0.0, 255.0)


class AugmentInTraining(keras.Model):
    """Trains ``classifier`` on :func:`augment`-ed batches ``((uint8 images, draws), labels[,
    sample_weight])``; evaluates and predicts with the classifier as it is (float images, no
    draws). Compile it as the classifier is, then give it the classifier's optimizer; it holds no
    variables of its own."""

    def __init__(self, classifier: keras.Model) -> None:
        # autocast off: under mixed precision the pixels reach the classifier in float32, as without
        # this wrapper; its dtype policy stays the global one, so compile scales the loss as for the classifier
        super().__init__(name=f"{classifier.name}_augmented", autocast=False)
        self.classifier = classifier
        self.built = True  # the classifier is; nothing of its own to build

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if isinstance(inputs, tuple | list):  # a training batch's (images, draws): fit's first look at the data
            inputs = inputs[0]
        return self.classifier(keras.ops.cast(inputs, "float32"), training=training)

    def train_step(self, data: Any) -> Any:
        (images, u), labels, weights = keras.utils.unpack_x_y_sample_weight(data)
        x = augment(images, u)
        return super().train_step(keras.utils.pack_x_y_sample_weight(x, labels, weights))
