"""Grad-CAM: where a run's model looked for the class it predicted.

tltui's classifiers are one chain (``tltui.worker.model.build_classifier``): input, resize,
preprocessing, the backbone (a nested functional model named ``backbone`` whose output is the last
convolutional feature map), global average pooling, optional dropout, the Dense ``logits``,
softmax. Grad-CAM (Selvaraju et al., 2017) of class ``c`` weighs each channel of that feature map
``A`` by the mean gradient of the logit ``y_c`` over the map, sums, keeps the positive part:
``relu(sum_k mean_ij(dy_c/dA_kij) * A_k)``, scaled to 0..1.

The maps are computed through the model's own graph: :func:`split` cuts it at the backbone's output
tensor into two ``keras.Model`` over the same layers and operations, so every operation between the
pixels and the logits runs, not only the layers ``model.layers`` lists (caffe preprocessing's
RGB->BGR flip, in ResNet and VGG models, is an operation, not a layer). The logits a map explains
are those of the prediction shown. Models saved by older tltui versions have the same chain and
work as ``keras.models.load_model`` returns them.

A TF Hub backbone returns a feature vector: it has no feature map, and :class:`NoFeatureMap` says so.
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


def _producer(tensor: Any) -> tuple[Any, Any]:
    """The operation that made a symbolic tensor of a functional graph, and the node (that call)."""
    op, node_index, _ = tensor._keras_history
    return op, op._inbound_nodes[node_index]


def _ancestor(tensor: Any, name: str) -> Any | None:
    """The first tensor made by an operation named ``name`` on the way from ``tensor`` back to the
    inputs, following this graph's own calls (a layer shared with another model is not confused)."""
    stack, seen = [tensor], set()
    while stack:
        t = stack.pop()
        op, node = _producer(t)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if op.name == name:
            return t
        stack.extend(node.input_tensors)
    return None


def split(model: Any) -> tuple[Any, Any]:
    """The model's own graph cut at the backbone's output: ``(features, head)``, two ``keras.Model``
    over the model's layers and operations (no weights copied), ``features`` from the model's input
    to the backbone's feature map, ``head`` from that map to the logits; ``head(features(x))`` is the
    model's output before its softmax. Raises :class:`NoFeatureMap` (one line) when the model is not
    a tltui classifier with a convolutional backbone."""
    import keras

    if len(model.outputs) != 1:
        raise NoFeatureMap(f"the model has {len(model.outputs)} outputs (not a tltui classifier)")
    out = model.outputs[0]
    fmap = _ancestor(out, "backbone")
    if fmap is None:
        raise NoFeatureMap("the model has no layer named 'backbone' (not a tltui classifier)")
    if type(_producer(fmap)[0]).__name__ == "HubModule" or len(fmap.shape) != 4:
        raise NoFeatureMap(
            "a TF Hub backbone is one opaque layer that returns a feature vector: there is no convolutional "
            "feature map to compute Grad-CAM on"
        )
    op, node = _producer(out)
    if op.name != "predictions":
        raise NoFeatureMap("the model's head does not end in 'predictions' (not a tltui classifier)")
    logits = node.input_tensors[0] if len(node.input_tensors) == 1 else None
    if logits is None or _producer(logits)[0].name != "logits" or _ancestor(logits, "backbone") is not fmap:
        raise NoFeatureMap("the model's head has no 'logits' layer after its backbone (not a tltui classifier)")
    try:
        # An intermediate tensor as input: Keras gives the head its own Input (it adds a node to the
        # head's layers, as any call does) and checks the logits need nothing but the feature map.
        head = keras.Model(fmap, logits, name=f"{model.name}_head")
    except ValueError:
        raise NoFeatureMap("the model's logits need more than its backbone's output (not a tltui classifier)") from None
    return keras.Model(model.input, fmap, name=f"{model.name}_features"), head


def grad_cam(model: Any, x: np.ndarray, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Heat maps ``[n, h', w']`` in 0..1 (the feature map's resolution) and the class each one explains
    (``classes``, else each image's top-1 by the model's own logits), for a float32 batch ``x`` of
    0..255 pixels as the model takes them."""
    import tensorflow as tf

    features, head = split(model)
    fmap = features(tf.convert_to_tensor(x, dtype=tf.float32), training=False)
    # Only the head is differentiated: the gradient never runs back through the backbone.
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(fmap)
        logits = head(fmap, training=False)
        chosen = np.argmax(logits.numpy(), axis=1) if classes is None else np.asarray(classes)
        # samples do not interact (inference mode): the gradient of the sum is each one's own
        target = tf.reduce_sum(tf.gather(logits, chosen, axis=1, batch_dims=1))
    grads = tf.cast(tape.gradient(target, fmap), tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(fmap, tf.float32), axis=-1)).numpy()
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
    big = np.asarray(
        Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
    )
    colours = colorize(big.astype(np.float32) / 255)
    return (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).astype(np.uint8)


def quadrant_mass(heat: np.ndarray) -> np.ndarray:
    """The share of a map's heat in each quadrant: top-left, top-right, bottom-left, bottom-right."""
    h, w = heat.shape
    qs = [heat[: h // 2, : w // 2], heat[: h // 2, w // 2 :], heat[h // 2 :, : w // 2], heat[h // 2 :, w // 2 :]]
    total = float(heat.sum()) or 1.0
    return np.array([float(q.sum()) / total for q in qs])
