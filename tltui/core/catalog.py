"""The backbones tltui knows, as data: their families (stages, preprocessing, build, how the
layer map groups layers into blocks), names, input sizes, and the ImageNet weights file each fetches.

Core code (presets, TUI, freeze map) reads this without importing TensorFlow;
the worker turns an entry into a real ``keras.applications`` model, driven by the
names stored here (``constructor``, ``Family.build``, ``Family.preprocess``).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tltui.core.stages import HUB_STAGE, LayerInfo, NameRule, StageError, assign_by_name, blocks, check_stages

# --------------------------------------------------------------------------- backbone families
#
# A family is everything tltui does the same way for a group of backbones: how layers get their
# stages, the input preprocessing, whether ``model.alpha`` applies, how the worker builds it, how
# the layer map names its blocks. Adding a family: a record in _FAMILY_LIST (with its rule below),
# its backbones in _SPECS (each with its ImageNet weights file), and its row in README.md's stage
# table; CONTRIBUTING.md ("Add a backbone family") names the tests that prove each part.

#: ``preprocess_input`` modes (the worker turns each into built-in layers): ``caffe`` (RGB->BGR minus
#: the ImageNet mean), ``torch`` ([0, 1] then mean/std), ``tf`` ([-1, 1]), ``none`` (inside the model).
PREPROCESS_MODES = ("caffe", "torch", "tf", "none")

#: Layers in model order -> the same layers with their stage (families named by Keras' counters).
OrderRule = Callable[[Sequence[LayerInfo]], list[LayerInfo]]


@dataclass(frozen=True)
class Variant:
    """One stage map of a family whose variants share layer names but not strides (MobileNetV3).

    The first variant whose ``marker`` starts some layer's name is chosen, else the unmarked one."""

    label: str  # "small", "large" (README: "mobilenet_v3 large")
    stages: tuple[str, ...]
    rule: NameRule
    marker: str = ""  # a layer-name prefix only this variant has; "" for the fallback


@dataclass(frozen=True)
class Family:
    """A backbone family: exactly one of ``rule``, ``variants``, ``by_order`` or ``opaque`` says how
    layers get their stages (listed input-to-output in ``stages``; ``freeze.depth = d`` freezes the
    first ``d``)."""

    name: str  # as stored in descriptions and freeze maps ("family")
    stages: tuple[str, ...] = ()  # with variants: the fallback variant's (all have as many)
    rule: NameRule | None = None  # stage from a layer's name (auto-named layers follow the one before)
    variants: tuple[Variant, ...] = ()
    by_order: OrderRule | None = None  # stages from model order (names mean nothing)
    opaque: bool = False  # one stage; its insides are not Keras layers (TF Hub)
    preprocess: str = "none"  # one of PREPROCESS_MODES
    alpha: bool = False  # ``model.alpha`` (width multiplier) applies
    build: str = "application"  # how the worker builds it: "application" (keras.applications.<constructor>),
    #                            "tiny_cnn" (the tests' CNN), "hub" (a TF Hub module, tltui.worker.hub)
    feature_cache: bool = True  # a fully frozen backbone's features may be cached
    block_pattern: str = ""  # a regex whose first group names a layer's block (the layer map groups by it)

    def __post_init__(self) -> None:
        ways = [self.rule is not None, bool(self.variants), self.by_order is not None, self.opaque]
        if sum(ways) != 1:
            raise ValueError(f"family {self.name}: give exactly one of rule, variants, by_order, opaque")
        if self.variants:
            fallback = [v for v in self.variants if not v.marker]
            if len(fallback) != 1 or len({len(v.stages) for v in self.variants}) != 1:
                raise ValueError(f"family {self.name}: variants need one unmarked fallback and equal stage counts")
            if not self.stages:
                object.__setattr__(self, "stages", fallback[0].stages)
        if not self.stages or (self.opaque and len(self.stages) != 1):
            raise ValueError(f"family {self.name}: no stages (an opaque family has exactly one)")
        if self.preprocess not in PREPROCESS_MODES:
            raise ValueError(f"family {self.name}: preprocess {self.preprocess!r} is not one of {PREPROCESS_MODES}")
        if self.block_pattern and re.compile(self.block_pattern).groups < 1:
            raise ValueError(f"family {self.name}: block_pattern needs a group that names the block")

    @property
    def num_stages(self) -> int:
        """How many stages ``freeze.depth`` ranges over (0..N or "all")."""
        return len(self.stages)

    def variant(self, layers: Sequence[LayerInfo]) -> Variant:
        """The stage map that fits ``layers`` (a family without variants is its own)."""
        if not self.variants:
            return Variant("", self.stages, self.rule or (lambda _name: None))
        names = [l.name for l in layers]
        for v in self.variants:
            if v.marker and any(n.startswith(v.marker) for n in names):
                return v
        return next(v for v in self.variants if not v.marker)

    def stage_names(self, layers: Sequence[LayerInfo]) -> tuple[str, ...]:
        """The stages of this backbone (``layers``), input to output."""
        return self.variant(layers).stages

    def block_of(self, layer_name: str) -> str | None:
        """The block a layer belongs to, as the layer map groups a stage's layers (``conv3_block2``);
        ``None``: the layer is in no block (or the family names none)."""
        m = re.search(self.block_pattern, layer_name) if self.block_pattern else None
        return m.group(1) if m else None

    def assign(self, layers: Sequence[LayerInfo]) -> list[LayerInfo]:
        """``layers`` (model order) with their stage; :class:`StageError` when a layer fits no stage
        or a stage gets no layer."""
        v = self.variant(layers)
        if self.opaque:
            out = [replace(l, stage=v.stages[0]) for l in layers]
        elif self.by_order is not None:
            out = self.by_order(layers)
        else:
            out = assign_by_name(self.name, layers, v.rule, v.stages)
        check_stages(self.name, out, v.stages)
        return out


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
    return blocks("block_", [range(1, 3), range(3, 6), range(6, 13), range(13, 17)], _MNV2)(name)


