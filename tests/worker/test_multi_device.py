"""``train.gpus = 2`` with the real worker, on 2 logical CPU devices under MirroredStrategy (the same
Keras and tf.distribute code as 2 GPUs; only the all-reduce differs): the history and the weights equal
one device's, through the partial batches that do not split evenly (a last training batch of 5, a last
validation batch of 1) and the feature cache (steps_per_execution, keras#19246); a batch size that
cannot split is refused with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tltui.core import demo

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("multi_device")]


def test_two_replicas_train_what_one_device_trains(tmp_path: Path) -> None:
    import numpy as np

    folder = demo.generate(tmp_path / "shapes", per_class=10, size=32, shapes=("circle", "square", "cross"))
    env = {**os.environ, "TLTUI_TEST_CPU_DEVICES": "2", "TLTUI_TEST_BACKBONES": "1"}
    script = Path(__file__).with_name("multi_device_runs.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "runs"), str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])

    for name in ("full", "cached"):
        one, two = runs[f"{name}-1"], runs[f"{name}-2"]
        assert one["rc"] == 0 and two["rc"] == 0, (one["reason"], two["reason"])
        # the uneven cases are exercised: 21 training images in batches of 8 (last 5), 9 validation (last 1)
        assert (two["train_examples"] % 8, two["val_examples"] % 8) == (5, 1)
        assert one["devices"] == ["CPU"] and two["devices"] == ["CPU:0", "CPU:1"]
        assert two["feature_cache"] is (name == "cached")
        # "auto" on a CPU: float32, no XLA, and the run says why
        assert two["compute"]["precision"] == "float32" and two["compute"]["jit_compile"] is False
        assert "no GPU" in two["compute"]["precision_why"]
        assert len(one["history"]) == len(two["history"]) == 2
        for h1, h2 in zip(one["history"], two["history"], strict=True):
            assert h2["val_loss"] == pytest.approx(h1["val_loss"], rel=1e-5)
            assert h2["val_acc"] == pytest.approx(h1["val_acc"], abs=1e-6)
        for w1, w2 in zip(one["weights"], two["weights"], strict=True):
            np.testing.assert_allclose(np.asarray(w2), np.asarray(w1), rtol=1e-4, atol=1e-6)

    refused = runs["refused"]
    assert refused["rc"] == 1
    assert refused["reason"].startswith("data.batch_size = 35 does not split evenly over train.gpus = 2")
