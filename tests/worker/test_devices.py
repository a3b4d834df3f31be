"""The precision policy the worker sets (train.mixed_precision, "auto" by default) with the output layer
and the loss kept in float32, and the TensorFlow probe of `tltui doctor`."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tltui.core import presets  # noqa: E402
from tltui.worker import devices  # noqa: E402
from tltui.worker import doctor as worker_doctor  # noqa: E402
from tltui.worker import model as M  # noqa: E402
from tltui.worker.compile import compile_model  # noqa: E402


def tiny(**overrides: object) -> presets.Preset:
    raw = {
        "name": "tiny",
        "data": {"source": "folder:/nowhere", "image_size": [16, 16]},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
    }
    return presets.from_dict(raw, overrides=overrides)


@pytest.mark.parametrize(("setting", "compute"), [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_the_output_layer_and_the_loss_stay_float32_under_mixed_precision(setting: str, compute: str) -> None:
    p = tiny(**{"train.mixed_precision": setting})
    try:
        assert devices.set_precision(p).value == setting
        model, _ = M.build_classifier(p, 3)
        compile_model(model, p, 3, None, lambda *a: None)
        assert model.get_layer("logits").compute_dtype == compute  # the head computes in 16 bits
        assert model.get_layer("predictions").compute_dtype == "float32"
        x, y = np.zeros((2, 16, 16, 3), "float32"), np.array([0, 1])
        y_pred = model(x)
        assert y_pred.dtype == "float32"
        assert model.compute_loss(x=x, y=y, y_pred=y_pred).dtype == "float32"
        if setting == "mixed_float16":
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_auto_on_a_cpu_is_float32_even_after_a_mixed_run() -> None:
    try:
        devices.set_precision(tiny(**{"train.mixed_precision": "mixed_float16"}))
        decision = devices.set_precision(tiny())  # "auto", no GPU
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert (decision.value, decision.why) == ("float32", "auto: no GPU (mixed precision is slower on a CPU)")


def test_the_doctor_probe_says_what_tensorflow_sees() -> None:
    import tensorflow as tf

    answer = worker_doctor.probe()
    assert answer["ok"] is True and answer["version"] == tf.__version__
    assert len(answer["gpus"]) == len(tf.config.list_physical_devices("GPU"))
    assert isinstance(answer["cuda_build"], bool)