def _mobilenet_v3_rule(names: tuple[str, ...], groups: Sequence[Sequence[int]]) -> NameRule:
    # The small and large variants share names but not strides: each has its block grouping.
    table = {n: names[i] for i, g in enumerate(groups) for n in g}

    def f(name: str) -> str | None:
        low = name.lower()
        if re.match(r"^conv(_bn|/batchnorm)?$", low):
            return names[0]
        if re.match(r"^conv_1(_bn|/batchnorm)?$", low):
            return names[3]
        m = re.match(r"^expanded_conv(?:_(\d+))?[_/]", name)
        if m:
            return table.get(int(m.group(1) or 0))
        return None

    return f


def _efficientnet_rule(names: tuple[str, ...]) -> NameRule:
    by_block = blocks("block", [(1, 2), (3,), (4, 5), (6, 7)], names)

    def f(name: str) -> str | None:
        if name.startswith("stem_"):
            return names[0]
        if name.startswith("top_"):
            return names[3]
        return by_block(name)

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


def _inception_by_order(layers: Sequence[LayerInfo]) -> list[LayerInfo]:
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


#: The family of a ``hub:`` backbone: one opaque stage, no feature cache.
HUB_FAMILY = "hub"

# How Keras names the blocks inside a stage (the layer map's grouping; ``Family.block_pattern``).
_CONV_BLOCKS = r"^(conv\d+_block\d+)_"  # conv3_block2_1_conv
_BLOCK_N = r"^(block_?\d+[a-z]?)_"  # block2a_dwconv (EfficientNet), block4_conv1 (Xception, VGG)

