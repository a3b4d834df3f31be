"""Build the classifier a preset describes: resize, preprocess, backbone, head.

Contract other worker modules rely on:

- input ``keras.Input((None, None, 3))``: RGB pixel values 0..255 (float32), any size;
- ``Resizing(image_size)`` then the backbone's own ``preprocess_input`` as built-in layers
  (keras.applications models that preprocess internally get nothing extra);
- the backbone as a nested functional model named ``backbone``;
- head: GlobalAveragePooling2D, optional Dropout, Dense(num_classes), float32 softmax.

Only built-in layers and ops, so ``model.keras`` loads with plain
``keras.models.load_model`` in a process that never imported tltui.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras

from tltui.core import catalog
from tltui.core.catalog import BackboneSpec
from tltui.core.presets import Preset
from tltui.worker.errors import ModelError, first_line
from tltui.worker.weights import BACKBONE_NAME, load_preset_weights

# keras.applications.imagenet_utils constants (channels_last)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def backbone_spec(preset: Preset) -> BackboneSpec:
    name = preset.model.backbone
    if catalog.is_hub(name):
        from tltui.worker.hub import hub_spec

        return hub_spec(preset)
    spec = catalog.lookup(name)
    if spec is None:
        raise ModelError(f"model.backbone: unknown backbone {name!r}")
    return spec


def tiny_cnn(input_shape: tuple[int, int, int], name: str = BACKBONE_NAME) -> keras.Model:
    """A two-stage CNN for tests (stages ``block1``, ``block2``); trains in milliseconds."""
    inp = keras.Input(shape=input_shape)
    x = inp
    for i, filters in ((1, 8), (2, 16)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu")(x)
    return keras.Model(inp, x, name=name)


def build_backbone(spec: BackboneSpec, preset: Preset, imagenet: bool) -> keras.Model:
    """The backbone, built as its family's ``build`` says (see :data:`BUILDERS`)."""
    family = catalog.family(spec.family)
    if preset.model.alpha is not None and not family.alpha:
        raise ModelError(f"model.alpha: only MobileNet backbones have a width multiplier, not {spec.name}")
    build = BUILDERS.get(family.build)
    if build is None:
        raise ModelError(f"backbone {spec.name}: family {family.name} has no builder {family.build!r}")
    backbone = build(spec, preset, imagenet)
    set_bn_momentum(backbone, preset.model.bn_momentum)
    return backbone


def _build_tiny_cnn(spec: BackboneSpec, preset: Preset, imagenet: bool) -> keras.Model:
    h, w = preset.data.image_size
    return tiny_cnn((h, w, 3))


def _build_application(spec: BackboneSpec, preset: Preset, imagenet: bool) -> keras.Model:
    """``keras.applications.<spec.constructor>`` without its top."""
    h, w = preset.data.image_size
    shape = (h, w, 3)
    kwargs: dict[str, object] = {
        "include_top": False,
        "weights": "imagenet" if imagenet else None,
        "input_shape": shape,
    }
    if preset.model.alpha is not None:
        kwargs["alpha"] = preset.model.alpha
    constructor = getattr(keras.applications, spec.constructor)
    # Built under the application's own name: EfficientNet names its weights file after the model
    # ("efficientnetb0_notop.h5"), ConvNeXt insists on "convnext_tiny", EfficientNetV2 looks its
    # block layout up by name. Only the nested model is renamed afterwards (ConvNeXt's layer names
    # keep the application's name: ``convnext_tiny_stage_0_block_0_...``).
    try:
        with _weights_download(spec):
            backbone = constructor(**kwargs)
    except ValueError as e:
        raise ModelError(f"model.backbone = {spec.name!r}: {first_line(e)}") from e
    backbone.name = BACKBONE_NAME
    return backbone


#: How each ``Family.build`` is built (``hub``: :func:`tltui.worker.hub.build_hub_classifier`
#: builds the whole classifier, see :func:`build_classifier`).
BUILDERS: dict[str, Callable[[BackboneSpec, Preset, bool], keras.Model]] = {
    "application": _build_application,
    "tiny_cnn": _build_tiny_cnn,
}


