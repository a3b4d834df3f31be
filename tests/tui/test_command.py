"""``tltui tui`` and bare ``tltui`` open the app on the workspace (Textual imported lazily)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tltui.commands import main as cli


@pytest.fixture
def opened(monkeypatch):
    calls = []
    import tltui.tui.app as app_mod

    monkeypatch.setattr(app_mod, "run_app", lambda ws, *, open_preset=None: calls.append((ws.root, open_preset)))
    return calls


def test_bare_tltui_opens_the_app(opened, tmp_path):
    assert cli.main(["--workspace", str(tmp_path / "w")]) == 0
    assert opened == [(tmp_path / "w", None)]


def test_tui_preset_names_a_preset_to_queue(opened, tmp_path):
    ws_dir = tmp_path / "w"
    (ws_dir / "presets").mkdir(parents=True)
    (ws_dir / "presets" / "mine.toml").write_text("name = 'mine'\n")
    assert cli.main(["--workspace", str(ws_dir), "tui", "--preset", "mine"]) == 0
    assert opened == [(ws_dir, Path(ws_dir / "presets" / "mine.toml"))]
