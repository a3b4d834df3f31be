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


def _blocks(prefix: str, groups: Sequence[Sequence[int]], names: Sequence[str]) -> Callable[[str], str | None]:
    """Stage of ``{prefix}{N}...`` by which group contains block number N."""
    pat = re.compile(rf"^{prefix}(\d+)(?![0-9])")
    table = {n: names[i] for i, g in enumerate(groups) for n in g}

    def f(name: str) -> str | None:
        m = pat.match(name)
        return table.get(int(m.group(1))) if m else None

    return f


def _first(*rules: Callable[[str], str | None]) -> Callable[[str], str | None]:
    def f(name: str) -> str | None:
        for r in rules:
            s = r(name)
            if s is not None:
                return s
        return None

    return f


def _regex(pattern: str, stage: str) -> Callable[[str], str | None]:
    pat = re.compile(pattern)
    return lambda name: stage if pat.search(name) else None


@dataclass(frozen=True)
class _Family:
    stages: tuple[str, ...]
    rule: Callable[[str], str | None]


_RESNET = ("stem+conv2", "conv3", "conv4", "conv5")
_MNV2 = ("stem+block_1-2", "block_3-5", "block_6-12", "block_13-16+top")
_MNV3_SMALL = ("stem+block_0", "block_1-2", "block_3-7", "block_8-10+top")
_MNV3_LARGE = ("stem+block_0-2", "block_3-5", "block_6-11", "block_12-14+top")
_EFF = ("stem+block1-2", "block3", "block4-5", "block6-7+top")
_EFF2 = ("stem+block1-2", "block3", "block4-5", "block6+top")
_DENSE = ("stem+conv2", "conv3", "conv4", "conv5")
_CONVNEXT = ("stem+stage_0", "stage_1", "stage_2", "stage_3")
_XCEPTION = ("entry_flow", "middle_flow", "exit_flow")
_VGG = ("block1", "block2", "block3", "block4", "block5")
_INCEPTION = ("stem", "mixed0-2", "mixed3-7", "mixed8-10")
_TINY = ("block1", "block2")


def _resnet_rule(name: str) -> str | None:
    if re.match(r"^(conv1|pool1)_", name):
        return _RESNET[0]
    if name in ("post_bn", "post_relu"):  # ResNetV2's final BatchNorm + ReLU
        return _RESNET[3]
    m = re.match(r"^conv([2-5])_", name)
    return _RESNET[int(m.group(1)) - 2] if m else None


def _mobilenet_v2_rule(name: str) -> str | None:
    if re.match(r"^(Conv1|bn_Conv1|Conv1_relu|expanded_conv_)", name):
        return _MNV2[0]
    if re.match(r"^(Conv_1|Conv_1_bn|out_relu)$", name):
        return _MNV2[3]
    return _blocks("block_", [range(1, 3), range(3, 6), range(6, 13), range(13, 17)], _MNV2)(name)


def _mobilenet_v3_rule(names: Sequence[str]) -> Callable[[str], str | None]:
    # The small and large variants share names but not strides: tell them apart by depth.
    large = any(n.startswith("expanded_conv_14_") for n in names)
    stages = _MNV3_LARGE if large else _MNV3_SMALL
    groups = [range(0, 3), range(3, 6), range(6, 12), range(12, 15)] if large else [
        range(0, 1), range(1, 3), range(3, 8), range(8, 11)
    ]
    table = {n: stages[i] for i, g in enumerate(groups) for n in g}

    def f(name: str) -> str | None:
        low = name.lower()
        if re.match(r"^conv(_bn|/batchnorm)?$", low):
            return stages[0]
        if re.match(r"^conv_1(_bn|/batchnorm)?$", low):
            return stages[3]
        m = re.match(r"^expanded_conv(?:_(\d+))?[_/]", name)
        if m:
            return table.get(int(m.group(1) or 0))
        return None

    return f


def _efficientnet_rule(stages: tuple[str, ...]) -> Callable[[str], str | None]:
    blocks = _blocks("block", [(1, 2), (3,), (4, 5), (6, 7)], stages)

    def f(name: str) -> str | None:
        if name.startswith("stem_"):
            return stages[0]
        if name.startswith("top_"):
            return stages[3]
        return blocks(name)

    return f


def _densenet_rule(name: str) -> str | None:
    if re.match(r"^(conv1_|pool1$)", name):
        return _DENSE[0]
    if name in ("bn", "relu"):
        return _DENSE[3]
    m = re.match(r"^(?:conv|pool)([2-5])_", name)
    return _DENSE[int(m.group(1)) - 2] if m else None


def _convnext_rule(name: str) -> str | None:
    # Layer names start with the application's name ("convnext_tiny_"): the search patterns need no prefix.
    if re.search(r"_(prestem_normalization|stem)$", name):
        return _CONVNEXT[0]
    m = re.search(r"_stage_(\d)_block_\d+_", name)
    if m:
        return _CONVNEXT[int(m.group(1))] if int(m.group(1)) < 4 else None
    m = re.search(r"_downsampling_block_(\d)$", name)
    if m:  # downsampling block i opens stage i + 1
        return _CONVNEXT[int(m.group(1)) + 1] if int(m.group(1)) < 3 else None
    return None