_FAMILY_LIST = [
    Family("resnet", _RESNET, _resnet_rule, preprocess="caffe", block_pattern=_CONV_BLOCKS),
    Family("resnet_v2", _RESNET, _resnet_rule, preprocess="tf", block_pattern=_CONV_BLOCKS),
    Family(
        "mobilenet_v2",
        _MNV2,
        _mobilenet_v2_rule,
        preprocess="tf",
        alpha=True,
        block_pattern=r"^(block_\d+|expanded_conv)_",  # block_3_expand; block 0 is expanded_conv_project
    ),
    Family(
        "mobilenet_v3",
        variants=(
            Variant(
                "small",
                _MNV3_SMALL,
                _mobilenet_v3_rule(_MNV3_SMALL, [range(0, 1), range(1, 3), range(3, 8), range(8, 11)]),
            ),
            Variant(
                "large",
                _MNV3_LARGE,
                _mobilenet_v3_rule(_MNV3_LARGE, [range(0, 3), range(3, 6), range(6, 12), range(12, 15)]),
                marker="expanded_conv_14_",
            ),
        ),
        alpha=True,
        block_pattern=r"^(expanded_conv(?:_\d+)?)[_/]",  # expanded_conv_3_expand, expanded_conv/project
    ),
    Family("efficientnet", _EFF, _efficientnet_rule(_EFF), block_pattern=_BLOCK_N),
    Family("efficientnet_v2", _EFF2, _efficientnet_rule(_EFF2), block_pattern=_BLOCK_N),
    Family("inception_v3", _INCEPTION, by_order=_inception_by_order, preprocess="tf"),
    Family(
        "xception",
        _XCEPTION,
        blocks("block", [range(1, 5), range(5, 13), range(13, 15)], _XCEPTION),
        preprocess="tf",
        block_pattern=_BLOCK_N,
    ),
    Family(
        "vgg", _VGG, blocks("block", [(1,), (2,), (3,), (4,), (5,)], _VGG), preprocess="caffe", block_pattern=_BLOCK_N
    ),
    Family("densenet", _DENSE, _densenet_rule, preprocess="torch", block_pattern=_CONV_BLOCKS),
    # the application's name leads every layer name (convnext_tiny_stage_1_block_2_depthwise_conv)
    Family("convnext", _CONVNEXT, _convnext_rule, block_pattern=r"(stage_\d+_block_\d+)_"),
    Family(HUB_FAMILY, (HUB_STAGE,), opaque=True, build="hub", feature_cache=False),
    Family(
        "tiny", _TINY, blocks("block", [(1,), (2,)], _TINY), preprocess="tf", build="tiny_cnn", block_pattern=_BLOCK_N
    ),
]

#: Every backbone family by name: the one place a family is defined.
FAMILIES: dict[str, Family] = {f.name: f for f in _FAMILY_LIST}


def family(name: str) -> Family:
    """The family record ``name``; :class:`~tltui.core.stages.StageError` for an unknown one."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise StageError(f"unknown backbone family {name!r}") from None


# --------------------------------------------------------------------------- ImageNet weights

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class WeightsFile:
    """The file ``keras.applications`` fetches for a backbone's ImageNet weights (include_top=False),
    kept in Keras's cache ``$KERAS_HOME/models`` (tests check this equals what Keras requests)."""

    fname: str
    origin: str


@dataclass(frozen=True)
class Weights:
    """How ``keras.applications`` names a backbone's ImageNet weights file (include_top=False):
    ``origin`` is its URL, whose last part is the file's name. In it, ``{alpha}`` stands for the width
    multiplier (``1.0`` when unset) and ``{side}`` for the input side when the input is square and one
    of ``sides``, else the backbone's ``default_size`` (Keras publishes a MobileNetV2 file per side)."""

    origin: str
    sides: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        try:
            url = self.origin.format(alpha=1.0, side=1)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"weights {self.origin!r}: only {{alpha}} and {{side}} are filled in ({e!r})") from None
        if ("{side}" in self.origin) != bool(self.sides):
            raise ValueError(f"weights {self.origin!r}: {{side}} and sides go together")
        if not url.endswith(".h5"):
            raise ValueError(f"weights {self.origin!r}: expected the URL of an .h5 file")

    def file(self, image_size: tuple[int, int] | list[int], alpha: float | None, default_side: int) -> WeightsFile:
        """The file for an input of ``image_size`` (and MobileNet ``alpha``)."""
        h, w = image_size
        side = h if h == w and h in self.sides else default_side
        url = self.origin.format(alpha=float(alpha or 1.0), side=side)
        return WeightsFile(url.rsplit("/", 1)[1], url)


def _keras_apps(path: str, sides: tuple[int, ...] = ()) -> Weights:
    return Weights(_KERAS_APPS + path, sides)


def _tf_kernels(stem: str) -> Weights:
    """``{stem}_weights_tf_dim_ordering_tf_kernels_notop.h5``, the name of the older applications' files."""
    return _keras_apps(f"{stem}_weights_tf_dim_ordering_tf_kernels_notop.h5")


