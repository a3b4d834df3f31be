"""Apply the freeze policy to a real Keras model and return its freeze map.

The decision is :func:`tltui.core.freeze_policy.plan` over the backbone's layer
description; this module only describes layers and sets ``layer.trainable``.
Changing ``trainable`` takes effect at the next ``compile()``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import keras

from tltui.core import freeze_policy
from tltui.core.stages import HEAD_STAGE, INPUT_STAGE, LayerInfo


def _output_shape(layer: keras.Layer) -> tuple[int | None, ...] | None:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError, RuntimeError):
        return None
    return tuple(None if d is None else int(d) for d in shape)


def layer_info(layer: keras.Layer) -> LayerInfo:
    weights = layer.weights
    params = sum(_size(w.shape) for w in weights)
    # Which variables train when the layer trains (not BatchNorm's moving statistics).
    # `Variable.trainable` follows the layer's flag once frozen, so ask for the
    # variables each (sub)layer created as trainable, whatever its current state.
    creatable = {id(v) for sub in layer._flatten_layers(include_self=True) for v in sub._trainable_variables}
    trainable = sum(_size(w.shape) for w in weights if id(w) in creatable)
    return LayerInfo(
        name=layer.name,
        type=type(layer).__name__,
        params=params,
        output_shape=_output_shape(layer),
        has_weights=bool(weights),
        trainable_params=trainable,
    )


def run_in_inference_mode(layer: keras.Layer, on: bool) -> None:
    """Make ``layer`` run in inference mode while the model trains (``on``), or follow the call's mode.

    Keras 3 hands the outer call's ``training`` to every layer that lists ``"training"`` in its
    ``_call_context_args``: a Functional model injects it into each layer it calls, overriding even
    an explicit ``base_model(x, training=False)`` of a nested model (keras-team/keras#20285; seen on
    Keras 3.15: BatchNorm statistics move and Dropout drops under it). A layer that does not list it
    keeps its call signature's default, ``training=None``, which every built-in layer treats as
    inference. ``tests/worker/test_freeze_backbones.py`` checks the effect on real backbones, so a
    Keras change that breaks this fails a test. A layer of another Keras (tf_keras, TF Hub) is left
    as it is: a frozen ``hub.KerasLayer`` runs in inference mode by itself."""
    context = getattr(layer, "_call_context_args", None)
    if not isinstance(context, set | frozenset):
        return
    layer._call_context_args = (set(context) - {"training"}) if on else (set(context) | {"training"})


def runs_in_inference_mode(layer: keras.Layer) -> bool:
    """Whether :func:`run_in_inference_mode` holds ``layer`` in inference mode."""
    context = getattr(layer, "_call_context_args", None)
    return isinstance(context, set | frozenset) and "training" not in context


def _size(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def describe_layers(model: keras.Model) -> list[LayerInfo]:
    """The top-level layers of ``model`` in model order (no stage yet)."""
    return [layer_info(l) for l in model.layers]


def describe_backbone(backbone: keras.Model, family: str) -> tuple[list[LayerInfo], list[str]]:
    """The backbone's layers with their stages, and the stage order."""
    return freeze_policy.describe_stages(family, describe_layers(backbone))


def apply_freeze(
    model: keras.Model,
    backbone: keras.Model,
    family: str,
    depth: int | str,
    batchnorm: str,
    *,
    name: str | None = None,
    image_size: list[int] | None = None,
) -> dict[str, Any]:
    """Set ``trainable`` on every layer of ``backbone`` (nested in ``model``) per the
    policy and return the freeze-map document for the whole model.

    Layers of ``model`` before the backbone get stage ``input`` (frozen: nothing
    to train), after it ``head`` (always trainable). Raises
    :class:`tltui.core.freeze_policy.FreezeError` when ``depth`` exceeds the stages.
    ``name``/``image_size`` (the preset's backbone name and input size) label the map.
    """
    bb_layers, order = describe_backbone(backbone, family)
    outer = list(model.layers) if model is not backbone else [backbone]
    idx = next((i for i, l in enumerate(outer) if l is backbone), None)
    if idx is None:
        raise ValueError(f"backbone {backbone.name!r} is not a layer of model {model.name!r}")
    before = [replace(layer_info(l), stage=INPUT_STAGE) for l in outer[:idx]]
    after = [replace(layer_info(l), stage=HEAD_STAGE) for l in outer[idx + 1 :]]
    layers = before + bb_layers + after
    freeze_policy.validate_depth(depth, len(order), f"{name or backbone.name} ({family})")
    flags = freeze_policy.plan(layers, depth, batchnorm, order)

    # A layer's `trainable` setter recurses into sublayers; a frozen container hides
    # its sublayers' weights, so the containers stay trainable and each layer decides.
    model.trainable = True
    real = outer[:idx] + list(backbone.layers) + outer[idx + 1 :]
    modes = freeze_policy.inference_mode(layers, depth, batchnorm, order)
    for layer, flag, inference in zip(real, flags, modes, strict=True):
        layer.trainable = flag
        run_in_inference_mode(layer, inference)
    description = {"backbone": name or backbone.name, "family": family, "image_size": image_size}
    return freeze_policy.map_document(description, depth, batchnorm, layers, flags, order)
