"""``.keras`` archives written from a numpy snapshot, so a periodic checkpoint costs the training
thread a copy of the variables instead of a full ``model.save``.

``model.save`` spends most of its time finding the state to write: it walks every attribute of
every layer (and builds throwaway reference layers to know which attributes to skip), converts
each variable on the way and writes it to HDF5 in the same pass, so it has to run while training
waits. That walk gives the same answer at every epoch of a fit. :class:`ArchivePlan` records it
once, by running Keras's own ``_save_state`` into a store that keeps *which variable* goes to
*which HDF5 path* (with the group attributes) instead of writing; afterwards a checkpoint is

1. on the training thread, between two epochs: a numpy copy of those variables (consistent: no
   step runs meanwhile) and the model's config JSON (cached while the learning rate is unchanged);
2. on a background thread, while the next epoch trains: the HDF5 file, the zip, fsync and the
   atomic rename, exactly the files ``model.save`` writes (``metadata.json``, ``config.json``,
   ``model.weights.h5``).

The optimizer's ``save_own_variables`` (``store[str(i)] = variable.numpy()``) is swapped, while the
plan is recorded, for one that records the variables themselves. A model whose saving needs anything
else (assets, such as the TF Hub layer's SavedModel; a value that is not a variable, such as a
LoRA-merged kernel) has no plan: :meth:`ArchivePlan.of` returns ``None`` (:meth:`ArchivePlan.record`
says why) and the caller uses ``model.save``. A plan is re-recorded when the model's variables are no
longer the ones it recorded. ``tests/worker/test_archive.py`` checks that an archive written this way
has the same files, HDF5 layout, values and config as ``model.save``'s and loads with
``keras.models.load_model``, so a Keras upgrade that changes the format fails a test instead of
writing odd checkpoints.
"""

from __future__ import annotations

import datetime
import json
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

CONFIG_FILENAME = "config.json"
METADATA_FILENAME = "metadata.json"
WEIGHTS_FILENAME = "model.weights.h5"


@dataclass(frozen=True)
class _Group:
    path: str
    attrs: dict[str, Any] | None


@dataclass(frozen=True)
class _Value:
    path: str
    key: str
    index: int  # into ArchivePlan.variables


class Unsupported(Exception):
    """The model's saving does something a plan cannot replay."""


def _recording_stores() -> tuple[Any, Any]:
    """A weights store and an assets store that Keras's ``_save_state`` accepts (it checks their
    classes) and that record instead of writing."""
    from keras.src.saving import saving_lib

    class Weights(saving_lib.H5IOStore):  # type: ignore[misc]
        def __init__(self) -> None:  # no file: every write is recorded
            self.mode = "w"
            self.archive = None
            self.io_file = None
            self.ops: list[_Group | tuple[str, str, Any]] = []
            self._path = ""
            self._made = False

        def __bool__(self) -> bool:
            return True

        def make(self, path: str, metadata: dict | None = None) -> Any:
            # H5IOStore.make: a group with attributes now, one without at the first value
            self._path = path
            self._made = bool(metadata)
            if metadata:
                self.ops.append(_Group(path, dict(metadata)))
            return self

        def __setitem__(self, key: str, value: Any) -> None:
            if not self._made:
                self.ops.append(_Group(self._path, None))
                self._made = True
            self.ops.append((self._path, str(key), value))

        def close(self) -> None:
            pass

    class Assets(saving_lib.DiskIOStore):  # type: ignore[misc]
        def __init__(self) -> None:
            self.mode = "w"
            self.archive = None
            self.tmp_dir = None

        def make(self, path: str) -> str:
            raise Unsupported(f"{path or 'the model'} saves assets")  # before the layer copies them

        def close(self) -> None:
            pass

    return Weights(), Assets()


