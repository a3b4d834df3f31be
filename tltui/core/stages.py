"""Which macro-block ("stage") each layer of a backbone belongs to, per family.

Pure data over layer descriptions (no TensorFlow), shared by the worker (which
applies the freeze policy to the real model) and the TUI/CLI (which show the
freeze map from a cached description).

A family's stages are listed from the input to the output; ``freeze.depth = d``
freezes the first ``d``. Most families have four stages, one per output
stride (1/4, 1/8, 1/16, 1/32), with the stem joining the first, so depth 1..4
means what the notebook meant for ResNet50 (stem + conv2, + conv3, + conv4,
+ conv5 = everything).

Layers are mapped from their names. Layers Keras names automatically
(``conv2d_7``, ``add_3``, ``activation_12``: process-global counters, so the
number means nothing) belong to the stage of the layer before them in model
order. InceptionV3 names almost every layer that way, so its stages come from
model order between the ``mixedK`` concatenations instead. Every layer must get
a stage and every stage must get at least one layer, or :class:`StageError`.

This module is the mechanism; the families themselves (stage names, name rules,
order-based rules, variants) are records in :data:`tltui.core.catalog.FAMILIES`, and a family's
stages are asked of its record (``catalog.family("resnet").assign(layers)``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from tltui.core.errors import TltuiError

#: The single opaque stage of a TF Hub module (its insides are not Keras layers).
HUB_STAGE = "hub_module"
#: Pseudo-stages of the classifier around the backbone.
INPUT_STAGE = "input"
HEAD_STAGE = "head"

BATCHNORM_TYPES = frozenset({"BatchNormalization", "SyncBatchNormalization"})


@dataclass(frozen=True)
class LayerInfo:
    """One top-level layer of a backbone (or of the classifier around it).

    ``trainable_params`` counts the parameters that train when the layer is
    trainable (BatchNormalization's moving mean/variance never do); ``None``
    means all of ``params``.
    """

    name: str
    type: str  # Keras class name
    params: int
    output_shape: tuple[int | None, ...] | None
    has_weights: bool
    stage: str = ""
    trainable_params: int | None = None

    @property
    def is_batchnorm(self) -> bool:
        return self.type in BATCHNORM_TYPES

    @property
    def weight_params(self) -> int:
        """Parameters that train when this layer trains."""
        return self.params if self.trainable_params is None else self.trainable_params

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": self.type,
            "params": self.params,
            "trainable_params": self.weight_params,
            "output_shape": list(self.output_shape) if self.output_shape is not None else None,
            "has_weights": self.has_weights,
            "stage": self.stage,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> LayerInfo:
        shape = d.get("output_shape")
        return cls(
            name=str(d["name"]),
            type=str(d["type"]),
            params=int(d.get("params", 0)),  # type: ignore[call-overload]
            output_shape=tuple(shape) if isinstance(shape, list) else None,  # type: ignore[arg-type]
            has_weights=bool(d.get("has_weights", False)),
            stage=str(d.get("stage", "")),
            trainable_params=int(d["trainable_params"]) if d.get("trainable_params") is not None else None,  # type: ignore[call-overload]
        )


class StageError(TltuiError):
    """A backbone's layers do not fit its family's stage map (a tltui bug or a new Keras)."""


# Names Keras gives layers that were created without one: ``conv2d``, ``add_17``.
_AUTO_NAME = re.compile(
    r"^(input_layer|conv2d|batch_normalization|activation|re_lu|add|multiply|concatenate|"
    r"max_pooling2d|average_pooling2d|zero_padding2d|rescaling|normalization|layer_normalization|"
    r"dropout|reshape)(_\d+)?$"
)


#: A name rule: the stage of a layer from its name, ``None`` when the name says nothing.
NameRule = Callable[[str], "str | None"]


def blocks(prefix: str, groups: Sequence[Sequence[int]], names: Sequence[str]) -> NameRule:
    """A name rule: the stage of ``{prefix}{N}...`` is ``names[i]`` for the group ``i`` holding block N."""
    pat = re.compile(rf"^{prefix}(\d+)(?![0-9])")
    table = {n: names[i] for i, g in enumerate(groups) for n in g}

    def f(name: str) -> str | None:
        m = pat.match(name)
        return table.get(int(m.group(1))) if m else None

    return f


def assign_by_name(family: str, layers: Sequence[LayerInfo], rule: NameRule, stages: Sequence[str]) -> list[LayerInfo]:
    """Stages from names: ``rule``; a layer it does not match that Keras named automatically (or the
    input) belongs to the stage of the layer before it (the first stage for the first layers)."""
    first = stages[0]
    out: list[LayerInfo] = []
    unmatched: list[str] = []
    prev: str | None = None
    for layer in layers:
        stage = rule(layer.name)
        if stage is None and (layer.type == "InputLayer" or _AUTO_NAME.match(layer.name)):
            stage = prev or first
        if stage is None:
            unmatched.append(layer.name)
            stage = ""
        out.append(replace(layer, stage=stage))
        prev = stage or prev
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        raise StageError(f"{family}: {len(unmatched)} layer(s) match no stage: {shown}")
    return out


def check_stages(family: str, layers: Sequence[LayerInfo], stages: Sequence[str]) -> None:
    """Every layer has one of ``stages`` and every stage has a layer, or :class:`StageError`."""
    seen = {l.stage for l in layers}
    empty = [s for s in stages if s not in seen]
    if empty:
        raise StageError(f"{family}: stage(s) {', '.join(empty)} matched no layer")
    stray = seen - set(stages)
    if stray:
        raise StageError(f"{family}: layers assigned to unknown stage(s) {', '.join(sorted(stray))}")
