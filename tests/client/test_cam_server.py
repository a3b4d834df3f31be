"""The Grad-CAM client: one worker per run answers every request; a dead one is started again.

A scripted ``cams`` worker (no TensorFlow) stands in for ``python -m tltui.worker cams``; the real
one is tested in ``tests/worker/test_gradcam.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

from tltui.client.cam_server import CamServer, CamServers
from tltui.client.predict import PredictError

FAKE_CAMS = r"""
import json, os, sys
from pathlib import Path
from PIL import Image
from tltui.core.predict_records import PredictStarted, PredictionRow, Skipped, encode

argv = sys.argv[1:]
assert argv[0] == "cams", argv
run_dir = Path(argv[1])
out = os.fdopen(int(argv[argv.index("--out-fd") + 1]), "w", buffering=1)
with open(run_dir / "starts.txt", "a") as f:
    f.write(" ".join(argv[4:]) + "\n")  # the options after --out-fd N
if (run_dir / "broken").exists():
    out.write(encode({"type": "error", "message": "no Grad-CAM for this run: a TF Hub backbone"}))
    sys.exit(2)
out.write(encode(PredictStarted(0, ["cat", "dog"], None, 2, [16, 16])))
for line in sys.stdin:
    req = json.loads(line)
    if "die" in req["image"]:
        sys.exit(3)
    try:
        im = Image.open(req["image"]).convert("RGB")
    except OSError:
        out.write(encode(Skipped(req["image"], "cannot identify image file", req.get("rel") or "")))
        continue
    im.save(req["out"])
    out.write(encode(PredictionRow(req["image"], [("cat", 0.9), ("dog", 0.1)], None, "", None, req["out"])))
"""


@pytest.fixture
def worker(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_cams.py"
    script.write_text(FAKE_CAMS)
    return [sys.executable, str(script)]


def image(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def test_one_worker_answers_every_request_and_a_dead_one_starts_again(tmp_path: Path, worker: list[str]) -> None:
    run = tmp_path / "r0001"
    run.mkdir()
    server = CamServer(run, low_res=True, worker_cmd=worker)
    try:
        for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
            src = image(tmp_path / "photos" / f"{i}.png", colour)
            out = tmp_path / "cams" / f"{i}.png"
            out.parent.mkdir(exist_ok=True)
            assert server.cam(src, out) == str(out)
            assert Image.open(out).getpixel((0, 0)) == colour
        assert server.starts == 1 and (run / "starts.txt").read_text() == "--low-res\n"
        (tmp_path / "bad.png").write_bytes(b"not a png")
        with pytest.raises(PredictError, match="bad.png: cannot identify image file"):
            server.cam(tmp_path / "bad.png", tmp_path / "cams" / "bad.png")
        assert server.starts == 1  # a bad image is an answer, not a failure of the worker
        with pytest.raises(PredictError, match="Grad-CAM worker exited with code 3"):
            server.cam(image(tmp_path / "die.png", (1, 1, 1)), tmp_path / "cams" / "die.png")
        assert server.cam(tmp_path / "photos" / "0.png", tmp_path / "cams" / "again.png")  # started again
        assert server.starts == 2
    finally:
        server.close()
    assert server.pid is None


def test_a_worker_that_cannot_serve_says_why(tmp_path: Path, worker: list[str]) -> None:
    run = tmp_path / "r0002"
    run.mkdir()
    (run / "broken").touch()
    server = CamServer(run, worker_cmd=worker)
    with pytest.raises(PredictError, match="no Grad-CAM for this run: a TF Hub backbone"):
        server.cam(image(tmp_path / "a.png", (9, 9, 9)), tmp_path / "a.cam.png")
    server.close()


def test_one_server_per_run_and_resolution_all_closed_together(tmp_path: Path, worker: list[str]) -> None:
    servers = CamServers(worker_cmd=worker)
    runs = [tmp_path / "r1", tmp_path / "r2"]
    for run in runs:
        run.mkdir()
    src = image(tmp_path / "a.png", (5, 5, 5))
    try:
        for run in runs:
            for _ in range(2):
                servers(run, src, tmp_path / f"{run.name}.png", True)
        servers(runs[0], src, tmp_path / "full.png", False)
        started = {run.name: (run / "starts.txt").read_text().splitlines() for run in runs}
        assert {name: len(lines) for name, lines in started.items()} == {"r1": 2, "r2": 1}
        kept = [servers.server(run, True) for run in runs]
        assert all(server.pid for server in kept)
    finally:
        servers.close()
    assert all(server.pid is None for server in kept)
    with pytest.raises(PredictError, match="closed"):  # a late warm-up starts nothing
        servers.warm(runs[0], True)


def test_a_warmed_worker_answers_the_first_request_without_starting_again(tmp_path: Path, worker: list[str]) -> None:
    run = tmp_path / "r3"
    run.mkdir()
    servers = CamServers(worker_cmd=worker)
    try:
        servers.warm(run, None)
        server = servers.server(run, None)
        assert server.starts == 1 and server.pid is not None
        assert servers(run, image(tmp_path / "a.png", (3, 3, 3)), tmp_path / "a.cam.png") == str(tmp_path / "a.cam.png")
        assert server.starts == 1  # the first request used the warmed worker
        (tmp_path / "r4").mkdir()
        servers.warm(tmp_path / "r4", None)  # another run's results: its worker replaces this one
        assert server.pid is None and servers.server(tmp_path / "r4", None).pid is not None
    finally:
        servers.close()
    assert server.pid is None
    with pytest.raises(PredictError, match="closed"):
        server.start()  # closed for good: a warm-up racing the close starts no orphan
