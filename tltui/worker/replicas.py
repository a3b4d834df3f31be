"""Batches that split evenly over a MirroredStrategy's replicas, with the numbers one device gives.

Under ``train.gpus = N`` each batch is split into N equal shares; a batch that does not divide (the
partial last batch of an epoch or of an evaluation: 5 images on 2 GPUs, or 1) fails in Keras and
TensorFlow with "Inputs to operation AddN ... must have the same size and shape". ``data.batch_size``
itself must be a multiple of N (``tltui check`` says so: :func:`tltui.core.accel.replica_problem`);
the partial batches are padded here with copies of their own images, weighted 0, and the real
images weighted so the maths is one device's:

- training (:func:`train_batches`): a padded batch of ``b`` images to ``b + k`` weights its images
  ``(b + k) / b``. Keras's loss is the per-replica sum over the per-replica batch size, summed over the
  replicas, i.e. ``sum(w * loss) / (b + k)`` = the mean over the ``b`` images: the gradient one device
  computes. The epoch's training loss and accuracy count that batch as ``b + k`` images.
- evaluation (:func:`eval_batches`): every image of the split weighs ``(n + p) / n`` (``p`` padding
  images in all). Accuracy is a weighted mean (the common weight cancels) and Keras's loss metric
  divides the weighted sum by ``n + p`` images: both equal one device's.

Nothing is padded with one replica: the datasets are returned as they are.
"""

from __future__ import annotations

from typing import Any

from tltui.core import accel


def _pad(x: Any, y: Any, replicas: int, real_weight: Any) -> tuple[Any, Any, Any]:
    """``(x, y)`` padded to a multiple of ``replicas`` by repeating its images; weights ``real_weight``
    (a function of the batch size ``b`` and the padded size) for the real images, 0 for the copies."""
    import tensorflow as tf

    b = tf.shape(tf.nest.flatten(x)[0])[0]  # x may be (images, draws): an augmented run's (tltui.worker.augment)
    size = b + tf.math.floormod(-b, replicas)
    idx = tf.math.floormod(tf.range(size), tf.maximum(b, 1))
    w = tf.where(tf.range(size) < b, real_weight(b, size), tf.constant(0.0, tf.float32))
    return tf.nest.map_structure(lambda t: tf.gather(t, idx), x), tf.gather(y, idx), w


def train_batches(ds: Any, replicas: int) -> Any:
    """``(x, y)`` training batches as ``(x, y, sample_weight)`` that split evenly (see the module)."""
    if ds is None or replicas <= 1:
        return ds
    import tensorflow as tf

    def weight(b: Any, size: Any) -> Any:
        return tf.cast(size, tf.float32) / tf.cast(b, tf.float32)

    return ds.map(lambda x, y: _pad(x, y, replicas, weight))


def eval_batches(ds: Any, replicas: int, n: int, batch_size: int) -> Any:
    """``(x, y)`` batches of an ``n``-image split (``ceil(n / batch_size)`` of them) as
    ``(x, y, sample_weight)`` that split evenly and evaluate to one device's numbers (see the module)."""
    if ds is None or replicas <= 1 or n <= 0:
        return ds
    import tensorflow as tf

    common = (n + accel.eval_padding(n, batch_size, replicas)) / n

    def weight(b: Any, size: Any) -> Any:
        return tf.constant(common, tf.float32)

    return ds.map(lambda x, y: _pad(x, y, replicas, weight))
