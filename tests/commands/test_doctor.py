"""`tltui doctor` end to end without TensorFlow (`--no-tf`; the TensorFlow probe is the worker's, tested
in tests/worker/test_devices.py): a fake GPU inventory, JSON and text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tltui.commands.main import main


def test_doctor_reports_the_fake_gpus_cpus_and_disks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TLTUI_FAKE_GPUS", "2")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    rc = main(["--workspace", str(tmp_path / "ws"), "doctor", "--no-tf", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["tensorflow"] is None
    assert [g["name"] for g in out["nvml"]] == ["Fake GPU", "Fake GPU"]
    assert out["disks"][0]["label"] == "workspace" and out["disks"][0]["free"] > 0
    assert rc == (1 if out["problems"] else 0)
    assert any(n.startswith("TensorFlow: not asked (--no-tf); NVML sees 2 GPU(s)") for n in out["notes"])

    monkeypatch.setenv("TLTUI_FAKE_GPUS", "0")
    rc = main(["--workspace", str(tmp_path / "ws"), "doctor", "--no-tf"])
    text = capsys.readouterr().out
    assert "no GPU: runs train on the CPU" in text
    assert (text.rstrip().splitlines()[-1] == "no problems found") == (rc == 0)
