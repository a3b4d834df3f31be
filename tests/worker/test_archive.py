"""The periodic checkpoint's fast path (tltui/worker/archive.py): an archive written from a snapshot
must be what ``model.save`` writes, loadable by Keras, and written off the training thread."""

from __future__ import annotations

import errno
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tltui.worker.archive import ArchivePlan, BackgroundWriter  # noqa: E402
from tltui.worker.backup import backup_state  # noqa: E402
from tltui.worker.checkpoint import DiskFull, PeriodicCheckpoint  # noqa: E402


def _model(seed: int = 0, bf16_layer: bool = False) -> keras.Model:
    """Conv, BatchNorm (non-trainable statistics), Dropout (a seed generator), a frozen layer, Adam;
    optionally a layer whose variables are bfloat16."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    frozen = keras.layers.Dense(5, name="frozen", dtype="bfloat16" if bf16_layer else None)
    frozen.trainable = False
    x = keras.layers.Dropout(0.2)(frozen(x))
    outputs = keras.layers.Dense(3, activation="softmax", name="head", dtype="float32")(x)
    m = keras.Model(inputs, outputs)
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["acc"])
    return m


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(0)
    return rng.rand(24, 8, 8, 3).astype("float32"), rng.randint(0, 3, 24)


def _h5_layout(archive: Path) -> list[tuple]:
    """Every group (with attributes) and dataset (with shape, dtype, values) of the archive's weights."""
    import io

    import h5py

    out: list[tuple] = []
    with zipfile.ZipFile(archive) as z, h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Group):
                out.append(("group", name, sorted((k, str(v)) for k, v in obj.attrs.items())))
            else:
                out.append(("data", name, obj.shape, str(obj.dtype), np.asarray(obj).tobytes()))

        f.visititems(visit)
    return out