@contextlib.contextmanager
def _weights_download(spec: BackboneSpec) -> Iterator[None]:
    """Turn a failed fetch of the ImageNet weights into one true line: which file, from where,
    and where Keras looks for it, so it can be copied in by hand on a box without internet.

    keras.applications call ``keras.src.utils.file_utils.get_file`` by module attribute; the
    wrapper only translates errors, every argument goes to Keras unchanged.
    """
    from keras.src.utils import file_utils

    from tltui.worker import progress

    real = file_utils.get_file
    real_retrieve = file_utils.urlretrieve
    emit = progress.sink()

    def urlretrieve(url: str, filename: str, reporthook: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Keras's download, with its progress also sent as events (bytes of the weights file)."""
        reporter = progress.Reporter(emit, "weights", None, "bytes", f"downloading the ImageNet weights of {spec.name}")

        def hook(block_num: int, block_size: int, total_size: int) -> None:
            if reporter.total is None and total_size > 0:
                reporter.total = total_size
            reporter.update(min(block_num * block_size, total_size) if total_size > 0 else block_num * block_size)
            if reporthook is not None:
                reporthook(block_num, block_size, total_size)

        out = real_retrieve(url, filename, hook, *args, **kwargs)
        reporter.finish()
        return out

    def get_file(fname: str | None = None, origin: str | None = None, *args: Any, **kwargs: Any) -> str:
        try:
            return real(fname, origin, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - URL fetch failure, hash mismatch, disk full
            target = catalog.keras_cache_path(
                str(fname), kwargs.get("cache_subdir", "datasets"), kwargs.get("cache_dir")
            )
            reason = first_line(e).removeprefix(f"URL fetch failure on {origin}: ")
            raise ModelError(
                f'model.weights = "imagenet": could not fetch {fname} for {spec.name} from {origin} '
                f'({reason}); without internet, copy that file to {target}, or set model.weights = "none"'
            ) from e

    file_utils.get_file = get_file
    file_utils.urlretrieve = urlretrieve
    try:
        yield
    finally:
        file_utils.get_file = real
        file_utils.urlretrieve = real_retrieve


def set_bn_momentum(backbone: keras.Model, momentum: float | None) -> None:
    """Short runs from scratch: keras.applications' BatchNorm momentum (0.99 or 0.999) makes the
    moving statistics lag far behind the weights, so validation stays at chance for many epochs."""
    if momentum is None:
        return
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def add_preprocessing(x: keras.KerasTensor, spec: BackboneSpec) -> keras.KerasTensor:
    """The backbone's ``preprocess_input`` (by mode) as built-in, serializable layers/ops."""
    mode = spec.preprocess
    if mode == "tf":  # [-1, 1]
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess", dtype="float32")(x)
    if mode == "torch":  # [0, 1] then ImageNet mean/std per channel
        x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess_scale", dtype="float32")(x)
        return keras.layers.Normalization(
            mean=list(_TORCH_MEAN), variance=[s * s for s in _TORCH_STD], name="preprocess", dtype="float32"
        )(x)
    if mode == "caffe":  # RGB -> BGR, minus the ImageNet mean, no scaling
        x = keras.ops.flip(x, axis=-1)
        return keras.layers.Normalization(
            mean=list(_CAFFE_MEAN_BGR), variance=[1.0, 1.0, 1.0], name="preprocess", dtype="float32"
        )(x)
    if mode == "none":  # the application preprocesses inside itself
        return x
    raise ModelError(f"backbone {spec.name}: unknown preprocess mode {mode!r}")


def build_classifier(
    preset: Preset, num_classes: int, *, runs_dir: str | Path | None = None
) -> tuple[keras.Model, keras.Model]:
    """The full model and its nested backbone, with the preset's weights loaded.

    ``runs_dir`` (the workspace's ``runs/`` folder) is needed only for ``run:RUN_ID`` weights.
    """
    if catalog.is_hub(preset.model.backbone):
        from tltui.worker.hub import build_hub_classifier

        return build_hub_classifier(preset, num_classes, runs_dir=runs_dir)
    if num_classes < 2:
        raise ModelError(f"the data has {num_classes} class(es); a classifier needs at least 2")
    spec = backbone_spec(preset)
    weights = preset.model.weights
    backbone = build_backbone(spec, preset, imagenet=weights == "imagenet")
    h, w = preset.data.image_size
    inp = keras.Input(shape=(None, None, 3), name="image", dtype="float32")
    x = keras.layers.Resizing(h, w, name="resize", dtype="float32")(inp)
    x = add_preprocessing(x, spec)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if preset.model.dropout > 0:
        x = keras.layers.Dropout(preset.model.dropout, name="dropout")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    out = keras.layers.Activation("softmax", dtype="float32", name="predictions")(x)
    model = keras.Model(inp, out, name=_model_name(spec))
    load_preset_weights(model, backbone, weights, runs_dir)
    return model, backbone


def _model_name(spec: BackboneSpec) -> str:
    return f"{spec.name}_classifier"


def fetch_imagenet_weights(spec: BackboneSpec, image_size: tuple[int, int], alpha: float | None = None) -> Path:
    """Download (or verify in the cache) the ImageNet weights of ``spec`` exactly as a run would:
    by building the application with ``weights="imagenet"``, so Keras checks the file's hash.
    Raises :class:`ModelError` (one line) when it cannot."""
    kwargs: dict[str, Any] = {"include_top": False, "weights": "imagenet", "input_shape": (*image_size, 3)}
    if alpha is not None:
        kwargs["alpha"] = alpha
    try:
        with _weights_download(spec):
            getattr(keras.applications, spec.constructor)(**kwargs)
    except ValueError as e:
        raise ModelError(f"{spec.name}: {first_line(e)}") from e
    wf = catalog.imagenet_weights(spec.name, image_size, alpha)
    assert wf is not None
    return catalog.keras_cache_path(wf.fname)


def main(argv: list[str]) -> int:
    """``python -m tltui.worker weights-fetch BACKBONE HEIGHT WIDTH [--alpha A]``: Keras's download
    progress on stderr, then one JSON line on stdout: ``{"path", "bytes"}`` or ``{"error"}``."""
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(prog="tltui-worker weights-fetch")
    p.add_argument("backbone")
    p.add_argument("height", type=int)
    p.add_argument("width", type=int)
    p.add_argument("--alpha", type=float)
    args = p.parse_args(argv)
    spec = catalog.lookup(args.backbone)
    if spec is None or catalog.imagenet_weights(spec.name, (args.height, args.width)) is None:
        print(json.dumps({"error": f"{args.backbone}: no ImageNet weights to fetch"}))
        return 2
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras prints its progress bar on stdout
            path = fetch_imagenet_weights(spec, (args.height, args.width), args.alpha)
    except ModelError as e:
        print(json.dumps({"error": str(e)}))
        return 2
    print(json.dumps({"path": str(path), "bytes": path.stat().st_size if path.is_file() else None}))
    return 0
