"""``tltui export``: user errors and exit codes with the scripted fake worker (no TensorFlow), then the real
worker end to end: a run exported, verified and compared with ``tltui predict EXPORT_DIR --against RUN_ID``."""

from __future__ import annotations

import json
import shlex
import signal
import sys
from pathlib import Path

import pytest

from tests.predict_corpus import make_run
from tltui.commands import main as cli
from tltui.runner.supervisor import WORKER_CMD_ENV

FAKE = [sys.executable, str(Path(__file__).resolve().parents[1] / "fake_export.py")]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake export worker; the file it writes its arguments to."""
    monkeypatch.setenv(WORKER_CMD_ENV, json.dumps(FAKE))
    monkeypatch.setenv("TLTUI_FAKE_EXPORT_ARGV", str(tmp_path / "argv.json"))
    return tmp_path / "argv.json"


@pytest.fixture
def run_id(ws, tmp_path: Path) -> str:
    model = tmp_path / "model.keras"
    model.write_bytes(b"the fake worker never opens it")
    return make_run(ws, model)


def export(ws, *argv: str) -> int:
    return cli.main(["--workspace", str(ws.root), "export", *argv])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def test_a_verified_export_prints_its_figures_and_exits_0(
    ws, run_id: str, fake: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLTUI_FAKE_EXPORT", "pass")
    assert export(ws, run_id, "--format", "litert", "--quantize", "int8") == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith(f"litert-int8: {ws.root}/runs/{run_id}/exports/litert-int8/model.tflite (0.65 MB)")
    assert lines[1] == (
        "  validation (80 images): top-1 91.25% vs Keras 91.25% (drop +0.00 points), top-5 98.75% vs 99.00%, "
        "agreement 95.00%, max prob diff 0.031"
    )
    assert lines[3] == "  int8 calibrated on 300 train images drawn with seed 42"
    assert lines[-1].startswith("verified (top-1 may drop at most 1 point); files in ")
    assert err == "warning: the fake worker measured nothing\n"
    argv = json.loads(fake.read_text())
    command = shlex.split(argv[argv.index("--command") + 1])
    assert command == [
        "tltui",
        "--workspace",
        str(ws.root),
        "export",
        run_id,
        "--format",
        "litert",
        "--quantize",
        "int8",
    ]


def test_json_output(ws, run_id: str, fake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert export(ws, run_id, "--format", "onnx", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["run"] == run_id and doc["passed"] is True and doc["format"] == "onnx"
    assert [c["split"] for c in doc["checks"]] == ["validation", "test"] and doc["checks"][0]["drop"] == 0.0


def test_a_drop_over_the_threshold_prints_the_figures_and_one_error_line_exit_1(
    ws, run_id: str, fake: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLTUI_FAKE_EXPORT", "drop")
    assert export(ws, run_id, "--format", "onnx", "--max-drop", "2") == 1
    out, err = capsys.readouterr()
    assert "top-1 87.50% vs Keras 91.25% (drop +3.75 points)" in out and "NOT verified" in out
    assert err.splitlines()[-1] == (
        f"error: {run_id}: onnx lost 3.75 points of top-1 on validation (91.25% -> 87.50%), over --max-drop 2; "
        f"kept and marked in {ws.root}/runs/{run_id}/exports/onnx (VERIFICATION_FAILED)"
    )
    assert "--max-drop=2.0" in json.loads(fake.read_text())


def test_a_converter_failure_is_one_line_exit_2(
    ws, run_id: str, fake: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLTUI_FAKE_EXPORT", "fail")
    assert export(ws, run_id, "--format", "litert") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: {run_id}: litert: cannot convert tiny_cnn: no LiteRT built-in kernel for Digamma\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--format", "savedmodel", "--quantize", "int8"],
            "--quantize int8: a SavedModel is exported as float32; quantize for LiteRT or ONNX (--format litert|onnx)",
        ),
        (
            ["--format", "onnx", "--quantize", "float16"],
            "--quantize float16: onnx takes dynamic or int8; float16 is for --format litert",
        ),
    ],
)
def test_a_quantization_the_format_does_not_take_is_one_line_exit_2(
    ws, run_id: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export(ws, run_id, *argv) == 2
    assert one_error_line(capsys) == f"error: {message}"


def test_an_unknown_run_is_one_line_exit_2(ws, capsys: pytest.CaptureFixture[str]) -> None:
    assert export(ws, "r9999", "--format", "onnx") == 2
    assert one_error_line(capsys) == "error: r9999: no such run (see `tltui runs ls`)"


@pytest.mark.parametrize("status", ["running", "failed"])
def test_a_run_that_is_not_completed_is_refused(
    ws, tmp_path: Path, status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.keras"
    model.write_bytes(b"x")
    rid = make_run(ws, model, status=status)
    assert export(ws, rid, "--format", "onnx") == 2
    assert one_error_line(capsys) == f"error: {rid}: is {status}, not completed; only a completed run can be exported"


def test_out_that_holds_something_else_is_refused(
    ws, run_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert export(ws, run_id, "--format", "onnx", "--out", str(out)) == 2
    assert (
        one_error_line(capsys) == f"error: --out {out}: exists and is not an export folder; give a new or empty folder"
    )
    assert (out / "notes.txt").read_text() == "mine"


def test_export_is_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "export" in capsys.readouterr().out


# ---------------------------------------------------------------------------- the real worker


@pytest.fixture
def restore_signals():
    """The training worker installs SIGINT/SIGTERM handlers when it trains in this process; put them back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.e2e
