"""What an export is (formats, quantizations, the manifest) and the export worker's records, both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tltui.core import export_records, exports
from tltui.core.export_records import ExportNote, ExportProgress, ExportResult, SplitCheck
from tltui.core.exports import ExportError, Manifest


@pytest.mark.parametrize("fmt", exports.FORMATS)
@pytest.mark.parametrize("quantize", [None, *exports.QUANTIZATIONS])
def test_each_format_takes_its_quantizations_and_refuses_the_others_in_one_line(fmt: str, quantize: str | None) -> None:
    if quantize is None or quantize in exports.QUANTIZE_BY_FORMAT[fmt]:
        exports.check_combination(fmt, quantize)
        return
    with pytest.raises(ExportError) as e:
        exports.check_combination(fmt, quantize)
    assert str(e.value).startswith(f"--quantize {quantize}: ") and "\n" not in str(e.value)


def test_default_folder_and_variant_names(tmp_path: Path) -> None:
    assert exports.default_dir(tmp_path, "litert", "int8") == tmp_path / "exports" / "litert-int8"
    assert exports.variant("onnx", None) == "onnx"
    assert exports.points(1) == "1 point" and exports.points(0.5) == "0.5 points"


def manifest(**kw: object) -> Manifest:
    fields: dict[str, object] = {
        "format": "litert",
        "quantize": "int8",
        "artifact": "model.tflite",
        "input_size": [32, 32],
        "image_size": [224, 224],
        "classes": ["cat", "dog"],
        "run_id": "r0012",
        "run_dir": "/ws/runs/r0012",
        "passed": True,
        "max_drop": 1.0,
    }
    fields.update(kw)
    return Manifest(**fields)  # type: ignore[arg-type]


def test_the_manifest_reads_back_what_was_written(tmp_path: Path) -> None:
    m = manifest()
    (tmp_path / "export.json").write_text(json.dumps({**m.to_dict(), "tltui": "0.1.0"}))
    assert exports.is_export(tmp_path) and not exports.is_export(tmp_path / "nope")
    assert exports.read_manifest(tmp_path) == m
    assert m.label == "r0012 litert-int8"
    sig = m.to_dict()["signature"]
    assert sig["inputs"]["image"]["shape"] == [None, 32, 32, 3] and sig["outputs"]["probabilities"]["shape"] == [
        None,
        2,
    ]


def test_a_manifest_that_does_not_read_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"export.json: cannot read \(No such file or directory\)"):
        exports.read_manifest(tmp_path)
    (tmp_path / "export.json").write_text('{"format": "litert"}')
    with pytest.raises(ExportError, match=r"export.json: not an export manifest \(KeyError: 'artifact'\)"):
        exports.read_manifest(tmp_path)
    (tmp_path / "export.json").write_text(json.dumps(manifest(format="pickle").to_dict()))
    with pytest.raises(ExportError, match="not an export manifest .format 'pickle'"):
        exports.read_manifest(tmp_path)


def test_records_round_trip_and_a_drop_is_in_points() -> None:
    check = SplitCheck("validation", "validation", 80, 0.9125, 0.875, 0.95, 0.031, 0.99, 0.9875)
    result = ExportResult(
        out="/o",
        format="onnx",
        quantize="int8",
        artifact="/o/model.onnx",
        size_bytes=10,
        input_size=[32, 32],
        num_classes=10,
        max_drop=1.0,
        passed=False,
        checks=[check, SplitCheck("test", "test", 100, 0.9, 0.9, 1.0, 0.0)],
        calibration={"split": "train", "images": 300, "seed": 42},
        notes=["n"],
    )
    assert check.drop == pytest.approx(3.75) and result.worst == check
    exact = SplitCheck("validation", "validation", 100, 92 / 100, 91 / 100, 0.99, 0.01)
    assert exact.drop == 1.0  # exactly the --max-drop of 1: within it (the float difference was 1.0000000000000009)
    for rec in (ExportProgress("verify", "verifying", 3, 9), ExportNote("warning", "w"), result):
        assert export_records.decode(export_records.encode(rec)) == rec
    assert export_records.decode(export_records.encode({"type": "error", "message": "no"})) == "no"
    assert export_records.decode("not json") is None and export_records.decode('{"type": "result"}') is None
    assert ExportProgress("verify", "v", 3, 9).fraction == pytest.approx(1 / 3)
    assert ExportProgress("load", "l").fraction is None


def test_max_drop_is_a_finite_number_of_points() -> None:
    from tltui.core.exports import parse_max_drop

    assert parse_max_drop("0.5") == 0.5 and parse_max_drop(" -1 ") == -1.0
    for text in ("nan", "inf", "-inf", "1e999"):  # nan failed every export, inf passed any
        with pytest.raises(ExportError, match="finite number of points"):
            parse_max_drop(text)
    with pytest.raises(ExportError, match="expected a number of points"):
        parse_max_drop("one")