_FAMILIES: dict[str, _Family] = {
    "resnet": _Family(_RESNET, _resnet_rule),
    "resnet_v2": _Family(_RESNET, _resnet_rule),
    "mobilenet_v2": _Family(_MNV2, _mobilenet_v2_rule),
    "efficientnet": _Family(_EFF, _efficientnet_rule(_EFF)),
    "efficientnet_v2": _Family(_EFF2, _efficientnet_rule(_EFF2)),
    "xception": _Family(_XCEPTION, _blocks("block", [range(1, 5), range(5, 13), range(13, 15)], _XCEPTION)),
    "vgg": _Family(_VGG, _blocks("block", [(1,), (2,), (3,), (4,), (5,)], _VGG)),
    "densenet": _Family(_DENSE, _densenet_rule),
    "convnext": _Family(_CONVNEXT, _convnext_rule),
    "tiny": _Family(_TINY, _blocks("block", [(1,), (2,)], _TINY)),
}

#: Families whose stages depend on model order or on the variant (handled in :func:`assign`).
_SPECIAL = {"mobilenet_v3": 4, "inception_v3": len(_INCEPTION), "hub": 1}

FAMILIES: tuple[str, ...] = (*_FAMILIES, *_SPECIAL)


def num_stages(family: str) -> int:
    """How many stages ``freeze.depth`` can freeze for a family (so depth ranges over 0..N)."""
    if family in _FAMILIES:
        return len(_FAMILIES[family].stages)
    if family in _SPECIAL:
        return _SPECIAL[family]
    raise StageError(f"unknown backbone family {family!r}")


def stage_names(family: str, layers: Sequence[LayerInfo]) -> tuple[str, ...]:
    """The family's stages in input-to-output order (for ``layers`` of this backbone)."""
    if family in _FAMILIES:
        return _FAMILIES[family].stages
    if family == "mobilenet_v3":
        return _MNV3_LARGE if any(l.name.startswith("expanded_conv_14_") for l in layers) else _MNV3_SMALL
    if family == "inception_v3":
        return _INCEPTION
    if family == "hub":
        return (HUB_STAGE,)
    raise StageError(f"unknown backbone family {family!r}")


def assign(family: str, layers: Sequence[LayerInfo]) -> list[LayerInfo]:
    """``layers`` (model order) with ``stage`` set. Raises :class:`StageError` when a
    layer matches no stage or a stage matches no layer."""
    if family == "hub":
        out = [replace(l, stage=HUB_STAGE) for l in layers]
    elif family == "inception_v3":
        out = _assign_inception(layers)
    else:
        if family == "mobilenet_v3":
            rule = _mobilenet_v3_rule([l.name for l in layers])
        elif family in _FAMILIES:
            rule = _FAMILIES[family].rule
        else:
            raise StageError(f"unknown backbone family {family!r}")
        out = _assign_by_name(family, layers, rule)
    _check(family, out, stage_names(family, layers))
    return out


def _assign_by_name(
    family: str, layers: Sequence[LayerInfo], rule: Callable[[str], str | None]
) -> list[LayerInfo]:
    first = stage_names(family, layers)[0]
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


def _assign_inception(layers: Sequence[LayerInfo]) -> list[LayerInfo]:
    """Stages from model order: the stem ends with the last max-pooling before the
    first ``mixedK`` block output; then each layer belongs to the block whose
    ``mixedK`` output is the next one in order (``mixed9_0``/``mixed9_1`` are
    inner concatenations, not block outputs)."""
    block_out = [i for i, l in enumerate(layers) if re.fullmatch(r"mixed\d+", l.name)]
    if not block_out:
        raise StageError("inception_v3: no mixedK layers found")
    pools = [i for i, l in enumerate(layers[: block_out[0]]) if l.type == "MaxPooling2D"]
    if not pools:
        raise StageError("inception_v3: no stem max-pooling before mixed0")
    stem_end = pools[-1]
    group = {k: _INCEPTION[1] if k <= 2 else _INCEPTION[2] if k <= 7 else _INCEPTION[3] for k in range(11)}
    out: list[LayerInfo] = []
    outs = iter(block_out)
    nxt: int | None = next(outs)
    for i, layer in enumerate(layers):
        if i <= stem_end:
            stage = _INCEPTION[0]
        else:
            while nxt is not None and i > nxt:
                nxt = next(outs, None)
            if nxt is None:
                raise StageError(f"inception_v3: layer {layer.name} comes after the last mixedK output")
            k = int(layers[nxt].name[len("mixed") :])
            if k not in group:
                raise StageError(f"inception_v3: unexpected block {layers[nxt].name}")
            stage = group[k]
        out.append(replace(layer, stage=stage))
    return out


def _check(family: str, layers: Sequence[LayerInfo], stages: Sequence[str]) -> None:
    seen = {l.stage for l in layers}
    empty = [s for s in stages if s not in seen]
    if empty:
        raise StageError(f"{family}: stage(s) {', '.join(empty)} matched no layer")
    stray = seen - set(stages)
    if stray:
        raise StageError(f"{family}: layers assigned to unknown stage(s) {', '.join(sorted(stray))}")
