"""TF Hub backbones inside a Keras 3 model, and the ``hub-fetch`` job.

Resolves ``hub:`` handles (local folders as they are; downloads into the workspace
cache), checks the module against the preset (input size, feature size), builds the
classifier around a :class:`tltui.worker.hub_layer.HubModule`, and describes it for
the freeze map. Importing this module registers ``HubModule`` for ``.keras`` loading.

``python -m tltui.worker hub-fetch HANDLE --cache DIR`` downloads a handle into the
cache, loads it, and prints one JSON line describing it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tltui.core import catalog, hubcache
from tltui.core.catalog import BackboneSpec
from tltui.core.hubcache import Handle, HubError
from tltui.core.presets import Preset
from tltui.worker import progress
from tltui.worker.errors import ModelError
from tltui.worker.hub_layer import HubModule, ModuleInfo, inspect_module, module_variables, signature_input
from tltui.worker.weights import BACKBONE_NAME, load_preset_weights

__all__ = ["HubModule", "build_hub_classifier", "hub_freeze_map", "main", "resolve"]

HUB_LAYER_NAME = "hub_module"
#: Image side used to ask a module that accepts any size for its output size.
PROBE_SIZE = 224


# --------------------------------------------------------------------------- resolving handles


def cache_for(runs_dir: str | os.PathLike[str] | None) -> Path:
    """The hub cache a worker uses: its workspace's ``cache/tfhub`` when the runs folder is
    known, else ``$TFHUB_CACHE_DIR``, else the default workspace's."""
    if runs_dir is not None:
        return hubcache.cache_root(Path(runs_dir).resolve().parent)
    env = os.environ.get("TFHUB_CACHE_DIR")
    if env:
        return Path(env)
    from tltui.core.workspace import default_home

    return hubcache.cache_root(default_home())


def resolve(handle: Handle, cache: Path, *, timeout: float = hubcache.DEFAULT_TIMEOUT) -> Path:
    """A local SavedModel folder for ``handle``, downloading into ``cache`` if needed.

    Raises :class:`HubError` (one line) for a missing folder, no network, or a broken cache.
    """
    if handle.kind == "local":
        return hubcache.local_saved_model(handle)
    reporter = progress.Reporter(progress.sink(), "download", None, "bytes", f"downloading {handle.label}")
    if handle.kind in ("tarball", "kaggle"):

        def report(done: int, total: int | None) -> None:
            reporter.total = total
            reporter.update(done)

        folder = hubcache.fetch_archive(handle, cache, timeout=timeout, progress=report)
        reporter.finish()
        return folder
    folder = hubcache.module_folder(cache, handle)

    # tensorflow_hub downloads into FOLDER.<uuid>.tmp and renames it when complete
    def tick() -> None:
        reporter.update(
            progress.tree_bytes(cache, match=lambda p: p.name.startswith(folder.name) and p.name.endswith(".tmp"))
        )

    with progress.polling(tick, name="hub-progress"):
        path = _resolve_with_tensorflow_hub(handle, cache, timeout)
    reporter.finish()
    return path


def _resolve_with_tensorflow_hub(handle: Handle, cache: Path, timeout: float) -> Path:
    folder = hubcache.module_folder(cache, handle)
    status = hubcache.inspect(folder)
    if status.state == "ready":
        return folder
    if status.state in ("incomplete", "stale_lock"):
        hubcache.repair(status, handle)
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["TFHUB_CACHE_DIR"] = str(cache)
    import tensorflow_hub as hub

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # tensorflow_hub opens URLs without a timeout
    try:
        path = Path(hub.resolve(handle.raw))
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise HubError(hubcache.offline_message(handle, cache, hubcache.describe_error(e))) from None
    finally:
        socket.setdefaulttimeout(previous)
    if not hubcache.is_saved_model(path):
        raise HubError(
            f"{handle.label}: the cached copy in {path} has no saved_model.pb (a half-deleted cache); "
            f"delete {path} and run `tltui hub fetch {handle.raw}` again"
        )
    return path


