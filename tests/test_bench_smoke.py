"""Each benchmark module runs end to end in its tiny mode (no timing is asserted, only that it
runs and prints its comparison lines); plus the verdict logic of the result lines."""

from __future__ import annotations

import importlib
import math

import pytest

from bench import Figure, Result


def test_result_line_states_ratio_target_and_verdict() -> None:
    r = Result("harness", "epoch", "tltui", 2.06, "bare", 2.0, "s", "<= 1.03")
    assert math.isclose(r.ratio, 1.03) and r.ok
    line = r.line()
    assert "tltui 2.06 s vs bare 2.00 s -> ratio 1.030 (target <= 1.03) OK" in line and "(load " in line
    assert not Result("pipeline", "b/s", "a", 9.0, "b", 1.0, "b/s", ">= 10").ok
    assert Result("pipeline", "b/s", "a", 10.0, "b", 1.0, "b/s", ">= 10").ok
    assert Result("gpu", "x", "a", 1.0, "b", 1.0, "s", "info").ok is None
    f = Figure("tui", "first frame", 1.2, "s", 1.0)
    assert f.ok is False and "MISS" in f.line() and "target <= 1.00 s" in f.line()
    assert Figure("tui", "x", 1.0, "s", None).ok is None


@pytest.mark.e2e
@pytest.mark.xdist_group("bench_smoke")
@pytest.mark.parametrize("name", ["workspace", "tui", "pipeline", "gpu_options", "feature_cache", "harness"])
def test_bench_module_runs_tiny(name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    mod = importlib.import_module(f"bench.{name}")
    assert mod.main(["--tiny"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith(f"{name}: ")]
    assert lines, f"bench.{name} printed no result line"
    assert all("(load " in l for l in lines)
    assert any("ratio" in l for l in lines)


def test_batch_augment_flips_shifts_and_brightens_each_image() -> None:
    """The pipeline fix from the input-pipeline benchmark: per-image augmentation with plain TF ops."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("tensorflow")
    from tltui.worker.data import batch_augment

    x = np.random.default_rng(0).uniform(0, 255, size=(64, 20, 24, 3)).astype("float32")
    y = np.asarray(batch_augment(3)(x, training=True))
    assert y.shape == x.shape and y.dtype == np.float32
    assert y.min() >= 0.0 and y.max() <= 255.0
    changed = [not np.allclose(a, b) for a, b in zip(x, y, strict=True)]
    assert sum(changed) > 48  # nearly every image is altered, each on its own
    # a brightness-only image differs from its source by one constant (where not clipped)
    diffs = (y - x).reshape(64, -1).std(axis=1)
    assert (diffs > 1e-3).any()
