"""Shared fixtures. Tests never touch the network or the user's real workspace."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE_WORKER = ROOT / "tests" / "fake_worker.py"

os.environ["TLTUI_TEST_BACKBONES"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TLTUI_HOME", str(home / "tltui"))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(home / "tfhub"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(home / "tfds"))
    (home / "keras").mkdir(exist_ok=True)
    monkeypatch.setenv("KERAS_HOME", str(home / "keras"))  # no test sees the user's cached weights
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "xdg"))


@pytest.fixture
def ws(tmp_path: Path):
    from tltui.core.workspace import Workspace

    w = Workspace(tmp_path / "ws")
    yield w
    w.close()


@pytest.fixture
def fake_worker_env(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Point the supervisor at the scripted fake worker (no TensorFlow)."""
    import json

    cmd = [sys.executable, str(FAKE_WORKER)]
    monkeypatch.setenv("TLTUI_WORKER_CMD", json.dumps(cmd))
    return cmd


#: xdist groups, longest first (as measured: bench_smoke ~170 s, slurm ~150 s, train_e2e ~150 s, ray
#: ~130 s, gradcam ~65 s of CPU, export ~35 s, ...). ``--dist loadgroup`` hands groups to workers in
#: collection order, so these start first and the short tests fill in around them: the suite's wall
#: time is the busiest worker's.
HEAVY_GROUPS = (
    "bench_smoke",
    "slurm",
    "train_e2e",
    "ray",
    "reliability_e2e",
    "gradcam",
    "export",
    "packaging",
    "hub_e2e",
    "tfds_download",
    "feature_cache",
    "predict_e2e",
    "freeze_resnet50",
    "hub_tf",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        group = item.get_closest_marker("xdist_group")
        name = (group.args[0] if group.args else group.kwargs.get("name")) if group else None
        if name in HEAVY_GROUPS:
            return HEAVY_GROUPS.index(name)
        return len(HEAVY_GROUPS) + (0 if item.get_closest_marker("e2e") else 1)  # other real-worker tests next

    items.sort(key=rank)  # stable: file order within each rank