class ArchivePlan:
    """Which variable goes where in a model's ``.keras`` archive; see the module docstring."""

    def __init__(self, model: keras.Model, ops: list[_Group | _Value], variables: list[Any]) -> None:
        self.model = model
        self.ops = ops
        self.variables = variables
        self._recorded = self._key(model)
        self._config: tuple[Any, str] | None = None

    @classmethod
    def of(cls, model: keras.Model) -> ArchivePlan | None:
        """The plan for ``model``, or ``None`` when only ``model.save`` can write it."""
        try:
            return cls.record(model)
        except Unsupported:
            return None

    @classmethod
    def record(cls, model: keras.Model) -> ArchivePlan:
        """The plan for ``model``; :class:`Unsupported` says why there is none."""
        try:
            from keras.src.optimizers.base_optimizer import BaseOptimizer
            from keras.src.saving import saving_lib
        except ImportError as e:
            raise Unsupported(f"this Keras has no {e.name}") from e
        weights, assets = _recording_stores()
        # The optimizer saves `variable.numpy()` (a copy) under str(i) for each of its variables: record
        # the variables themselves, same keys, same order.
        real = BaseOptimizer.save_own_variables

        def by_reference(self: Any, store: Any) -> None:
            for i, variable in enumerate(self.variables):
                store[str(i)] = variable

        BaseOptimizer.save_own_variables = by_reference
        try:
            saving_lib._save_state(
                model, weights_store=weights, assets_store=assets, inner_path="", visited_saveables=set()
            )
        except (AttributeError, TypeError) as e:  # Keras's private saving API changed
            raise Unsupported(f"Keras's saving walk failed here: {e}") from e
        finally:
            BaseOptimizer.save_own_variables = real
        ops: list[_Group | _Value] = []
        variables: list[Any] = []
        for op in weights.ops:
            if isinstance(op, _Group):
                ops.append(op)
                continue
            path, key, value = op
            if not isinstance(value, keras.Variable):
                raise Unsupported(f"{path}/{key} is a computed value, not a variable")
            ops.append(_Value(path, key, len(variables)))
            variables.append(value)
        return cls(model, ops, variables)

    @staticmethod
    def _key(model: keras.Model) -> tuple[int, ...]:
        opt = getattr(model, "optimizer", None)
        opt_vars = list(opt.variables) if opt is not None else []
        return (id(opt), *map(id, model.weights), -1, *map(id, opt_vars))

    @property
    def current(self) -> bool:
        """Still the model's variables (an optimizer built later or replaced by a new ``compile``, a layer
        that made new variables: record a new plan)."""
        return self._key(self.model) == self._recorded

    def snapshot(self) -> list[np.ndarray]:
        """The variables' values now (call between steps, on the training thread)."""
        return read_values(self.variables)

    def config_json(self) -> str:
        """``config.json`` as ``model.save`` writes it; recomputed when the learning rate changed."""
        from keras.src.saving import saving_lib

        lr = _learning_rate(self.model)
        if self._config is None or self._config[0] != lr:
            self._config = (lr, saving_lib._serialize_model_as_json(self.model)[0])
        return self._config[1]

    def write(self, path: Path, values: list[np.ndarray], config_json: str) -> None:
        """The archive's bytes to ``path`` (the caller makes it atomic). Any thread."""
        import h5py

        # like model.save on a machine short of memory: the HDF5 file next to the archive, then into the zip
        # (held in memory it would double the snapshot's footprint, ~1 GB for ResNet50 + Adam)
        h5 = path.with_name(path.name + ".h5")
        with h5py.File(h5, "w") as f:
            group = None
            for op in self.ops:
                if isinstance(op, _Group):
                    group = f.create_group("vars") if not op.path else f.create_group(op.path).create_group("vars")
                    for k, v in (op.attrs or {}).items():
                        group.attrs[k] = v
                    continue
                value = values[op.index]
                assert group is not None
                if keras.backend.standardize_dtype(value.dtype) == "bfloat16":
                    group.create_dataset(op.key, data=value).attrs["dtype"] = "bfloat16"
                else:
                    group[op.key] = value
        metadata = json.dumps(
            {"keras_version": keras.__version__, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
        )
        try:
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr(METADATA_FILENAME, metadata)
                zf.writestr(CONFIG_FILENAME, config_json)
                zf.write(h5, WEIGHTS_FILENAME)
        finally:
            h5.unlink(missing_ok=True)


def read_values(variables: list[Any]) -> list[np.ndarray]:
    """Copies of Keras variables' values as numpy arrays, about 3x faster than ``v.numpy()`` each (which
    goes through ``read_value``: a name scope, the read and an ``identity``): one ``ReadVariableOp`` per
    variable, whose ``numpy()`` copies. (A mirrored variable, outside a replica context, reads its
    first replica: the replicas are equal after each step.) Anything without a resource handle falls
    back to ``v.numpy()``."""
    import tensorflow as tf

    read = tf.raw_ops.ReadVariableOp
    out = []
    for v in variables:
        tv = getattr(v, "value", v)
        try:
            out.append(read(resource=tv.handle, dtype=tv.dtype).numpy())
        except (AttributeError, TypeError, ValueError):
            out.append(np.asarray(v.numpy()))
    return out


def _learning_rate(model: keras.Model) -> Any:
    opt = getattr(model, "optimizer", None)
    if opt is None:
        return None
    opt = getattr(opt, "inner_optimizer", opt)  # mixed_float16: the LossScaleOptimizer's own rate is a dummy
    lr = getattr(opt, "_learning_rate", None)
    if isinstance(lr, keras.Variable):
        return float(np.asarray(lr))
    return id(lr)  # a schedule (its config does not change) or a callable


class BackgroundWriter:
    """At most one write in flight, on a daemon thread. A failed write's exception is raised by the
    next :meth:`submit` or by :meth:`wait` (on the training thread, where the worker reports it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Callable[[], None]) -> None:
        self.wait()

        def run() -> None:
            try:
                job()
            except BaseException as e:  # noqa: BLE001 - handed to the training thread
                self._error = e

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        """The last write ended with an exception that :meth:`wait` has not raised yet."""
        return self._error is not None

    def wait(self) -> None:
        """Block until the write in flight (if any) is done; raise its exception."""
        if (e := self.drain()) is not None:
            raise e

    def drain(self) -> BaseException | None:
        """:meth:`wait` that returns the write's exception instead of raising it (for ``finally`` blocks);
        an interrupt while waiting still propagates."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        e, self._error = self._error, None
        return e