def _efficientnet(variant: str) -> Weights:
    return Weights(f"https://storage.googleapis.com/keras-applications/efficientnet{variant}_notop.h5")


# --------------------------------------------------------------------------- backbones


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone a preset can name; what it shares with its family is in :func:`family`."""

    name: str  # preset name, e.g. "resnet50"
    family: str  # a key of FAMILIES, e.g. "resnet"
    constructor: str  # attribute of keras.applications (its build name: "ResNet50")
    module: str  # keras.applications submodule holding preprocess_input
    default_size: int  # input side the ImageNet weights were trained at
    min_size: int  # smallest input side keras.applications accepts
    preprocess: str = ""  # preprocess_input mode (PREPROCESS_MODES); "": the family's
    weights: Weights | None = None  # its ImageNet weights file; None: it has none

    def __post_init__(self) -> None:
        if not self.preprocess:
            object.__setattr__(self, "preprocess", family(self.family).preprocess)
        if self.weights is not None and self.weights.sides and self.default_size not in self.weights.sides:
            raise ValueError(f"backbone {self.name}: its weights' sides miss its default size {self.default_size}")

    def imagenet_weights(
        self, image_size: tuple[int, int] | list[int], alpha: float | None = None
    ) -> WeightsFile | None:
        """The file ``model.weights = "imagenet"`` downloads at ``image_size`` (and ``alpha``); ``None``: none."""
        return self.weights.file(image_size, alpha, self.default_size) if self.weights is not None else None


_SPECS = [
    BackboneSpec("resnet50", "resnet", "ResNet50", "resnet50", 224, 32, weights=_tf_kernels("resnet/resnet50")),
    BackboneSpec("resnet101", "resnet", "ResNet101", "resnet", 224, 32, weights=_tf_kernels("resnet/resnet101")),
    BackboneSpec("resnet152", "resnet", "ResNet152", "resnet", 224, 32, weights=_tf_kernels("resnet/resnet152")),
    BackboneSpec(
        "resnet50v2", "resnet_v2", "ResNet50V2", "resnet_v2", 224, 32, weights=_tf_kernels("resnet/resnet50v2")
    ),
    BackboneSpec(
        "mobilenet_v2",
        "mobilenet_v2",
        "MobileNetV2",
        "mobilenet_v2",
        224,
        32,
        weights=_keras_apps(
            "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{side}_no_top.h5",
            sides=(96, 128, 160, 192, 224),
        ),
    ),
    BackboneSpec(
        "mobilenet_v3_small",
        "mobilenet_v3",
        "MobileNetV3Small",
        "mobilenet_v3",
        224,
        32,
        weights=_keras_apps("mobilenet_v3/weights_mobilenet_v3_small_224_{alpha}_float_no_top_v2.h5"),
    ),
    BackboneSpec(
        "mobilenet_v3_large",
        "mobilenet_v3",
        "MobileNetV3Large",
        "mobilenet_v3",
        224,
        32,
        weights=_keras_apps("mobilenet_v3/weights_mobilenet_v3_large_224_{alpha}_float_no_top_v2.h5"),
    ),
    BackboneSpec(
        "efficientnet_b0", "efficientnet", "EfficientNetB0", "efficientnet", 224, 32, weights=_efficientnet("b0")
    ),
    BackboneSpec(
        "efficientnet_b1", "efficientnet", "EfficientNetB1", "efficientnet", 240, 32, weights=_efficientnet("b1")
    ),
    BackboneSpec(
        "efficientnet_b2", "efficientnet", "EfficientNetB2", "efficientnet", 260, 32, weights=_efficientnet("b2")
    ),
    BackboneSpec(
        "efficientnet_b3", "efficientnet", "EfficientNetB3", "efficientnet", 300, 32, weights=_efficientnet("b3")
    ),
    BackboneSpec(
        "efficientnet_v2_b0",
        "efficientnet_v2",
        "EfficientNetV2B0",
        "efficientnet_v2",
        224,
        32,
        weights=_keras_apps("efficientnet_v2/efficientnetv2-b0_notop.h5"),
    ),
    BackboneSpec(
        "inception_v3",
        "inception_v3",
        "InceptionV3",
        "inception_v3",
        299,
        75,
        weights=_tf_kernels("inception_v3/inception_v3"),
    ),
    BackboneSpec("xception", "xception", "Xception", "xception", 299, 71, weights=_tf_kernels("xception/xception")),
    BackboneSpec("vgg16", "vgg", "VGG16", "vgg16", 224, 32, weights=_tf_kernels("vgg16/vgg16")),
    BackboneSpec("vgg19", "vgg", "VGG19", "vgg19", 224, 32, weights=_tf_kernels("vgg19/vgg19")),
    BackboneSpec(
        "densenet121", "densenet", "DenseNet121", "densenet", 224, 32, weights=_tf_kernels("densenet/densenet121")
    ),
    BackboneSpec(
        "convnext_tiny",
        "convnext",
        "ConvNeXtTiny",
        "convnext",
        224,
        32,
        weights=_keras_apps("convnext/convnext_tiny_notop.h5"),
    ),
]

BACKBONES: dict[str, BackboneSpec] = {s.name: s for s in _SPECS}

#: Backbones registered only by tests (tiny, fast); the worker knows how to build them.
TEST_BACKBONES: dict[str, BackboneSpec] = {
    "tiny_cnn": BackboneSpec("tiny_cnn", "tiny", "", "", 32, 8),
}

HUB_PREFIX = "hub:"


def lookup(name: str) -> BackboneSpec | None:
    """The spec for a preset's backbone name; test backbones only when
    ``TLTUI_TEST_BACKBONES=1`` (set by the test suite)."""
    spec = BACKBONES.get(name)
    if spec is None and os.environ.get("TLTUI_TEST_BACKBONES") == "1":
        spec = TEST_BACKBONES.get(name)
    return spec


def is_hub(name: str) -> bool:
    return name.startswith(HUB_PREFIX)


def hub_spec(name: str, image_size: tuple[int, int] | list[int]) -> BackboneSpec:
    """The spec of a ``hub:`` backbone at the preset's input size (family ``hub``)."""
    return BackboneSpec(name, HUB_FAMILY, "", "", int(image_size[0]), 8)


