"""``python -m tltui.worker cams RUN_DIR --out-fd N``: Grad-CAM on request, the model loaded once.

The app's inference screen asks for one image's Grad-CAM at a time, as the user moves through the
results; starting a predict worker for each (TensorFlow's import and the model's load) took 18-24 s
on a loaded machine. This job pays that once: it loads the run's ``model.keras``, then reads one
request per line on stdin, ``{"image": PATH, "rel": "cat/01.png", "out": OVERLAY.png}``, and answers
each with one record on the output channel (:mod:`tltui.core.predict_records`): the image's
:class:`PredictionRow` with ``cam`` set to the overlay it wrote, or :class:`Skipped` with the reason
(an unreadable image, a bad request). A :class:`PredictStarted` (total 0) says it is ready, after
one pass on a blank image (so the first request is as quick as the next ones). It ends
when stdin closes. A fatal problem (no model, no feature map) is one ``{"type": "error"}`` line and
exit code 2, as the predict job's.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from PIL import Image

from tltui.core import images
from tltui.core.images import ImageEntry, ImageSkip
from tltui.core.predict_records import PredictStarted, Skipped
from tltui.core.workspace import RunPaths
from tltui.worker import predict
from tltui.worker.predict import JobError


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tltui.worker cams")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out-fd", type=int, required=True, help="write JSON lines to this inherited file descriptor")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--low-res", dest="low_res", action="store_const", const=True)
    res.add_argument("--full-res", dest="low_res", action="store_const", const=False)
    p.add_argument("--max-pixels", type=int, default=images.DEFAULT_MAX_PIXELS)
    return p.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    out = os.fdopen(args.out_fd, "w", buffering=1)
    try:
        serve(args.run_dir, sys.stdin, out, low_res=args.low_res, max_pixels=args.max_pixels)
    except JobError as e:
        with contextlib.suppress(OSError, ValueError):
            predict._write(out, {"type": "error", "message": str(e)})
        return 2
    except BrokenPipeError:  # the app went away
        return 0
    finally:
        with contextlib.suppress(OSError):
            out.close()
    return 0


def serve(
    run_dir: Path, requests: TextIO, out: TextIO, *, low_res: bool | None = None, max_pixels: int | None = None
) -> None:
    """Load the run's model once, then answer each request line of ``requests`` until it ends."""
    info = predict.read_run(run_dir)
    if info.get("export") is not None:
        raise JobError(f"{run_dir}: an exported model; Grad-CAM needs the run's Keras model")
    classes: list[str] = info["classes"]
    use_low = predict.use_low_res(info, low_res)
    if max_pixels is not None:
        Image.MAX_IMAGE_PIXELS = max_pixels
    model = predict.load_model(RunPaths(run_dir).model)
    from tltui.worker import gradcam

    try:
        gradcam.split(model)
    except gradcam.NoFeatureMap as e:
        raise JobError(f"no Grad-CAM for this run: {e}") from None
    size = predict.input_size(info, use_low)
    k = min(5, len(classes))
    warm_up(model, classes, k, size)
    predict._write(out, PredictStarted(0, classes, None, k, info["image_size"], use_low, info["native_size"]))
    for line in requests:
        if line.strip():
            predict._write(out, answer(model, line, classes, k, size, max_pixels or images.DEFAULT_MAX_PIXELS))


def warm_up(model: Any, classes: list[str], k: int, size: list[int]) -> None:
    """One request for a blank image before saying ready: the first real one would otherwise pay
    TensorFlow's tracing of the forward and the gradient pass (1.5 s of a 1.7 s first ``g`` here)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tltui-cam-warm-") as tmp:
        blank = Path(tmp) / "blank.png"
        Image.new("RGB", (size[1], size[0])).save(blank)
        request = json.dumps({"image": str(blank), "out": str(Path(tmp) / "blank.cam.png")})
        answer(model, request, classes, k, size, images.DEFAULT_MAX_PIXELS)


def answer(model: Any, line: str, classes: list[str], k: int, size: list[int], max_pixels: int) -> Any:
    """One request line -> the image's prediction with its overlay written, or why not (Skipped)."""
    import numpy as np

    try:
        req = json.loads(line)
        image, out_file, rel = Path(req["image"]), Path(req["out"]), str(req.get("rel") or Path(req["image"]).name)
    except (ValueError, KeyError, TypeError):
        return Skipped("", f"not a request: {line.strip()[:80]!r}")
    entry = ImageEntry(image, rel)
    try:
        arr = np.asarray(images.prepare(image, size, max_pixels=max_pixels), dtype=np.uint8)
    except ImageSkip as e:
        return Skipped(str(image), str(e), rel)
    x = arr[None].astype("float32")
    probs = np.asarray(model.predict_on_batch(x), dtype="float64")
    row = predict.prediction(entry, probs[0], classes, k, None)
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        predict.write_cams(model, x, [(entry, arr)], probs, out_file.parent, names=[out_file.name])
    except OSError as e:
        return Skipped(str(image), f"cannot write its Grad-CAM to {out_file}: {e.strerror or e}", rel)
    return dataclasses.replace(row, cam=str(out_file))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
