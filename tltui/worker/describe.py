"""``python -m tltui.worker describe BACKBONE --image-size H W --out PATH.json``.

Builds the classifier around a backbone (``weights=None``: no download) and
writes its description: the backbone's layers with their stages, and the
layers before it (resize, preprocessing). The CLI and the TUI cache this file
and compute freeze maps from it without TensorFlow (:func:`tltui.core.freeze_policy.build_map`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import keras

from tltui.core import catalog, freeze_policy, presets
from tltui.core.errors import PresetError
from tltui.core.workspace import atomic_write
from tltui.worker import model as model_mod
from tltui.worker.errors import WorkerError
from tltui.worker.freeze import describe_backbone, layer_info


class DescribeError(WorkerError):
    """A backbone that cannot be described (one line)."""


def describe(name: str, image_size: tuple[int, int], alpha: float | None = None) -> dict[str, Any]:
    """The description document of backbone ``name`` at ``image_size`` (built with random weights)."""
    model, backbone, spec = build(name, image_size, alpha)
    return description_of(model, backbone, spec.family, name, image_size, alpha)


def build(
    name: str, image_size: tuple[int, int], alpha: float | None = None
) -> tuple[keras.Model, keras.Model, catalog.BackboneSpec]:
    """The classifier (2 classes) and its nested backbone, random weights."""
    spec = catalog.lookup(name)
    if spec is None:
        known = ", ".join(sorted(catalog.BACKBONES))
        raise DescribeError(f"unknown backbone {name!r}; known: {known}")
    model_cfg: dict[str, Any] = {"backbone": name, "weights": "none"}
    if alpha is not None:
        model_cfg["alpha"] = alpha
    try:
        preset = presets.from_dict(
            {
                "name": "describe",
                "data": {"source": "tfds:describe", "image_size": list(image_size)},
                "model": model_cfg,
            }
        )
    except PresetError as e:
        raise DescribeError("; ".join(i.message for i in e.issues)) from None
    if min(image_size) < spec.min_size:
        raise DescribeError(f"{name} needs inputs of at least {spec.min_size}x{spec.min_size}, got {list(image_size)}")
    try:
        model, backbone = model_mod.build_classifier(preset, 2)
    except model_mod.ModelError as e:
        raise DescribeError(str(e)) from None
    return model, backbone, spec


def description_of(
    model: keras.Model,
    backbone: keras.Model,
    family: str,
    name: str,
    image_size: tuple[int, int],
    alpha: float | None = None,
) -> dict[str, Any]:
    layers, order = describe_backbone(backbone, family)
    outer = list(model.layers)
    idx = next(i for i, l in enumerate(outer) if l is backbone)
    return {
        "version": freeze_policy.DESCRIPTION_VERSION,
        "backbone": name,
        "family": family,
        "image_size": list(image_size),
        "alpha": alpha,
        "keras_version": keras.__version__,
        "stages": order,
        "input_layers": [layer_info(l).to_dict() | {"stage": "input"} for l in outer[:idx]],
        "layers": [l.to_dict() for l in layers],
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tltui.worker describe")
    p.add_argument("backbone")
    p.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"), required=True)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    try:
        doc = describe(args.backbone, (args.image_size[0], args.image_size[1]), args.alpha)
    except DescribeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, json.dumps(doc, indent=1) + "\n")
    return 0
