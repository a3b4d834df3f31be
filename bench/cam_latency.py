"""``python -m bench.cam_latency [--backbone NAME] [--size N]``: how long ``g`` takes in the inference screen.

Not part of ``python -m bench`` (it times one real TensorFlow worker, no ratio). It builds a run of
``NAME`` (random weights: the load and the passes cost the same) in a temporary folder and times the
Grad-CAM client the screen uses (:class:`tltui.client.cam_server.CamServer`):

- cold: the first ``g`` when nothing started the worker (TensorFlow's import, the model load, the
  first pass), then the later ones;
- warmed: the screen starts the worker once a run's predictions show; the warm-up's time, then the
  first ``g`` pressed after it (the user looking at the results meanwhile) and the later ones.

Figures for ``docs/guide/inference.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tltui.client.cam_server import CamServer


def make_run(root: Path, backbone: str, size: int) -> Path:
    from tltui.core import presets
    from tltui.worker.model import build_classifier

    preset = presets.from_dict(
        {
            "name": "cam-latency",
            "data": {"source": "folder:/x", "image_size": [size, size]},
            "model": {"backbone": backbone, "weights": "none"},
        }
    )
    model, _ = build_classifier(preset, 3)
    run = root / "runs" / "r0001"
    run.mkdir(parents=True)
    model.save(run / "model.keras")
    (run / "classes.json").write_text(json.dumps(["a", "b", "c"]))
    (run / "data.json").write_text(json.dumps({"image_size": [size, size], "native_size": [size, size]}))
    return run


def images(root: Path, n: int, size: int) -> list[Path]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = root / "photos" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        out.append(path)
    return out


def timed(server: CamServer, pics: list[Path], out: Path, tag: str) -> list[float]:
    times = []
    for i, pic in enumerate(pics):
        t = time.perf_counter()
        server.cam(pic, out / f"{tag}-{i}.png")
        times.append(time.perf_counter() - t)
    return times


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cam_latency")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--later", type=int, default=5, help="presses timed after the first")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = make_run(root, args.backbone, args.size)
        pics = images(root, args.later + 1, args.size)
        out = root / "cams"
        out.mkdir()

        cold = CamServer(run)
        try:
            cold_times = timed(cold, pics, out, "cold")
        finally:
            cold.close()

        warm = CamServer(run)
        try:
            t = time.perf_counter()
            warm.start()  # what the screen does, in a thread, once predictions show
            warm_up = time.perf_counter() - t
            warm_times = timed(warm, pics, out, "warm")
        finally:
            warm.close()

    later_cold, later_warm = statistics.median(cold_times[1:]), statistics.median(warm_times[1:])
    print(f"backbone {args.backbone} {args.size}x{args.size}, random weights")
    print(f"cold:   first g {cold_times[0]:.2f} s, later g median {later_cold:.2f} s (n={len(cold_times) - 1})")
    print(f"warmed: warm-up {warm_up:.2f} s (in the background), first g after it {warm_times[0]:.2f} s, ", end="")
    print(f"later g median {later_warm:.2f} s (n={len(warm_times) - 1})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
