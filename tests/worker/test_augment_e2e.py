"""The real worker with ``data.augment = true`` (the default): the training step augments, and the
run's numbers are plain Keras's ``fit`` on the same batches augmented the same way; ``model.keras``
is the classifier alone, built-in Keras layers only."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.worker.test_train_e2e import run_in_process, tiny_preset
from tltui.core.workspace import RunPaths

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("train_e2e")]


def test_an_augmented_run_is_plain_keras_fit_on_the_augmented_batches(
    tmp_path: Path, shapes: Path, restore_signals
) -> None:
    import keras
    import numpy as np

    from tltui.worker import augment, data
    from tltui.worker.compile import compile_model
    from tltui.worker.model import build_classifier

    preset = tiny_preset(f"folder:{shapes}", **{"train.epochs": 1, "train.restore_best": False})
    assert preset.data.augment and preset.data.shuffle_buffer > 0
    rc, events = run_in_process(tmp_path / "run", preset)
    assert rc == 0, events[-1]
    ends = [e for e in events if e.type == "epoch_end"]
    paths = RunPaths(tmp_path / "run")
    info = json.loads(paths.data_info.read_text())
    assert info["in_memory"] and 0 < info["memory"]["images_bytes"] <= info["memory"]["budget_bytes"]

    keras.utils.set_random_seed(preset.train.seed)
    ds = data.load(preset)
    plain, backbone = build_classifier(preset, 3)
    for layer in backbone.layers:  # freeze.batchnorm = "frozen" (the default): BatchNorm in inference mode
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    compile_model(plain, preset, 3, ds.steps_per_epoch, lambda *a: None)
    augmented = ds.train_batches(0).map(lambda xu, y: (augment.augment(*xu), y))
    history = plain.fit(
        augmented, epochs=1, steps_per_epoch=ds.steps_per_epoch, validation_data=ds.eval_batches(ds.val), verbose=0
    ).history
    for key in ("loss", "acc", "val_loss", "val_acc"):
        np.testing.assert_allclose([e.metrics[key] for e in ends], history[key], rtol=1e-5, err_msg=key)
    saved = keras.saving.load_model(paths.model)
    for a, w in zip(saved.weights, plain.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), w.numpy(), rtol=1e-5, atol=1e-7)
    assert int(saved.optimizer.iterations.numpy()) == ds.steps_per_epoch  # the optimizer that trained
    config = json.loads(zipfile.ZipFile(paths.model).read("config.json"))
    modules = {m for m in _values(config, "module") if isinstance(m, str)}
    assert modules and all(m.startswith("keras") for m in modules), modules  # no tltui class to import


def _values(doc: object, key: str) -> list[object]:
    """Every value of ``key`` anywhere in a JSON document."""
    if isinstance(doc, dict):
        return [v for k, v in doc.items() if k == key] + [x for v in doc.values() for x in _values(v, key)]
    if isinstance(doc, list):
        return [x for v in doc for x in _values(v, key)]
    return []
