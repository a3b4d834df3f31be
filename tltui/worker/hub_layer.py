"""A TF2 SavedModel image feature extractor as a Keras 3 layer (:class:`HubModule`).

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
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tltui.core.hubcache import HubError

_ASSET_DIR = "saved_model"


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
    fn = getattr(loaded, "__call__", None)  # noqa: B004 - the restored tf.function (its concrete_functions), not callability
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


def signature_input(endpoint: str, input_key: str | None) -> str:
    """The name a signature's image argument is passed by (:func:`inspect_module` always finds one)."""
    if input_key is None:
        raise ValueError(f"signature {endpoint!r} is called without the name of its image argument (input_key)")
    return input_key


def module_variables(loaded: Any, info: ModuleInfo) -> tuple[list[tf.Variable], list[tf.Variable]]:
    """(trainable, non-trainable) variables the module's call uses, in a stable order."""
    if hasattr(loaded, "variables") and hasattr(loaded, "trainable_variables"):
        all_vars = list(loaded.variables)
        trainable_ids = {id(v) for v in loaded.trainable_variables}
    else:
        fn = getattr(loaded, "__call__", None) if info.endpoint == "__call__" else loaded.signatures[info.endpoint]  # noqa: B004 - the tf.function
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
            out = self._fn(**{signature_input(self.endpoint, self.input_key): x})
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
