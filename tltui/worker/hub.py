"""TF Hub backbones inside a Keras 3 model, and the ``hub-fetch`` job.

Why a layer of our own: ``hub.KerasLayer`` is a tf_keras (Keras 2) layer and cannot
live in a Keras 3 model; ``keras.layers.TFSMLayer`` can, and it trains the
SavedModel's own variables, but it never passes ``training=`` into the module
(BatchNorm inside stays in inference mode) and a ``.keras`` holding one loads only
with ``safe_mode=False`` and only while the SavedModel folder still exists.
:class:`HubModule` binds the SavedModel's variables as Keras weights (so
optimizers, checkpoints, ``BackupAndRestore`` and ``EarlyStopping`` see them), passes
``training`` into the module's ``__call__`` when the freeze policy lets BatchNorm
train, and stores the SavedModel inside the ``.keras`` archive as an asset, so a
saved run loads with plain ``keras.models.load_model`` once this module is imported.

``python -m tltui.worker hub-fetch HANDLE --cache DIR`` downloads a handle into the
cache, loads it, and prints one JSON line describing it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tltui import hubcache
from tltui.catalog import BackboneSpec
from tltui.hubcache import Handle, HubError
from tltui.presets import Preset

HUB_LAYER_NAME = "hub_module"
BACKBONE_NAME = "backbone"
_ASSET_DIR = "saved_model"
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
    from tltui.workspace import default_home

    return hubcache.cache_root(default_home())


def resolve(handle: Handle, cache: Path, *, timeout: float = hubcache.DEFAULT_TIMEOUT) -> Path:
    """A local SavedModel folder for ``handle``, downloading into ``cache`` if needed.

    Raises :class:`HubError` (one line) for a missing folder, no network, or a broken cache.
    """
    if handle.kind == "local":
        return hubcache.local_saved_model(handle)
    if handle.kind in ("tarball", "kaggle"):
        return hubcache.fetch_archive(handle, cache, timeout=timeout)
    return _resolve_with_tensorflow_hub(handle, cache, timeout)


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


# --------------------------------------------------------------------------- reading a SavedModel


@dataclass(frozen=True)
class ModuleInfo:
    """What a loaded SavedModel offers as an image feature extractor."""

    endpoint: str  # "__call__" or a signature name
    input_key: str | None  # a signature's image argument
    output_key: str | None  # a signature's (or dict output's) feature entry
    training_argument: bool  # __call__ takes `training`
    input_size: tuple[int | None, int | None]  # (height, width) from the signature, None when free

    def to_config(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "input_key": self.input_key,
            "output_key": self.output_key,
            "training_argument": self.training_argument,
        }


_FEATURE_KEYS = ("feature_vector", "default", "output_0", "outputs")


def _pick_output(label: str, keys: list[str]) -> str:
    if len(keys) == 1:
        return keys[0]
    for k in _FEATURE_KEYS:
        if k in keys:
            return k
    raise HubError(f"{label}: the module returns {sorted(keys)}; expected one feature-vector output")


def _image_size(spec: Any) -> tuple[int | None, int | None]:
    shape = getattr(spec, "shape", None)
    if shape is None or shape.rank != 4:
        return (None, None)
    return (shape[1], shape[2])


def inspect_module(loaded: Any, label: str) -> ModuleInfo:
    """How to call ``loaded`` (a ``tf.saved_model.load`` result). Raises :class:`HubError`."""
    fn = getattr(loaded, "__call__", None)
    concrete = list(getattr(fn, "concrete_functions", []) or [])
    if concrete:
        from tensorflow.python.util import tf_inspect

        spec = tf_inspect.getfullargspec(fn)
        training = "training" in spec.args or "training" in spec.kwonlyargs
        args, _kwargs = concrete[0].structured_input_signature
        image = args[0] if args else None
        outputs = concrete[0].structured_outputs
        output_key = _pick_output(label, list(outputs)) if isinstance(outputs, dict) else None
        return ModuleInfo("__call__", None, output_key, training, _image_size(image))
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if not signatures:
        raise HubError(f"{label}: the SavedModel has neither a __call__ function nor a signature to call")
    name = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    sig = signatures[name]
    _args, inputs = sig.structured_input_signature
    if len(inputs) != 1:
        raise HubError(f"{label}: signature {name!r} takes {sorted(inputs)}; expected one image input")
    input_key = next(iter(inputs))
    output_key = _pick_output(label, list(sig.structured_outputs))
    return ModuleInfo(name, input_key, output_key, False, _image_size(inputs[input_key]))


def module_variables(loaded: Any, info: ModuleInfo) -> tuple[list[tf.Variable], list[tf.Variable]]:
    """(trainable, non-trainable) variables the module's call uses, in a stable order."""
    if hasattr(loaded, "variables") and hasattr(loaded, "trainable_variables"):
        all_vars = list(loaded.variables)
        trainable_ids = {id(v) for v in loaded.trainable_variables}
    else:
        fn = getattr(loaded, "__call__", None) if info.endpoint == "__call__" else loaded.signatures[info.endpoint]
        fns = list(getattr(fn, "concrete_functions", None) or [fn])
        seen: dict[int, tf.Variable] = {}
        for cf in fns:
            for v in cf.variables:
                seen.setdefault(id(v), v)
        all_vars = list(seen.values())
        trainable_ids = {id(v) for v in all_vars if v.trainable}
    trainable = [v for v in all_vars if id(v) in trainable_ids]
    frozen = [v for v in all_vars if id(v) not in trainable_ids]
    return trainable, frozen


