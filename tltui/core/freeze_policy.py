"""The freeze policy: one pure function from a backbone description to trainable flags.

The worker applies :func:`plan` to the real Keras model; the CLI and the TUI
call :func:`build_map` on a cached description. Both therefore show and do the
same thing (docs/architecture.md, invariant 6). No TensorFlow here.

Semantics:

- ``depth = d`` freezes the first ``d`` stages of the backbone (see
  :mod:`tltui.core.stages`); 0 freezes nothing; ``"all"`` freezes every backbone layer;
  ``d`` larger than the number of stages is an error.
- ``batchnorm = "frozen"`` (the default): every BatchNormalization layer of the
  backbone is frozen whatever the depth (its statistics and its gamma/beta); frozen
  BatchNorm runs in inference mode in Keras 3.
- ``batchnorm = "inference"`` (the keras.io transfer-learning recipe): every
  BatchNormalization layer runs in inference mode (it normalizes with its moving
  statistics, which never change), and its gamma/beta train as its stage says.
- ``batchnorm = "trainable"`` (the notebook's policy): BatchNorm layers train even
  inside frozen stages, with batch statistics; only the other layers follow the depth.
- Head layers always train; layers before the backbone (resize, preprocessing)
  never do (they have nothing to train).

Besides what trains, :func:`inference_mode` says which layers run in inference mode
while the model trains: every layer of a frozen stage (so Dropout and stochastic depth
inside a frozen backbone are off, as keras.io's ``base_model(x, training=False)``
intends), and BatchNorm as the policy says. The head trains in training mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tltui.core import catalog
from tltui.core.errors import TltuiError
from tltui.core.stages import HEAD_STAGE, INPUT_STAGE, LayerInfo, StageError

__all__ = [
    "BATCHNORM_POLICIES",
    "FreezeError",
    "LayerInfo",
    "inference_mode",
    "StageError",
    "build_map",
    "describe_stages",
    "map_document",
    "num_stages",
    "plan",
    "standard_head",
    "validate_depth",
]

BATCHNORM_POLICIES = ("frozen", "inference", "trainable")
DESCRIPTION_VERSION = 2  # 2: backbones built under their own names (ConvNeXt layer names)


class FreezeError(TltuiError, ValueError):
    """A freeze setting that does not fit the backbone (one line, names the field)."""


def num_stages(family: str) -> int:
    """How many stages ``freeze.depth`` ranges over for a family (depth is 0..N or "all")."""
    return catalog.family(family).num_stages


def validate_depth(depth: int | str, n_stages: int, what: str = "the backbone") -> None:
    if depth == "all":
        return
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise FreezeError(f'freeze.depth: expected 0..{n_stages} or "all", got {depth!r}')
    if depth > n_stages:
        raise FreezeError(f'freeze.depth = {depth}: {what} has {n_stages} stages; use 0..{n_stages} or "all"')


def _stage_order(layers: Sequence[LayerInfo], stage_order: Sequence[str] | None) -> list[str]:
    if stage_order is not None:
        return list(stage_order)
    order: list[str] = []
    for l in layers:
        if l.stage not in (INPUT_STAGE, HEAD_STAGE) and l.stage not in order:
            order.append(l.stage)
    return order


def plan(
    layers: Sequence[LayerInfo],
    depth: int | str,
    batchnorm: str,
    stage_order: Sequence[str] | None = None,
) -> list[bool]:
    """Trainable flag per layer (same order as ``layers``, which carry their stage).

    ``stage_order`` lists the backbone's stages input-to-output; by default, the
    order in which stages first appear in ``layers``.
    """
    frozen = _frozen_stages(layers, depth, batchnorm, stage_order)
    out: list[bool] = []
    for l in layers:
        if l.stage == HEAD_STAGE:
            out.append(True)
        elif l.stage == INPUT_STAGE:
            out.append(False)
        elif l.is_batchnorm and batchnorm != "inference":
            out.append(batchnorm == "trainable")
        else:
            out.append(l.stage not in frozen)
    return out


def inference_mode(
    layers: Sequence[LayerInfo],
    depth: int | str,
    batchnorm: str,
    stage_order: Sequence[str] | None = None,
) -> list[bool]:
    """Per layer (same order as ``layers``): does it run in inference mode while the model trains?
    Every layer of a frozen stage does (Dropout and stochastic depth off, BatchNorm on its moving
    statistics), BatchNorm everywhere unless the policy is ``"trainable"``; the head and the layers
    before the backbone keep the mode of the call."""
    frozen = _frozen_stages(layers, depth, batchnorm, stage_order)
    out: list[bool] = []
    for l in layers:
        if l.stage in (HEAD_STAGE, INPUT_STAGE):
            out.append(False)
        elif l.is_batchnorm:
            out.append(batchnorm != "trainable")
        else:
            out.append(l.stage in frozen)
    return out


def _frozen_stages(
    layers: Sequence[LayerInfo], depth: int | str, batchnorm: str, stage_order: Sequence[str] | None
) -> set[str]:
    if batchnorm not in BATCHNORM_POLICIES:
        raise FreezeError(
            f"freeze.batchnorm: expected one of {', '.join(map(repr, BATCHNORM_POLICIES))}, got {batchnorm!r}"
        )
    order = _stage_order(layers, stage_order)
    validate_depth(depth, len(order))
    return set(order) if depth == "all" else set(order[: int(depth)])


def standard_head(features: int | None, num_classes: int | None, dropout: float = 0.0) -> list[LayerInfo]:
    """The classifier head the worker builds (GlobalAveragePooling2D, optional Dropout,
    Dense, float32 softmax), described without building it. Unknown sizes give 0 params."""
    dense = (features + 1) * num_classes if features and num_classes else 0
    head = [LayerInfo("avg_pool", "GlobalAveragePooling2D", 0, (None, features), False, HEAD_STAGE)]
    if dropout > 0:
        head.append(LayerInfo("dropout", "Dropout", 0, (None, features), False, HEAD_STAGE))
    head.append(LayerInfo("logits", "Dense", dense, (None, num_classes), True, HEAD_STAGE))
    head.append(LayerInfo("predictions", "Activation", 0, (None, num_classes), False, HEAD_STAGE))
    return head


def build_map(
    description: dict[str, Any],
    depth: int | str,
    batchnorm: str,
    head_layers: Sequence[LayerInfo] | None = None,
    input_layers: Sequence[LayerInfo] | None = None,
) -> dict[str, Any]:
    """The freeze-map document for a backbone description (see ``tltui freeze-map --json``).

    ``description`` is what ``python -m tltui.worker describe`` writes: ``backbone``,
    ``family``, ``stages`` (input-to-output) and ``layers`` (with their stage).
    ``head_layers``/``input_layers`` are the classifier's layers after/before the
    backbone (their ``stage`` is forced to ``head``/``input``); ``input_layers``
    defaults to the description's own.
    """
    backbone = [LayerInfo.from_dict(d) for d in description["layers"]]
    order = list(description.get("stages") or _stage_order(backbone, None))
    family = description.get("family", "")
    validate_depth(depth, len(order), f"{description.get('backbone', 'the backbone')} ({family})")
    if input_layers is None:
        input_layers = [LayerInfo.from_dict(d) for d in description.get("input_layers") or ()]
    layers = (
        [replace(l, stage=INPUT_STAGE) for l in input_layers]
        + backbone
        + [replace(l, stage=HEAD_STAGE) for l in head_layers or ()]
    )
    flags = plan(layers, depth, batchnorm, order)
    return map_document(description, depth, batchnorm, layers, flags, order)


def map_document(
    description: dict[str, Any],
    depth: int | str,
    batchnorm: str,
    layers: Sequence[LayerInfo],
    flags: Sequence[bool],
    order: Sequence[str],
) -> dict[str, Any]:
    """Assemble the JSON document from layers and their trainable flags. Each layer row says whether it
    trains (``trainable``, ``trainable_params``: what the optimizer updates) and whether it runs in
    inference mode while the model trains (``inference``; ``bn_inference`` for BatchNorm)."""
    rows: list[dict[str, Any]] = []
    modes = inference_mode(layers, depth, batchnorm, order)
    for l, t, inf in zip(layers, flags, modes, strict=True):
        rows.append(
            {
                "name": l.name,
                "type": l.type,
                "stage": l.stage,
                "trainable": bool(t),
                "params": l.params,
                "trainable_params": l.weight_params if t else 0,
                "output_shape": list(l.output_shape) if l.output_shape is not None else None,
                "inference": bool(inf),
                "bn_inference": bool(l.is_batchnorm and (inf or not t)),
            }
        )
    all_stages = (
        ([INPUT_STAGE] if any(l.stage == INPUT_STAGE for l in layers) else [])
        + list(order)
        + ([HEAD_STAGE] if any(l.stage == HEAD_STAGE for l in layers) else [])
    )
    stage_rows = []
    for s in all_stages:
        mine = [r for r in rows if r["stage"] == s]
        stage_rows.append(_summary({"name": s}, mine))
        stage_rows[-1]["frozen_by_depth"] = s in order and (
            depth == "all" or order.index(s) < int(depth)  # type: ignore[arg-type]
        )
    return {
        "backbone": description.get("backbone"),
        "family": description.get("family"),
        "image_size": description.get("image_size"),
        "depth": depth,
        "batchnorm": batchnorm,
        "num_stages": len(order),
        "stages": stage_rows,
        "layers": rows,
        "totals": _summary({}, rows),
    }


def _summary(base: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    params = sum(r["params"] for r in rows)
    trainable_params = sum(r["trainable_params"] for r in rows)
    base.update(
        layers=len(rows),
        frozen=sum(1 for r in rows if not r["trainable"]),
        trainable=sum(1 for r in rows if r["trainable"]),
        bn_inference=sum(1 for r in rows if r["bn_inference"]),
        params=params,
        trainable_params=trainable_params,
        frozen_params=params - trainable_params,
    )
    return base


def describe_stages(family: str, layers: Sequence[LayerInfo]) -> tuple[list[LayerInfo], list[str]]:
    """Assign stages to a backbone's layers; the stage order comes with them."""
    fam = catalog.family(family)
    return fam.assign(layers), list(fam.stage_names(layers))
