"""The export client against the scripted fake worker (no TensorFlow): records as they come, the exit code
of an export over its threshold is a result, a worker failure is one line, a stop is quiet."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

from tltui.client.export import (
    ExportError,
    ExportJob,
    ExportNote,
    ExportProgress,
    ExportResult,
    drop_line,
    result_lines,
)

FAKE = [sys.executable, str(Path(__file__).resolve().parents[1] / "fake_export.py")]


def job(tmp_path: Path, mode: str, *args: object, **kw: object) -> ExportJob:
    env = {"TLTUI_FAKE_EXPORT": mode, "TLTUI_FAKE_EXPORT_ARGV": str(tmp_path / "argv.json")}
    (tmp_path / "runs" / "r0003").mkdir(parents=True, exist_ok=True)
    return ExportJob(tmp_path / "runs" / "r0003", *args, worker_cmd=FAKE, env=env, **kw)  # type: ignore[arg-type]


def test_records_arrive_in_order_and_the_options_reach_the_worker(tmp_path: Path) -> None:
    with job(tmp_path, "pass", "litert", "int8", max_drop=0.5, command="tltui export r0003 --format litert") as j:
        recs = list(j)
    assert [type(r) for r in recs] == [ExportProgress] * 5 + [ExportNote, ExportResult]
    assert [r.fraction for r in recs if isinstance(r, ExportProgress)][-1] == 1.0
    result = recs[-1]
    assert (
        isinstance(result, ExportResult)
        and result.passed
        and result.calibration
        == {
            "split": "train",
            "images": 300,
            "seed": 42,
        }
    )
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[:2] == ["export", str(tmp_path / "runs" / "r0003")]
    assert "--max-drop=0.5" in argv and argv[argv.index("--quantize") + 1] == "int8"
    assert argv[argv.index("--command") + 1] == "tltui export r0003 --format litert"
    assert result_lines(result)[0].startswith("litert-int8: ")
    assert "verified (top-1 may drop at most 0.5 points)" in result_lines(result)[-1]


def test_an_export_over_its_threshold_is_a_result_not_an_error(tmp_path: Path) -> None:
    with job(tmp_path, "drop", "onnx", max_drop=-1) as j:
        recs = list(j)
    result = recs[-1]
    assert isinstance(result, ExportResult) and not result.passed and j.returncode == 1
    assert "--max-drop=-1.0" in json.loads((tmp_path / "argv.json").read_text())  # "=": no option
    assert drop_line(result) == (
        f"onnx lost 3.75 points of top-1 on validation (91.25% -> 87.50%), over --max-drop -1; kept and marked "
        f"in {tmp_path}/runs/r0003/exports/onnx (VERIFICATION_FAILED)"
    )
    assert any("NOT verified" in line for line in result_lines(result))


def test_a_worker_error_is_its_one_line(tmp_path: Path) -> None:
    with job(tmp_path, "fail", "litert") as j, pytest.raises(ExportError) as e:
        list(j)
    assert str(e.value) == "litert: cannot convert tiny_cnn: no LiteRT built-in kernel for Digamma"


def test_a_worker_that_dies_without_a_word_is_reported_with_its_log(tmp_path: Path) -> None:
    with job(tmp_path, "crash", "onnx") as j, pytest.raises(ExportError) as e:
        list(j)
    assert str(e.value) == "export worker exited with code 3: RuntimeError: the fake worker crashed"
    log = (tmp_path / "runs" / "r0003" / "export.log").read_text()  # kept in the run's folder
    assert log.startswith("Traceback (most recent call last):")


def test_cancel_stops_the_worker_with_sigterm_and_ends_quietly(tmp_path: Path) -> None:
    j = job(tmp_path, "wait", "savedmodel")
    seen = threading.Event()
    got: list[object] = []

    def read() -> None:
        for rec in j:
            got.append(rec)
            seen.set()

    t = threading.Thread(target=read)
    t.start()
    assert seen.wait(30)
    j.cancel()
    t.join(30)
    assert not t.is_alive() and j.returncode == 143  # SIGTERM: the worker unwound (and cleaned up)
    j.close()


def test_a_quantization_the_format_does_not_take_is_refused_before_any_worker(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="a SavedModel is exported as float32"):
        ExportJob(tmp_path, "savedmodel", "int8", worker_cmd=["/nonexistent"])
    with pytest.raises(ExportError, match="onnx takes dynamic or int8; float16 is for --format litert"):
        ExportJob(tmp_path, "onnx", "float16", worker_cmd=["/nonexistent"])