# --------------------------------------------------------------------------- the layer


@keras.saving.register_keras_serializable(package="tltui", name="HubModule")
class HubModule(keras.layers.Layer):
    """A TF2 SavedModel image feature extractor as a Keras 3 layer.

    Input: float images in [0, 1] (the TF Hub image convention), ``(batch, H, W, 3)``.
    Output: ``(batch, output_dim)``. ``batchnorm = "trainable"`` passes the model's
    ``training`` flag into the module while this layer is trainable (BatchNorm
    inside updates its statistics); ``"frozen"`` always calls it with
    ``training=False``, like a frozen Keras BatchNormalization.

    The layer's weights *are* the SavedModel's variables. Saved to ``.keras``, the
    SavedModel goes into the archive's assets; a layer rebuilt from its config
    has no module until :meth:`load_assets` runs (``keras.models.load_model`` does that).
    """

    def __init__(
        self,
        handle: str,
        output_dim: int,
        endpoint: str = "__call__",
        input_key: str | None = None,
        output_key: str | None = None,
        training_argument: bool = False,
        batchnorm: str = "frozen",
        saved_model_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.handle = handle
        self.output_dim = int(output_dim)
        self.endpoint = endpoint
        self.input_key = input_key
        self.output_key = output_key
        self.training_argument = bool(training_argument)
        self.batchnorm = batchnorm
        self._saved_model_dir: Path | None = None
        self._loaded: Any = None
        self._fn: Any = None
        self._pending: list[Any] | None = None
        self._regularizers: list[Any] = []
        if saved_model_dir is not None:
            self._attach(Path(saved_model_dir))
        self.built = True

    # ------------------------------------------------------------ module binding

    def _attach(self, path: Path, loaded: Any = None) -> None:
        """Load the SavedModel (unless given) and track its variables as this layer's weights."""
        self._loaded = loaded if loaded is not None else tf.saved_model.load(str(path))
        self._saved_model_dir = path
        if self.endpoint == "__call__":
            self._fn = self._loaded.__call__
        else:
            self._fn = self._loaded.signatures[self.endpoint]
        info = ModuleInfo(self.endpoint, self.input_key, self.output_key, self.training_argument, (None, None))
        trainable, frozen = module_variables(self._loaded, info)
        self._regularizers = [r for r in getattr(self._loaded, "regularization_losses", None) or [] if callable(r)]
        locked = self._tracker.locked
        self._tracker.unlock()
        try:
            for v, is_trainable in [*((v, True) for v in trainable), *((v, False) for v in frozen)]:
                # initializer=<tf.Variable> makes the Keras variable wrap that very variable,
                # so the module's functions and the optimizer share the storage.
                kv = keras.Variable(
                    initializer=v,
                    trainable=is_trainable,
                    dtype=v.dtype.name,
                    name=v.name.split(":")[0].replace("/", "_"),
                    autocast=False,
                )
                self._track_variable(kv)
        finally:
            if locked:
                self._tracker.lock()

    @property
    def saved_model_dir(self) -> Path | None:
        return self._saved_model_dir

    @property
    def module_variables(self) -> list[keras.Variable]:
        return [*self._trainable_variables, *self._non_trainable_variables]

    # ------------------------------------------------------------ Keras layer API

    def build(self, input_shape: Any = None) -> None:
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if self._fn is None:
            raise RuntimeError(f"HubModule {self.name}: the SavedModel is not loaded (load the model from its .keras)")
        x = tf.cast(inputs, tf.float32)
        if self.endpoint == "__call__":
            if self.training_argument:
                train = bool(training) and self.trainable and self.batchnorm == "trainable"
                out = self._fn(x, training=train)
            else:
                out = self._fn(x)
        else:
            out = self._fn(**{self.input_key: x})
        if isinstance(out, dict):
            out = out[self.output_key]
        if self.trainable and training and self._regularizers:
            # TF Hub modules list their weight decay as callables; they count only while fine-tuning
            self.add_loss(tf.add_n([tf.cast(r(), tf.float32) for r in self._regularizers]))
        return out

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, int]:
        return (input_shape[0], self.output_dim)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "handle": self.handle,
            "output_dim": self.output_dim,
            "endpoint": self.endpoint,
            "input_key": self.input_key,
            "output_key": self.output_key,
            "training_argument": self.training_argument,
            "batchnorm": self.batchnorm,
        }

    # ------------------------------------------------------------ saving

    def save_own_variables(self, store: Any) -> None:
        for i, v in enumerate(self.module_variables):
            store[str(i)] = v.numpy()

    def load_own_variables(self, store: Any) -> None:
        values = [store[str(i)] for i in range(len(store.keys()))]
        if self._fn is None:  # from a .keras: the module arrives with the assets, next
            self._pending = values
            return
        self._assign(values)

    def _assign(self, values: list[Any]) -> None:
        mine = self.module_variables
        if len(values) != len(mine):
            raise ValueError(
                f"HubModule {self.name} ({self.handle}): the saved weights hold {len(values)} variables, "
                f"the module has {len(mine)}; was it saved from another hub module?"
            )
        for v, value in zip(mine, values, strict=True):
            v.assign(value)

    def save_assets(self, dir_path: str) -> None:
        if self._saved_model_dir is None or not self._saved_model_dir.is_dir():
            raise ValueError(f"HubModule {self.name}: its SavedModel folder {self._saved_model_dir} is gone")
        shutil.copytree(self._saved_model_dir, Path(dir_path) / _ASSET_DIR)

    def load_assets(self, dir_path: str) -> None:
        # Keras deletes its extraction folder after loading; keep a private copy so the
        # model can be saved again (checkpoints of a resumed or fine-tuned run).
        own = Path(tempfile.mkdtemp(prefix="tltui-hub-"))
        weakref.finalize(self, shutil.rmtree, str(own), True)
        shutil.copytree(Path(dir_path) / _ASSET_DIR, own / _ASSET_DIR)
        self._attach(own / _ASSET_DIR)
        if self._pending is not None:
            self._assign(self._pending)
            self._pending = None


