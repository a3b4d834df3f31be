"""The backbones tltui knows, as data: names, families, input sizes, preprocessing.

Core code (presets, TUI, freeze map) reads this without importing TensorFlow;
the worker turns an entry into a real ``keras.applications`` model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


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
