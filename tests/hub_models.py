"""Tiny SavedModels shaped like TF Hub image feature vectors, built locally for tests.

Each takes a float32 image batch in [0, 1] and returns a ``(batch, dim)`` feature
vector. They are saved with ``tf.saved_model.save`` and loaded by path: the real
loading code, no network. Importing this module imports TensorFlow.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import tensorflow as tf


class _Callable(tf.Module):
    """A reusable SavedModel (TF Hub's TF2 format): ``__call__(images, training)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal((3, dim), seed=(1, 2)), name="kernel")
        self.bias = tf.Variable(tf.zeros((dim,)), name="bias")

    def features(self, images: tf.Tensor) -> tf.Tensor:
        pooled = tf.reduce_mean(images, axis=[1, 2])  # (batch, 3)
        return tf.tanh(tf.matmul(pooled, self.kernel) + self.bias)


class _BatchNormLike(_Callable):
    """Normalises pooled pixels with a moving mean that only a training call updates."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.moving_mean = tf.Variable(tf.zeros((3,)), trainable=False, name="moving_mean")

    def normalized(self, images: tf.Tensor, training: bool) -> tf.Tensor:
        pooled = tf.reduce_mean(images, axis=[1, 2])
        if training:
            mean = tf.reduce_mean(pooled, axis=0)
            self.moving_mean.assign(0.5 * self.moving_mean + 0.5 * mean)
        else:
            mean = self.moving_mean
        return tf.tanh(tf.matmul(pooled - mean, self.kernel) + self.bias)


def _spec(size: int | None) -> tf.TensorSpec:
    return tf.TensorSpec([None, size, size, 3], tf.float32)


def _save_reusable(path: Path, module: tf.Module, fn, size: int | None) -> Path:
    # The attributes TF Hub's reusable SavedModel format defines on its root object.
    root = tf.train.Checkpoint()
    root.module = module
    root.variables = list(module.variables)
    root.trainable_variables = list(module.trainable_variables)
    root.regularization_losses = [tf.function(lambda: 0.01 * tf.reduce_sum(module.kernel**2), input_signature=[])]
    root.__call__ = tf.function(fn)
    for training in (True, False):
        root.__call__.get_concrete_function(_spec(size), training=training)
    tf.saved_model.save(root, str(path))
    return path


def save_callable(path: Path, *, dim: int = 8, size: int | None = None) -> Path:
    """``__call__(images, training=False)`` with a trainable kernel and bias."""
    m = _Callable(dim)
    return _save_reusable(path, m, lambda images, training=False: m.features(images), size)


def save_batchnorm(path: Path, *, dim: int = 8, size: int | None = None) -> Path:
    """Like :func:`save_callable`, plus ``moving_mean`` updated only when ``training=True``."""
    m = _BatchNormLike(dim)
    return _save_reusable(path, m, lambda images, training=False: m.normalized(images, training), size)


def save_signature(path: Path, *, dim: int = 8, size: int | None = 16) -> Path:
    """Only a ``serving_default`` signature (``images`` -> ``{"feature_vector": ...}``)."""
    m = _Callable(dim)

    @tf.function(input_signature=[_spec(size)])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"feature_vector": m.features(images)}

    tf.saved_model.save(m, str(path), signatures={"serving_default": serve})
    return path


def save_feature_map(path: Path) -> Path:
    """A module that returns a feature map ``(batch, H, W, C)``, not a feature vector."""
    m = _Callable(4)
    return _save_reusable(path, m, lambda images, training=False: tf.tanh(images * m.bias[0]), None)


def make_tarball(saved_model: Path, out: Path) -> Path:
    """A ``.tar.gz`` of a SavedModel's contents, laid out as tfhub.dev serves them."""
    with tarfile.open(out, "w:gz") as tar:
        for child in sorted(saved_model.iterdir()):
            tar.add(child, arcname=child.name)
    return out
