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


def test_harness_steady_epoch_counts_each_position_of_the_checkpoint_cycle_once() -> None:
    from bench.harness import gaps, steady_epoch

    assert gaps([0.0, 10.0, 12.0, 15.0]) == [(2, 2.0), (3, 3.0)]  # epoch 1 (tracing) left out
    # checkpoint every 4: epochs 4 and 8 end with one (+1 s), 5 and 9 carry its background write (+0.2 s),
    # one hiccup (epoch 6 of the second run, +9 s) is an outlier the medians drop
    run = [(2, 10.0), (3, 10.0), (4, 11.0), (5, 10.2), (6, 10.0), (7, 10.0), (8, 11.0), (9, 10.2)]
    hiccup = [(e, s + 9.0 if e == 6 else s) for e, s in run]
    assert steady_epoch(run + hiccup + run, 4) == pytest.approx(10.3)  # (10 + 10.2 + 10 + 11) / 4
    assert steady_epoch([(2, 3.0), (3, 5.0), (4, 4.0)], 1) == 4.0  # no cycle: the median
    with pytest.raises(ValueError, match="positions"):
        steady_epoch([(2, 1.0), (3, 1.0)], 4)


@pytest.mark.e2e
@pytest.mark.xdist_group("bench_smoke")
@pytest.mark.parametrize(
    "name", ["workspace", "density", "tui", "pipeline", "folder", "gpu_options", "feature_cache", "harness", "export"]
)
def test_bench_module_runs_tiny(name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    mod = importlib.import_module(f"bench.{name}")
    assert mod.main(["--tiny"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith(f"{name}: ")]
    assert lines, f"bench.{name} printed no result line"
    assert all("(load " in l for l in lines)
    assert any("ratio" in l for l in lines)
