"""``tltui hub fetch`` with a scripted worker (no TensorFlow): arguments, output, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tltui.commands.main import main

SCRIPT = """
import json, sys
args = sys.argv[1:]
json.dump(args, open(sys.argv[0] + ".args", "w"))
if "broken" in args[1]:
    print("some TensorFlow noise", file=sys.stderr)
    print("error: hub:%s: cannot download (timed out); on a machine with network ..." % args[1], file=sys.stderr)
    sys.exit(2)
print(json.dumps({"handle": "hub:" + args[1], "path": "/cache/abc", "endpoint": "__call__", "input_size": [None, None],
                  "output_dim": 2048, "training_argument": True, "variables": 378, "trainable_variables": 188,
                  "params": 21802784}))
"""


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "hub_worker.py"
    script.write_text(SCRIPT)
    monkeypatch.setenv("TLTUI_WORKER_CMD", json.dumps([sys.executable, str(script)]))
    return script


def test_fetch_runs_the_worker_with_the_workspace_cache(ws, worker: Path, capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--workspace", str(ws.root), "hub", "fetch", "hub:models/inception", "--timeout", "7"]) == 0
    args = json.loads(Path(str(worker) + ".args").read_text())
    local = str((tmp_path / "models" / "inception").resolve())
    assert args == ["hub-fetch", local, "--cache", str(ws.root / "cache" / "tfhub"), "--timeout", "7.0"]
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"ready: hub:{local}"
    assert "input any size, output 2048, 378 variables (188 trainable, 21,802,784 parameters)" in out


def test_fetch_json(ws, worker: Path, capsys) -> None:
    url = "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5"
    assert main(["--workspace", str(ws.root), "hub", "fetch", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["handle"] == f"hub:{url}"


def test_fetch_error_is_the_workers_one_line(ws, worker: Path, capsys) -> None:
    assert main(["--workspace", str(ws.root), "hub", "fetch", "https://example.org/broken.tar.gz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: hub:https://example.org/broken.tar.gz: cannot download (timed out); on a machine with network ..."
    ]
