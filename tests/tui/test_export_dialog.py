"""The export key of a completed run and its dialog, with the scripted fake export worker (no TensorFlow):
progress, then the figures (green when verified, red when over the threshold), a converter's one line,
a stop, and no key on a run that has nothing to export."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Footer, ProgressBar, Select, Static

from tests.tui.screen_host import asynctest, screen_text, until
from tltui.runner.supervisor import WORKER_CMD_ENV
from tltui.tui.screens.export import ExportDialog

FAKE = [sys.executable, str(Path(__file__).resolve().parents[1] / "fake_export.py")]


@pytest.fixture
def fake_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(WORKER_CMD_ENV, json.dumps(FAKE))
    monkeypatch.setenv("TLTUI_FAKE_EXPORT_ARGV", str(tmp_path / "argv.json"))
    return tmp_path / "argv.json"


def footer_keys(app: Any) -> str:
    return " ".join(str(k.key) for k in app.screen.query_one(Footer).query("FooterKey"))


def result_text(app: Any) -> str:
    return str(app.screen.query_one("#export-result", Static).content)


async def open_dialog(app: Any, pilot: Any, run_id: str) -> ExportDialog:
    app.open_run(run_id)
    await until(pilot, lambda: "Export" in screen_text(app), "the run screen with its Export key")
    await pilot.press("e")
    await until(pilot, lambda: isinstance(app.screen, ExportDialog), "the export dialog")
    return app.screen


@asynctest
async def test_e_on_a_completed_run_exports_and_shows_the_figures(scripted, make_app, fake_worker: Path) -> None:
    ws, ids = scripted
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        app.open_run(ids["completed"])
        # In the footer once the run screen has drawn: the run completed.
        await until(pilot, lambda: "Export" in screen_text(app), "the Export key in the footer")
        dialog = await open_dialog(app, pilot, ids["completed"])
        dialog.query_one("#export-format", Select).value = "litert"
        await pilot.pause()
        quantize = dialog.query_one("#export-quantize", Select)
        assert [str(o[1]) for o in quantize._options if o[1] is not Select.BLANK] == [
            "none",
            "float16",
            "dynamic",
            "int8",
        ]
        quantize.value = "int8"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: not dialog.running, "the export to finish")
        text = result_text(app)
        assert text.startswith(f"litert-int8: {ws.root}/runs/{ids['completed']}/exports/litert-int8/model.tflite")
        assert "validation (80 images): top-1 91.25% vs Keras 91.25% (drop +0.00 points)" in text
        assert "verified (top-1 may drop at most 1 point)" in text
        assert "warning: the fake worker measured nothing" in text
        assert dialog.result is not None and dialog.result.passed
        assert not dialog.query_one("#export-bar", ProgressBar).display
        argv = json.loads(fake_worker.read_text())
        assert argv[1] == str(ws.run_paths(ids["completed"]).dir)
        assert argv[argv.index("--format") + 1] == "litert" and argv[argv.index("--quantize") + 1] == "int8"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ExportDialog), "the dialog to close")


@asynctest
async def test_the_quantizations_follow_the_format_and_a_bad_max_drop_is_one_line(
    scripted, make_app, fake_worker: Path
) -> None:
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        dialog = await open_dialog(app, pilot, ids["completed"])
        dialog.query_one("#export-format", Select).value = "savedmodel"
        await pilot.pause()
        assert [o[1] for o in dialog.query_one("#export-quantize", Select)._options if o[1] is not Select.BLANK] == [
            "none"
        ]
        dialog.query_one("#export-format", Select).value = "onnx"
        await pilot.pause()
        assert "float16" not in [o[1] for o in dialog.query_one("#export-quantize", Select)._options]
        dialog.query_one("#export-max-drop").value = "lots"
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not dialog.running and not fake_worker.exists()  # refused before any worker
        assert result_text(app) == "max drop 'lots': expected a number of points, e.g. 1 or 0.5"


@asynctest
async def test_an_export_over_its_threshold_is_shown_in_red_and_kept(
    scripted, make_app, fake_worker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLTUI_FAKE_EXPORT", "drop")
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        dialog = await open_dialog(app, pilot, ids["completed"])
        await pilot.press("ctrl+r")
        await until(pilot, lambda: not dialog.running, "the export to finish")
        assert dialog.result is not None and not dialog.result.passed
        assert "NOT verified" in result_text(app) and "(drop +3.75 points)" in result_text(app)
        assert "over the threshold: kept and marked" in str(dialog.query_one("#export-step", Static).content)
        assert dialog.query_one("#export-result", Static).content.style == "bold red"


@asynctest
async def test_a_converter_failure_is_its_one_line(
    scripted, make_app, fake_worker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLTUI_FAKE_EXPORT", "fail")
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        dialog = await open_dialog(app, pilot, ids["completed"])
        await pilot.press("ctrl+r")
        await until(pilot, lambda: not dialog.running, "the export to end")
        assert dialog.result is None
        assert result_text(app) == "litert: cannot convert tiny_cnn: no LiteRT built-in kernel for Digamma"
        assert str(dialog.query_one("#export-step", Static).content) == "nothing exported"


@asynctest
async def test_escape_stops_a_running_export_then_closes(
    scripted, make_app, fake_worker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLTUI_FAKE_EXPORT", "wait")
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        dialog = await open_dialog(app, pilot, ids["completed"])
        await pilot.press("ctrl+r")
        step = dialog.query_one("#export-step", Static)
        await until(pilot, lambda: "loading" in str(step.content), "the worker's first record")
        assert dialog.query_one("#export-bar", ProgressBar).display
        await pilot.press("escape")
        await until(pilot, lambda: not dialog.running, "the export to stop")
        assert isinstance(app.screen, ExportDialog)
        assert str(step.content) == "stopped; nothing exported"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ExportDialog), "the dialog to close")


@asynctest
async def test_a_run_that_did_not_complete_has_no_export_key(scripted, make_app) -> None:
    _ws, ids = scripted
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        for role in ("running", "failed"):
            app.open_run(ids[role])
            await pilot.pause()
            assert "Export" not in screen_text(app)
            await pilot.press("e")
            await pilot.pause()
            assert not isinstance(app.screen, ExportDialog)
            await pilot.press("escape")
            await pilot.pause()