# --------------------------------------------------------------------------- building the classifier


def hub_spec(preset: Preset) -> BackboneSpec:
    """The catalog-style spec of a ``hub:`` backbone (family ``hub``: one opaque stage)."""
    return catalog.hub_spec(preset.model.backbone, preset.data.image_size)


def load_hub_layer(path: Path, preset: Preset) -> HubModule:
    """A :class:`HubModule` for a resolved SavedModel, checked against the preset. Raises :class:`HubError`."""
    label = preset.model.backbone
    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise HubError(f"{label}: {path} does not load as a SavedModel ({hubcache.describe_error(e)})") from None
    info = inspect_module(loaded, label)
    h, w = preset.data.image_size
    want_h, want_w = info.input_size
    if (want_h is not None and want_h != h) or (want_w is not None and want_w != w):
        raise HubError(
            f"data.image_size = [{h}, {w}] but {label} takes {want_h}x{want_w} images; "
            f"set data.image_size = [{want_h}, {want_w}]"
        )
    dim = _probe_output_dim(loaded, info, h, w, label)
    declared = preset.model.hub_output_dim
    if declared is not None and declared != dim:
        raise HubError(f"model.hub_output_dim = {declared} but {label} outputs {dim} features; set it to {dim}")
    layer = HubModule(
        handle=label, output_dim=dim, batchnorm=preset.freeze.batchnorm, name=HUB_LAYER_NAME, **info.to_config()
    )
    layer._attach(path, loaded)
    return layer


def _probe_output_dim(loaded: Any, info: ModuleInfo, h: int, w: int, label: str) -> int:
    x = tf.zeros((1, h, w, 3), tf.float32)
    try:
        if info.endpoint == "__call__":
            out = loaded(x, training=False) if info.training_argument else loaded(x)
        else:
            out = loaded.signatures[info.endpoint](**{signature_input(info.endpoint, info.input_key): x})
    except (TypeError, ValueError, tf.errors.OpError) as e:
        raise HubError(f"{label}: calling it on a {h}x{w} image failed ({hubcache.describe_error(e)})") from None
    if isinstance(out, dict):
        out = out[info.output_key]
    if len(out.shape) != 2:
        raise HubError(
            f"{label}: outputs shape {tuple(out.shape)}, not a feature vector (batch, features); "
            "use a feature_vector module"
        )
    return int(out.shape[-1])


def build_hub_classifier(
    preset: Preset, num_classes: int, *, runs_dir: str | os.PathLike[str] | None = None
) -> tuple[keras.Model, keras.Model]:
    """The full model and its nested backbone for a ``hub:`` preset.

    Input: ``(None, None, 3)`` pixels 0..255; ``Resizing(image_size)``, ``Rescaling(1/255)``
    (TF Hub image modules take [0, 1]), the backbone (a functional model around the
    :class:`HubModule`), then optional Dropout, Dense(num_classes), float32 softmax.
    Raises :class:`tltui.worker.errors.ModelError` (one line) for any user-fixable problem.
    """

    if num_classes < 2:
        raise ModelError(f"the data has {num_classes} class(es); a classifier needs at least 2")
    if preset.model.weights == "none":
        raise ModelError('model.weights = "none": a hub backbone brings its own weights; remove model.weights')
    try:
        handle = hubcache.parse(preset.model.backbone)
        path = resolve(handle, cache_for(runs_dir))
        layer = load_hub_layer(path, preset)
    except HubError as e:
        raise ModelError(str(e)) from None
    h, w = preset.data.image_size
    bb_in = keras.Input(shape=(h, w, 3), name="hub_input", dtype="float32")
    backbone = keras.Model(bb_in, layer(bb_in), name=BACKBONE_NAME)
    inp = keras.Input(shape=(None, None, 3), name="image", dtype="float32")
    x = keras.layers.Resizing(h, w, name="resize", dtype="float32")(inp)
    x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess", dtype="float32")(x)
    x = backbone(x)
    if preset.model.dropout > 0:
        x = keras.layers.Dropout(preset.model.dropout, name="dropout")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    out = keras.layers.Activation("softmax", dtype="float32", name="predictions")(x)
    model = keras.Model(inp, out, name="hub_classifier")
    load_preset_weights(model, backbone, preset.model.weights, runs_dir)
    return model, backbone