@pytest.fixture
def policy(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    ("policy", "bf16_layer"),
    [("float32", False), ("mixed_float16", False), ("float32", True)],
    ids=["float32", "mixed_float16 (LossScaleOptimizer)", "bfloat16 variables"],
    indirect=["policy"],
)
def test_an_archive_from_a_snapshot_is_what_model_save_writes(tmp_path: Path, policy: str, bf16_layer: bool) -> None:
    x, y = _data()
    m = _model(bf16_layer=bf16_layer)
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    if bf16_layer:
        assert any(str(v.dtype) == "bfloat16" for v in m.weights)
    plan = ArchivePlan.of(m)
    assert plan is not None
    fast, ref = tmp_path / "fast.keras", tmp_path / "ref.keras"
    plan.write(fast, plan.snapshot(), plan.config_json())
    m.save(ref)

    with zipfile.ZipFile(fast) as a, zipfile.ZipFile(ref) as b:
        assert sorted(a.namelist()) == sorted(b.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        assert json.loads(a.read("config.json")) == json.loads(b.read("config.json"))
        assert json.loads(a.read("metadata.json")).keys() == json.loads(b.read("metadata.json")).keys()
    assert _h5_layout(fast) == _h5_layout(ref)

    loaded = keras.models.load_model(fast)
    for a, b in zip(backup_state(loaded), backup_state(m), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)
    assert not list(tmp_path.glob("*.h5"))  # the HDF5 file's temporary copy is gone


def test_the_archive_holds_the_snapshot_not_the_weights_at_write_time(tmp_path: Path) -> None:
    x, y = _data()
    m = _model()
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    plan = ArchivePlan.of(m)
    assert plan is not None
    values, config = plan.snapshot(), plan.config_json()
    at_snapshot = [np.array(v.numpy()) for v in backup_state(m)]
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)  # training goes on before the write
    plan.write(tmp_path / "a.keras", values, config)
    loaded = keras.models.load_model(tmp_path / "a.keras")
    for a, b in zip(backup_state(loaded), at_snapshot, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert not np.array_equal(np.asarray(m.get_layer("head").kernel), np.asarray(loaded.get_layer("head").kernel))


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"], indirect=True)
def test_the_config_follows_a_changed_learning_rate(policy: str) -> None:
    m = _model()
    m.fit(*_data(), epochs=1, batch_size=8, verbose=0)
    plan = ArchivePlan.of(m)
    assert plan is not None

    def lr(text: str) -> float:
        opt = json.loads(text)["compile_config"]["optimizer"]["config"]
        return (opt.get("inner_optimizer", {}).get("config") or opt)["learning_rate"]  # LossScaleOptimizer wraps

    assert lr(plan.config_json()) == pytest.approx(0.01)
    inner = getattr(m.optimizer, "inner_optimizer", m.optimizer)
    inner.learning_rate = 0.001  # what ReduceLROnPlateau does
    assert lr(plan.config_json()) == pytest.approx(0.001)


def test_a_plan_goes_stale_when_the_optimizer_is_built_later_or_replaced() -> None:
    m = _model()
    plan = ArchivePlan.of(m)  # before fit: the optimizer has no slots yet
    assert plan is not None and plan.current
    m.fit(*_data(), epochs=1, batch_size=8, verbose=0)
    assert not plan.current
    plan = ArchivePlan.of(m)
    assert plan is not None and plan.current
    m.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")  # same kind, new slots
    m.fit(*_data(), epochs=1, batch_size=8, verbose=0)
    assert not plan.current


class _WithAssets(keras.layers.Layer):
    def save_assets(self, dir_path: str) -> None:
        Path(dir_path, "vocab.txt").write_text("a\nb\n")

    def call(self, x):  # type: ignore[no-untyped-def]
        return x


class _ComputedValue(keras.layers.Dense):
    def save_own_variables(self, store) -> None:  # type: ignore[no-untyped-def]
        store["0"] = np.asarray(self.kernel) * 2.0  # a value computed at save time, not a variable
        store["1"] = self.bias


@pytest.mark.parametrize(
    ("layer", "why"),
    [
        (_WithAssets(name="vocab"), "saves assets"),
        (_ComputedValue(2, name="lora"), "/0 is a computed value, not a variable"),
    ],
    ids=["assets", "computed value"],
)
def test_models_the_plan_cannot_replay_have_no_plan(layer: keras.layers.Layer, why: str) -> None:
    from tltui.worker.archive import Unsupported

    inputs = keras.Input((2,))
    m = keras.Model(inputs, layer(inputs))
    assert ArchivePlan.of(m) is None
    with pytest.raises(Unsupported, match=why):
        ArchivePlan.record(m)


def test_background_writer_runs_one_job_at_a_time_and_hands_errors_to_the_caller() -> None:
    w = BackgroundWriter("test")
    gate, seen = threading.Event(), []

    def slow() -> None:
        gate.wait(5)
        seen.append("slow")

    w.submit(slow)
    assert not w.failed
    gate.set()
    w.submit(lambda: seen.append("next"))  # waits for the first
    w.wait()
    assert seen == ["slow", "next"]

    def boom() -> None:
        raise OSError(errno.EIO, "io error")

    w.submit(boom)
    w._thread.join()  # type: ignore[union-attr]
    assert w.failed
    with pytest.raises(OSError, match="io error"):
        w.wait()
    assert not w.failed
    w.submit(boom)
    assert isinstance(w.drain(), OSError)
    assert w.drain() is None


class _Events:
    def __init__(self) -> None:
        self.events: list = []
        self.threads: set[str] = set()

    def emit(self, event, sync: bool = False) -> None:  # type: ignore[no-untyped-def]
        self.events.append(event)
        self.threads.add(threading.current_thread().name)


def test_periodic_checkpoints_are_written_in_the_background_with_each_epochs_weights(tmp_path: Path) -> None:
    x, y = _data()
    m = _model()
    events = _Events()
    at_epoch_end: dict[int, list[np.ndarray]] = {}
    # runs before the checkpoint callback: what each epoch's checkpoint must hold
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: at_epoch_end.__setitem__(e + 1, [np.array(v.numpy()) for v in m.weights])
    )
    ckpt = PeriodicCheckpoint(tmp_path / "checkpoints", 2, events)  # type: ignore[arg-type]
    m.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[record, ckpt])
    assert [e.epoch for e in events.events] == [2, 4]
    assert events.threads == {"tltui-checkpoint"}
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-0002.keras", "epoch-0004.keras"]
    for epoch in (2, 4):
        loaded = keras.models.load_model(tmp_path / "checkpoints" / f"epoch-{epoch:04d}.keras")
        for a, b in zip(loaded.weights, at_epoch_end[epoch], strict=True):
            np.testing.assert_array_equal(np.asarray(a), b)