# --------------------------------------------------------------------------- building the classifier


def hub_spec(preset: Preset) -> BackboneSpec:
    """The catalog-style spec of a ``hub:`` backbone (family ``hub``: one opaque stage)."""
    h, _w = preset.data.image_size
    return BackboneSpec(preset.model.backbone, "hub", "", "", h, 8, "none")


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
            out = loaded.signatures[info.endpoint](**{info.input_key: x})
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
    Raises :class:`tltui.worker.model.ModelError` (one line) for any user-fixable problem.
    """
    from tltui.worker import model as model_mod

    if num_classes < 2:
        raise model_mod.ModelError(f"the data has {num_classes} class(es); a classifier needs at least 2")
    if preset.model.weights == "none":
        raise model_mod.ModelError(
            'model.weights = "none": a hub backbone brings its own weights; remove model.weights'
        )
    try:
        handle = hubcache.parse(preset.model.backbone)
        path = resolve(handle, cache_for(runs_dir))
        layer = load_hub_layer(path, preset)
    except HubError as e:
        raise model_mod.ModelError(str(e)) from None
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
    weights = preset.model.weights
    if weights.endswith(".weights.h5"):
        model_mod.load_weights_file(model, backbone, Path(weights))
    elif weights.startswith("run:"):
        model_mod.load_run_backbone(backbone, weights[4:], runs_dir)
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
        "hub",
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
