"""Grad-CAM: where a run's model looked for the class it predicted.

tltui's classifiers are one chain (``tltui.worker.model.build_classifier``): input, resize,
preprocessing, the backbone (a ``keras.applications`` model without its top, whose output is
the last convolutional feature map), global average pooling, optional dropout, the Dense
``logits``, softmax. Grad-CAM (Selvaraju et al., 2017) of class ``c`` weighs each channel of that
feature map ``A`` by the mean gradient of the logit ``y_c`` over the map, sums, keeps the positive
part: ``relu(sum_k mean_ij(dy_c/dA_kij) * A_k)``, scaled to 0..1. A TF Hub backbone is one layer
that returns a feature vector: it has no feature map, and :class:`NoFeatureMap` says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tltui.worker.errors import WorkerError

#: The overlay's heat colours, from cold to hot (a short "jet"): interpolated per pixel.
HEAT = np.array([[0, 0, 128], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0], [128, 0, 0]], dtype=np.float32)
#: How much of the heat map covers the image in an overlay.
ALPHA = 0.45


class NoFeatureMap(WorkerError):
    """The model has no convolutional feature map to explain (one line: why)."""


def split(model: Any) -> tuple[list[Any], Any, list[Any]]:
    """(layers before the backbone, the backbone, layers after it), in call order."""
    layers = [l for l in model.layers if type(l).__name__ != "InputLayer"]
    names = [l.name for l in layers]
    if "backbone" not in names:
        raise NoFeatureMap("the model has no layer named 'backbone' (not a tltui classifier)")
    i = names.index("backbone")
    backbone = layers[i]
    if type(backbone).__name__ == "HubModule" or len(getattr(backbone, "output_shape", ()) or ()) != 4:
        raise NoFeatureMap(
            "a TF Hub backbone is one opaque layer that returns a feature vector: there is no convolutional "
            "feature map to compute Grad-CAM on"
        )
    head = layers[i + 1 :]
    if not head or head[-1].name != "predictions":
        raise NoFeatureMap("the model's head does not end in 'predictions' (not a tltui classifier)")
    return layers[:i], backbone, head


def grad_cam(model: Any, x: np.ndarray, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Heat maps ``[n, h', w']`` in 0..1 (the feature map's resolution) and the class each one explains
    (``classes``, else each image's top-1), for a float32 batch ``x`` of 0..255 pixels."""
    import tensorflow as tf

    before, backbone, head = split(model)
    h = tf.convert_to_tensor(x, dtype=tf.float32)
    for layer in before:
        h = layer(h, training=False)
    with tf.GradientTape() as tape:
        fmap = backbone(h, training=False)
        tape.watch(fmap)
        z = fmap
        logits = None
        for layer in head:
            if layer.name == "predictions":
                break
            z = layer(z, training=False)
            if layer.name == "logits":
                logits = z
        if logits is None:
            raise NoFeatureMap("the model's head has no 'logits' layer (not a tltui classifier)")
        chosen = np.argmax(logits.numpy(), axis=1) if classes is None else np.asarray(classes)
        # samples do not interact (inference mode): the gradient of the sum is each one's own
        target = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
    grads = tape.gradient(target, fmap)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1)).numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, cam / np.where(peak > 0, peak, 1), 0.0).astype(np.float32), chosen


def colorize(heat: np.ndarray) -> np.ndarray:
    """A ``[h, w]`` map in 0..1 as ``uint8 [h, w, 3]`` heat colours."""
    pos = np.clip(heat, 0, 1) * (len(HEAT) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(HEAT) - 1)
    t = (pos - lo)[..., None]
    return (HEAT[lo] * (1 - t) + HEAT[hi] * t).astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """``image`` (uint8 ``[H, W, 3]``) with ``heat`` upsampled (bilinear) and blended over it."""
    from PIL import Image

    h, w = image.shape[:2]
    big = np.asarray(Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR))
    colours = colorize(big.astype(np.float32) / 255)
    return (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).astype(np.uint8)


def quadrant_mass(heat: np.ndarray) -> np.ndarray:
    """The share of a map's heat in each quadrant: top-left, top-right, bottom-left, bottom-right."""
    h, w = heat.shape
    qs = [heat[: h // 2, : w // 2], heat[: h // 2, w // 2 :], heat[h // 2 :, : w // 2], heat[h // 2 :, w // 2 :]]
    total = float(heat.sum()) or 1.0
    return np.array([float(q.sum()) / total for q in qs])
