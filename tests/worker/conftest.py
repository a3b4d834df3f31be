"""Fixtures the worker's end-to-end tests share."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tltui.core import demo


@pytest.fixture
def shapes(tmp_path: Path) -> Path:
    """A tiny generated image folder: 3 classes x 8 images of 16x16."""
    return demo.generate(tmp_path / "shapes", per_class=8, size=16, shapes=("circle", "square", "cross"))


@pytest.fixture
def restore_signals():
    """The worker installs SIGINT/SIGTERM handlers when it trains in this process; put them back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)
