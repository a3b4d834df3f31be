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
    from tltui.workspace import Workspace

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