def family_of(name: str) -> Family | None:
    """The family of a preset's backbone name (``hub:`` ones included); ``None``: unknown backbone."""
    if is_hub(name):
        return FAMILIES[HUB_FAMILY]
    spec = lookup(name)
    return FAMILIES[spec.family] if spec is not None else None


def imagenet_weights(
    name: str, image_size: tuple[int, int] | list[int], alpha: float | None = None
) -> WeightsFile | None:
    """Which weights file ``model.backbone = name`` at ``image_size`` (and MobileNet ``alpha``)
    downloads (its spec's ``weights``); ``None`` for a backbone without ImageNet weights (test
    backbones, hub) or an unknown one."""
    spec = lookup(name)
    return spec.imagenet_weights(image_size, alpha) if spec is not None else None


# --------------------------------------------------------------------------- Keras's weights cache


def keras_cache_path(fname: str, cache_subdir: str = "models", cache_dir: str | None = None) -> Path:
    """Where ``keras.utils.get_file`` keeps ``fname``, by Keras's own rules: ``cache_dir``, else
    ``$KERAS_HOME``, else ``~/.keras`` (``/tmp/.keras`` when home is not writable); a base that is
    not writable falls back to ``/tmp/.keras``; then ``cache_subdir``."""
    if cache_dir is None:
        if "KERAS_HOME" in os.environ:
            cache_dir = os.environ["KERAS_HOME"]
        else:
            home = os.path.expanduser("~")
            cache_dir = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    base = os.path.expanduser(cache_dir)
    if not _writable(base):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return Path(base) / cache_subdir / fname


def is_cached(path: Path) -> bool:
    """A weights file Keras would find (a 0-byte file, what a download killed at once leaves, is not;
    a truncated one fails Keras's hash check when a run loads it, and is fetched again)."""
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def _writable(path: str) -> bool:
    """Writable, or creatable (importing Keras creates ``$KERAS_HOME``; ``check`` does not import it)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return os.access(p, os.W_OK)
