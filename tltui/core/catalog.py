"""The backbones tltui knows, as data: names, families, input sizes, preprocessing.

Core code (presets, TUI, freeze map) reads this without importing TensorFlow;
the worker turns an entry into a real ``keras.applications`` model.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BackboneSpec:
    name: str  # preset name, e.g. "resnet50"
    family: str  # stage-mapping family, e.g. "resnet"
    constructor: str  # attribute of keras.applications
    module: str  # keras.applications submodule holding preprocess_input
    default_size: int  # input side the ImageNet weights were trained at
    min_size: int  # smallest input side keras.applications accepts
    preprocess: str  # preprocess_input mode: caffe | torch | tf | none (inside the model)


_SPECS = [
    BackboneSpec("resnet50", "resnet", "ResNet50", "resnet50", 224, 32, "caffe"),
    BackboneSpec("resnet101", "resnet", "ResNet101", "resnet", 224, 32, "caffe"),
    BackboneSpec("resnet152", "resnet", "ResNet152", "resnet", 224, 32, "caffe"),
    BackboneSpec("resnet50v2", "resnet_v2", "ResNet50V2", "resnet_v2", 224, 32, "tf"),
    BackboneSpec("mobilenet_v2", "mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, 32, "tf"),
    BackboneSpec(
        "mobilenet_v3_small", "mobilenet_v3", "MobileNetV3Small", "mobilenet_v3", 224, 32, "none"
    ),
    BackboneSpec(
        "mobilenet_v3_large", "mobilenet_v3", "MobileNetV3Large", "mobilenet_v3", 224, 32, "none"
    ),
    BackboneSpec("efficientnet_b0", "efficientnet", "EfficientNetB0", "efficientnet", 224, 32, "none"),
    BackboneSpec("efficientnet_b1", "efficientnet", "EfficientNetB1", "efficientnet", 240, 32, "none"),
    BackboneSpec("efficientnet_b2", "efficientnet", "EfficientNetB2", "efficientnet", 260, 32, "none"),
    BackboneSpec("efficientnet_b3", "efficientnet", "EfficientNetB3", "efficientnet", 300, 32, "none"),
    BackboneSpec(
        "efficientnet_v2_b0", "efficientnet_v2", "EfficientNetV2B0", "efficientnet_v2", 224, 32, "none"
    ),
    BackboneSpec("inception_v3", "inception_v3", "InceptionV3", "inception_v3", 299, 75, "tf"),
    BackboneSpec("xception", "xception", "Xception", "xception", 299, 71, "tf"),
    BackboneSpec("vgg16", "vgg", "VGG16", "vgg16", 224, 32, "caffe"),
    BackboneSpec("vgg19", "vgg", "VGG19", "vgg19", 224, 32, "caffe"),
    BackboneSpec("densenet121", "densenet", "DenseNet121", "densenet", 224, 32, "torch"),
    BackboneSpec("convnext_tiny", "convnext", "ConvNeXtTiny", "convnext", 224, 32, "none"),
]

BACKBONES: dict[str, BackboneSpec] = {s.name: s for s in _SPECS}

#: Backbones registered only by tests (tiny, fast); the worker knows how to build them.
TEST_BACKBONES: dict[str, BackboneSpec] = {
    "tiny_cnn": BackboneSpec("tiny_cnn", "tiny", "", "", 32, 8, "tf"),
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


# --------------------------------------------------------------------------- ImageNet weights

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"
#: Folder and file-name stem of the ``*_weights_tf_dim_ordering_tf_kernels_notop.h5`` backbones.
_TF_KERNELS = {
    "resnet50": "resnet/resnet50", "resnet101": "resnet/resnet101", "resnet152": "resnet/resnet152",
    "resnet50v2": "resnet/resnet50v2", "inception_v3": "inception_v3/inception_v3",
    "xception": "xception/xception", "vgg16": "vgg16/vgg16", "vgg19": "vgg19/vgg19",
    "densenet121": "densenet/densenet121",
}
_MNV2_SIZES = (96, 128, 160, 192, 224)


@dataclass(frozen=True)
class WeightsFile:
    """The file ``keras.applications`` fetches for a backbone's ImageNet weights (include_top=False),
    kept in Keras's cache ``$KERAS_HOME/models`` (tests check this equals what Keras requests)."""

    fname: str
    origin: str


def imagenet_weights(name: str, image_size: tuple[int, int] | list[int], alpha: float | None = None) -> WeightsFile | None:
    """Which weights file ``model.backbone = name`` at ``image_size`` (and MobileNet ``alpha``)
    downloads; ``None`` for a backbone without ImageNet weights (test backbones, hub)."""
    if name in _TF_KERNELS:
        path = f"{_TF_KERNELS[name]}_weights_tf_dim_ordering_tf_kernels_notop.h5"
        return WeightsFile(path.rsplit("/", 1)[1], _KERAS_APPS + path)
    if name.startswith("efficientnet_b"):
        fname = f"efficientnetb{name[-1]}_notop.h5"
        return WeightsFile(fname, "https://storage.googleapis.com/keras-applications/" + fname)
    if name == "efficientnet_v2_b0":
        return WeightsFile("efficientnetv2-b0_notop.h5", _KERAS_APPS + "efficientnet_v2/efficientnetv2-b0_notop.h5")
    if name == "convnext_tiny":
        return WeightsFile("convnext_tiny_notop.h5", _KERAS_APPS + "convnext/convnext_tiny_notop.h5")
    if name == "mobilenet_v2":  # Keras picks the 224 file unless the input is square and one of its sizes
        h, w = image_size
        rows = h if h == w and h in _MNV2_SIZES else 224
        fname = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha or 1.0)}_{rows}_no_top.h5"
        return WeightsFile(fname, _KERAS_APPS + "mobilenet_v2/" + fname)
    if name in ("mobilenet_v3_small", "mobilenet_v3_large"):
        fname = f"weights_mobilenet_v3_{name.rsplit('_', 1)[1]}_224_{float(alpha or 1.0)}_float_no_top_v2.h5"
        return WeightsFile(fname, _KERAS_APPS + "mobilenet_v3/" + fname)
    return None


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