def find_hub_layer(model: keras.Model) -> HubModule | None:
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, HubModule):
            return layer
    return None


def hub_details(backbone: keras.Model) -> dict[str, Any]:
    """The hub module's entry of a freeze map: handle, folder, variables, state, BatchNorm mode."""
    layer = find_hub_layer(backbone)
    if layer is None:
        raise ValueError(f"{backbone.name} holds no HubModule")
    trainable = layer.trainable
    if not layer.training_argument:
        inside = "fixed (the module has no training argument)"
    elif trainable and layer.batchnorm == "trainable":
        inside = "follows training (statistics update)"
    else:
        inside = "inference mode"
    return {
        "layer": layer.name,
        "handle": layer.handle,
        "saved_model_dir": str(layer.saved_model_dir),
        "endpoint": layer.endpoint,
        "variables": len(layer.module_variables),
        "trainable_variables": len(layer._trainable_variables),
        "state": "trainable" if trainable else "frozen",
        "batchnorm_inside": inside,
    }


def add_hub_details(doc: dict[str, Any], backbone: keras.Model) -> dict[str, Any]:
    """Add :func:`hub_details` to a freeze-map document (``doc["hub"]`` and the module row's
    ``variables``); returns ``doc``. Call after the freeze policy was applied."""
    details = hub_details(backbone)
    doc["hub"] = details
    for row in doc["layers"]:
        if row["name"] == details["layer"]:
            row["variables"] = details["variables"]
    return doc


def hub_freeze_map(model: keras.Model, backbone: keras.Model, preset: Preset) -> dict[str, Any]:
    """Apply the freeze policy to a hub classifier and return its freeze-map document.

    Same shape as :func:`tltui.worker.freeze.apply_freeze` (family ``hub``, one opaque
    stage ``hub_module``: depth 0 trains it, any other depth freezes it), plus
    :func:`add_hub_details`.
    """
    from tltui.worker.freeze import apply_freeze

    doc = apply_freeze(
        model,
        backbone,
        catalog.HUB_FAMILY,
        preset.freeze.depth,
        preset.freeze.batchnorm,
        name=preset.model.backbone,
        image_size=list(preset.data.image_size),
    )
    return add_hub_details(doc, backbone)


# --------------------------------------------------------------------------- hub-fetch job


def describe_module(path: Path, label: str) -> dict[str, Any]:
    """What ``hub-fetch`` reports about a resolved SavedModel."""
    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise HubError(f"{label}: {path} does not load as a SavedModel ({hubcache.describe_error(e)})") from None
    info = inspect_module(loaded, label)
    trainable, frozen = module_variables(loaded, info)
    h, w = info.input_size
    # feature vectors are pooled: a free-size module's output size does not depend on the input's
    dim = _probe_output_dim(loaded, info, h or PROBE_SIZE, w or PROBE_SIZE, label)
    return {
        "handle": label,
        "path": str(path),
        "endpoint": info.endpoint,
        "input_size": [h, w],
        "output_dim": dim,
        "training_argument": info.training_argument,
        "variables": len(trainable) + len(frozen),
        "trainable_variables": len(trainable),
        "params": int(sum(v.shape.num_elements() or 0 for v in [*trainable, *frozen])),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tltui.worker hub-fetch")
    p.add_argument("handle")
    p.add_argument("--cache", required=True, help="the hub cache folder (<workspace>/cache/tfhub)")
    p.add_argument("--timeout", type=float, default=hubcache.DEFAULT_TIMEOUT)
    args = p.parse_args(argv)
    try:
        handle = hubcache.parse(args.handle)
        path = resolve(handle, Path(args.cache), timeout=args.timeout)
        info = describe_module(path, handle.label)
    except HubError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(info) + "\n")
    return 0