@pytest.mark.xdist_group("export")
def test_export_then_predict_with_the_export_against_its_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_signals: None
) -> None:
    """The whole path a user takes: a trained run, ``tltui export`` (the worker in its own process), then
    ``tltui predict EXPORT_DIR FOLDER --against RUN_ID``: the float export agrees with its run on every image."""
    from tests.worker.test_train_e2e import run_in_process
    from tltui.core import demo, presets
    from tltui.core.workspace import Workspace

    shapes = demo.generate(tmp_path / "shapes", per_class=8, size=16, shapes=("circle", "square", "cross"))
    preset = presets.from_dict(
        {
            "name": "shapes",
            "data": {"source": f"folder:{shapes}", "image_size": [16, 16], "batch_size": 8, "augment": False},
            "model": {"backbone": "tiny_cnn", "weights": "none"},
            "train": {"epochs": 2, "checkpoint_every": 0},
        }
    )
    ws = Workspace(tmp_path / "ws")
    rec = ws.create_runs([("shapes", presets.dumps(preset), {})], preset_name="shapes", queued=False)[0]
    rc, events = run_in_process(ws.run_paths(rec.id).dir, preset)
    assert rc == 0, events[-1]
    ws.update(rec.id, status="completed")
    root = str(ws.root)
    capsys.readouterr()

    assert cli.main(["--workspace", root, "export", rec.id, "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    folder = ws.run_paths(rec.id).dir / "exports" / "onnx"
    assert out.startswith(f"onnx: {folder}/model.onnx (") and "agreement 100.00%" in out
    assert cli.main(["--workspace", root, "export", rec.id, "--format", "onnx", "--max-drop=-1"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith(f"error: {rec.id}: onnx lost 0.00 points of top-1 on validation (")
    assert (folder / "VERIFICATION_FAILED").is_file()

    assert cli.main(["--workspace", root, "predict", str(folder), str(shapes), "--against", rec.id, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["run"] == f"{rec.id} onnx" and doc["summary"]["predicted"] == 24
    against = doc["against"]
    assert (against["run_a"], against["run_b"], against["agree"], against["disagree"]) == (
        f"{rec.id} onnx",
        rec.id,
        24,
        [],
    )
    ws.close()
