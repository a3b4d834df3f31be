"""The export job's parts that need no TensorFlow: the converter's one line, the model card, the folder swap,
what a killed export left behind and the command the card quotes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tltui.core.export_records import ExportResult, SplitCheck
from tltui.worker import export, model_card
from tltui.worker.export_formats import litert_reason


def test_a_converter_error_becomes_the_ops_it_lacks_or_its_first_error() -> None:
    msg = (
        "Could not translate MLIR to FlatBuffer.<unknown>:0: error: failed while converting: 'main':\n"
        "Some ops in the model are custom ops, See instructions to implement custom ops: https://...\n"
        "Custom ops: Digamma, Erfinv\nDetails:\n\ttf.Digamma(tensor<?x3xf32>)"
    )
    assert litert_reason(RuntimeError(msg)) == "no LiteRT built-in kernel for Digamma, Erfinv"
    assert litert_reason(RuntimeError("x\nloc(...): error: 'tfl.conv_2d' op quantization failed\nmore")) == (
        "'tfl.conv_2d' op quantization failed"
    )
    assert litert_reason(ValueError("just this")) == "just this"


def result(passed: bool) -> ExportResult:
    return ExportResult(
        out="/o",
        format="litert",
        quantize="int8",
        artifact="/o/model.tflite",
        size_bytes=654_368,
        input_size=[32, 32],
        num_classes=3,
        max_drop=1.0,
        passed=passed,
        checks=[SplitCheck("validation", "validation", 80, 0.9, 0.9 if passed else 0.85, 0.95, 0.03)],
    )


def test_a_failed_verification_is_the_cards_first_line() -> None:
    assert model_card.failure_line(result(False)) == (
        "VERIFICATION FAILED: top-1 dropped 5.00 points on validation (90.00% -> 85.00%), "
        "more than the 1 point allowed; kept for inspection"
    )
    doc = {
        "run": {"id": "r0001", "dir": "/ws/runs/r0001", "preset": "p"},
        "model": {
            "backbone": "tiny_cnn",
            "weights": "none",
            "alpha": None,
            "dropout": 0.0,
            "image_size": [32, 32],
            "total_params": 10,
        },
        "data": {
            "source": "folder:/x",
            "native_size": [32, 32],
            "train_examples": 9,
            "val_examples": 3,
            "test_examples": None,
            "num_classes": 3,
            "classes": ["a", "b", "c"],
        },
        "training": {"phases": [], "epochs_trained": 2, "kept": None, "test": None},
        "export": {
            "format": "litert",
            "quantize": "int8",
            "artifact": "model.tflite",
            "size_bytes": 654_368,
            "runtime": "the LiteRT interpreter (ai-edge-litert)",
            "signature": {"inputs": {"image": {"shape": [None, 32, 32, 3]}}},
            "calibration": None,
            "versions": {"tltui": "0.1.0"},
        },
        "reproduce": {"export": "tltui export r0001 --format litert --quantize int8"},
    }
    failed = model_card.markdown(doc, result(False)).splitlines()
    assert failed[0].startswith("**VERIFICATION FAILED") and failed[2] == "# r0001 p: tiny_cnn as litert-int8"
    assert model_card.markdown(doc, result(True)).splitlines()[0] == "# r0001 p: tiny_cnn as litert-int8"


def test_a_new_export_replaces_the_old_one_whole(tmp_path: Path) -> None:
    out, tmp = tmp_path / "litert", tmp_path / ".litert.tmp-1"
    out.mkdir()
    (out / "VERIFICATION_FAILED").write_text("old")
    tmp.mkdir()
    (tmp / "model.tflite").write_text("new")
    export.replace_folder(tmp, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["litert"]
    assert [p.name for p in out.iterdir()] == ["model.tflite"]


def test_what_a_killed_export_left_is_swept_by_the_next(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    out = tmp_path / "onnx"
    for name in (f".onnx.tmp-{pid}", f".onnx.old-{pid}", f".onnx.tmp-{os.getpid()}", ".other.tmp-1"):
        (tmp_path / name).mkdir()
    export.sweep(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".onnx.tmp-" + str(os.getpid()), ".other.tmp-1"]


def test_the_reproduce_command_names_only_what_differs_from_the_defaults() -> None:
    assert export.export_command("r0001", "onnx", None, None, 1.0) == "tltui export r0001 --format onnx"
    cmd = export.export_command("r0001", "litert", "int8", Path("/x"), 0.5)
    assert cmd == "tltui export r0001 --format litert --quantize int8 --out /x --max-drop 0.5"
    assert json.loads(json.dumps(export.tool_versions("onnx")))["tltui"]