def test_a_full_disk_in_the_background_write_stops_fit_at_the_next_step_with_the_checkpoint_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tltui.worker import checkpoint as cb

    def full(tmp: Path) -> None:
        Path(tmp).write_bytes(b"PK\x03\x04")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cb, "write_checkpoint", lambda plan, path, *a: cb.write_atomic(path, full))
    ckpt = PeriodicCheckpoint(tmp_path / "checkpoints", 1, _Events())  # type: ignore[arg-type]
    steps: list[tuple[int, int]] = []

    class Step(keras.callbacks.Callback):
        """Before the checkpoint callback: records each step and, at the first step of epoch 2, lets the
        background write of checkpoint 1 fail first."""

        epoch = 0

        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch: int, logs: object = None) -> None:
            steps.append((self.epoch, batch + 1))
            if self.epoch == 2 and batch == 0:
                ckpt._background._thread.join(5)  # type: ignore[union-attr]

    with pytest.raises(DiskFull, match="epoch-0001.keras"):
        _model().fit(*_data(), epochs=3, batch_size=8, verbose=0, callbacks=[Step(), ckpt])
    assert steps[-1] == (2, 1)  # stopped at that step, not at the next epoch end
    assert list((tmp_path / "checkpoints").iterdir()) == []  # no torn file under any name


def test_a_resumed_run_writes_the_checkpoint_its_kill_lost(tmp_path: Path) -> None:
    """Killed after epoch 2's backup and events but before its background checkpoint write ended: the
    resumed fit starts with epoch 2's state and writes ``epoch-0002.keras`` from it."""
    x, y = _data()
    m = _model()
    m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    at_epoch_2 = [v.numpy() for v in m.weights]
    events = _Events()
    ckpt = PeriodicCheckpoint(tmp_path / "checkpoints", 2, events, resumed_after=2)  # type: ignore[arg-type]
    m.fit(x, y, epochs=2, initial_epoch=2, batch_size=8, verbose=0, callbacks=[ckpt])  # nothing left to train
    assert [e.epoch for e in events.events] == [2]
    loaded = keras.models.load_model(tmp_path / "checkpoints" / "epoch-0002.keras")
    for a, b in zip(loaded.weights, at_epoch_2, strict=True):
        np.testing.assert_array_equal(a.numpy(), b)
    PeriodicCheckpoint(tmp_path / "checkpoints", 2, events, resumed_after=2).on_train_begin()  # already there
    PeriodicCheckpoint(tmp_path / "checkpoints", 2, events, resumed_after=3).on_train_begin()  # not a checkpoint epoch
    assert [e.epoch for e in events.events] == [2]


def test_read_values_matches_numpy_for_mixed_precision_and_plain_variables() -> None:
    from tltui.worker.archive import read_values

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        m = _model()
        m.fit(*_data(), epochs=1, batch_size=8, verbose=0)
        variables = backup_state(m)
        assert any(str(v.dtype) == "int64" for v in variables)  # the optimizer's iteration counter
        for v, got in zip(variables, read_values(variables), strict=True):
            np.testing.assert_array_equal(got, v.numpy())
            assert got.dtype == np.dtype(v.dtype)
    finally:
        keras.mixed_precision.set_global_policy("float32")
