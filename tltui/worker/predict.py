"""``python -m tltui.worker predict RUN_DIR FOLDER --out-fd N|--out PATH``: classify a folder.

Loads the run's ``model.keras`` (``safe_mode=True``) -- or, given a folder ``tltui export`` wrote
instead of a run, that artifact with its own runtime (:mod:`tltui.worker.export_formats`) -- streams the folder's
images in batches (a generator: never the whole folder in memory), and writes
one JSON line per image, per skipped file and per batch (progress) to the
output channel (see :mod:`tltui.core.predict_records`). A fatal problem is one
``{"type": "error"}`` line and exit code 2. Stdout is never the channel:
TensorFlow and Keras print there.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import queue
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeGuard, TypeVar

from PIL import Image

from tltui.core import exports, images
from tltui.core.images import ImageEntry, ImageSkip
from tltui.core.predict_records import PredictionRow, PredictStarted, Progress, Skipped, encode
from tltui.core.workspace import RunPaths
from tltui.worker.errors import WorkerError

T = TypeVar("T")


class JobError(WorkerError):
    """Stops the job; the message is the one line the user sees."""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tltui.worker predict")
    p.add_argument("run_dir", type=Path)
    p.add_argument("folder", type=Path)
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out-fd", type=int, help="write JSON lines to this inherited file descriptor")
    out.add_argument("--out", type=Path, help="write JSON lines to this file")
    p.add_argument("--top-k", type=int, default=5)
    res = p.add_mutually_exclusive_group()
    res.add_argument(
        "--low-res",
        dest="low_res",
        action="store_const",
        const=True,
        help="shrink to the training data's native size first (the default when it is smaller)",
    )
    res.add_argument(
        "--full-res",
        dest="low_res",
        action="store_const",
        const=False,
        help="resize straight to the model's input size",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-pixels", type=int, default=images.DEFAULT_MAX_PIXELS)
    p.add_argument(
        "--cam", type=Path, metavar="OUT_DIR", help="write a Grad-CAM overlay PNG of each image's top-1 class"
    )
    args = p.parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1 or args.max_pixels < 1:
        p.error("--top-k, --batch-size and --max-pixels must be at least 1")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    out = os.fdopen(args.out_fd, "w", buffering=1) if args.out_fd is not None else open(args.out, "w", buffering=1)  # noqa: SIM115 - closed in finally
    try:
        run(args, out)
    except JobError as e:
        with contextlib.suppress(OSError, ValueError):  # the client may be gone too
            _write(out, {"type": "error", "message": str(e)})
        return 2
    except BrokenPipeError:  # the client went away: nobody to report to
        return 0
    finally:
        with contextlib.suppress(OSError):
            out.close()
    return 0


def _write(out: TextIO, rec: Any) -> None:
    """One record. BrokenPipeError (the client is gone) ends the job in :func:`main`."""
    out.write(encode(rec))


# ---------------------------------------------------------------------------- run info


def read_run(run_dir: Path) -> dict[str, Any]:
    """Classes, input size and native size of a finished run, from its files (or of an export
    folder ``tltui export`` wrote: :func:`read_export`)."""
    if exports.is_export(run_dir):
        return read_export(run_dir)
    paths = RunPaths(run_dir)
    if not paths.model.is_file():
        raise JobError(f"{paths.model}: no model; only a completed run can predict")
    try:
        classes = json.loads(paths.classes.read_text())
    except (OSError, ValueError) as e:
        raise JobError(f"{paths.classes}: cannot read the class names ({e})") from None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise JobError(f"{paths.classes}: expected a JSON list of class names")
    info: dict[str, Any] = {}
    if paths.data_info.exists():
        try:
            info = json.loads(paths.data_info.read_text())
        except (OSError, ValueError) as e:
            raise JobError(f"{paths.data_info}: cannot read ({e})") from None
    image_size, source = info.get("image_size"), paths.data_info
    if image_size is None:
        source = paths.preset
        try:
            preset = tomllib.loads(paths.preset.read_text())
            image_size = preset.get("data", {}).get("image_size", [224, 224])
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise JobError(f"{paths.preset}: cannot read the image size ({e})") from None
    if not _is_size(image_size):
        raise JobError(f"{source}: image_size must be [height, width], got {image_size!r}")
    native = info.get("native_size")
    return {
        "classes": classes,
        "image_size": [int(x) for x in image_size],
        "native_size": [int(x) for x in native] if _is_size(native) else None,
    }


def read_export(folder: Path) -> dict[str, Any]:
    """An exported model as :func:`read_run` describes a run: it takes images at its input size (the
    run's native size), which its model upscales inside as the run's did; ``export``: its manifest."""
    try:
        m = exports.read_manifest(folder)
    except exports.ExportError as e:
        raise JobError(str(e)) from None
    return {"classes": m.classes, "image_size": m.image_size, "native_size": m.input_size, "export": m}


def _is_size(v: Any) -> TypeGuard[list[int]]:
    return isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)


def load_model(path: Path) -> Any:
    import keras

    import tltui.worker.hub  # noqa: F401  registers tltui's own layer (HubModule) for safe-mode loading

    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises ValueError/TypeError/OSError and more for bad files
        msg = str(e)
        if "safe_mode" in msg or "Lambda" in msg:
            raise JobError(
                f"{path}: refused to load: it contains code (a Lambda layer) that safe mode does not run; "
                "only use models built by tltui or rebuilt without Lambda layers"
            ) from None
        first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
        raise JobError(f"{path}: cannot load the model ({first})") from None


# ---------------------------------------------------------------------------- job


def run(args: argparse.Namespace, out: TextIO) -> None:
    folder: Path = args.folder
    if not folder.is_dir():
        raise JobError(f"{folder}: no such folder")
    info = read_run(args.run_dir)
    classes: list[str] = info["classes"]
    export: exports.Manifest | None = info.get("export")
    if export is not None and args.cam is not None:
        raise JobError(f"--cam: {export.label} is an exported model; Grad-CAM needs the run's Keras model")
    if export is not None and args.low_res is False and use_low_res(info, None):
        h, w = export.input_size
        raise JobError(f"--full-res: {export.label} takes {h}x{w} images only (the size its run's images had)")
    if args.low_res and info["native_size"] is None:
        raise JobError(f"{RunPaths(args.run_dir).data_info}: no native_size for this run's data; --low-res needs it")
    low_res = use_low_res(info, args.low_res)
    # Pillow's own bomb check (in Image.open) uses the same limit as ours
    Image.MAX_IMAGE_PIXELS = args.max_pixels
    entries = images.find_images(folder)
    labels = images.folder_labels(folder, classes)
    k = min(args.top_k, len(classes))
    total = len(entries)
    _write(out, PredictStarted(total, classes, labels, k, info["image_size"], low_res, info["native_size"]))
    if not entries:
        _write(out, Progress(0, 0))
        return

    import numpy as np

    model = load_model(RunPaths(args.run_dir).model) if export is None else None
    predict_batch = keras_predictor(model) if export is None else export_predictor(args.run_dir, export)
    size = input_size(info, low_res)
    cam_dir: Path | None = args.cam
    if cam_dir is not None:
        from tltui.worker import gradcam

        try:
            gradcam.split(model)
        except gradcam.NoFeatureMap as e:
            raise JobError(f"no Grad-CAM for this run: {e}") from None
        try:
            cam_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise JobError(f"{cam_dir}: cannot create the Grad-CAM folder ({e.strerror or e})") from None
    done = 0
    for batch, skipped in prefetch(_batches(entries, args.batch_size, size, args.max_pixels)):
        for entry, reason in skipped:
            _write(out, Skipped(str(entry.path), reason, entry.rel))
        done += len(skipped)
        if batch:
            x = np.stack([a for _, a in batch])
            probs = np.asarray(predict_batch(x), dtype="float64")
            if probs.ndim != 2 or probs.shape[1] != len(classes):
                raise JobError(f"model output has shape {tuple(probs.shape)} but the run has {len(classes)} classes")
            cams: list[str | None] = [None] * len(batch)
            if cam_dir is not None:
                cams = write_cams(model, x.astype("float32"), batch, probs, cam_dir)
            for (entry, _), p, cam in zip(batch, probs, cams, strict=True):
                row = prediction(entry, p, classes, k, labels)
                _write(out, row if cam is None else dataclasses.replace(row, cam=cam))
            done += len(batch)
        _write(out, Progress(done, total))


def keras_predictor(model: Any) -> Callable[[Any], Any]:
    """uint8 images -> the Keras model's probabilities (it takes float32 pixel values)."""
    return lambda x: model.predict_on_batch(x.astype("float32"))


def export_predictor(folder: Path, export: exports.Manifest) -> Callable[[Any], Any]:
    """uint8 images -> an exported model's probabilities, through its own runtime."""
    from tltui.worker import export_formats

    try:
        return export_formats.open_artifact(export.format, folder / export.artifact)
    except WorkerError as e:
        raise JobError(f"{export.label}: cannot load {folder / export.artifact} ({e})") from None


#: Overlays smaller than this (pixels, the longer side) are enlarged to it: a 64x64 model input is
#: too small to look at.
CAM_MIN_SIDE = 256


def write_cams(
    model: Any,
    x: Any,
    batch: list[tuple[ImageEntry, Any]],
    probs: Any,
    cam_dir: Path,
    names: Sequence[str] | None = None,
) -> list[str | None]:
    """A Grad-CAM overlay of each image's top-1 class, as fed to the model, in ``cam_dir`` (named
    ``names``, else :func:`cam_name`), at least :data:`CAM_MIN_SIDE` pixels on its longer side: its paths."""
    import numpy as np

    from tltui.worker import gradcam

    heat, _ = gradcam.grad_cam(model, x, np.argmax(probs, axis=1))
    out: list[str | None] = []
    for i, ((entry, arr), h) in enumerate(zip(batch, heat, strict=True)):
        path = cam_dir / (names[i] if names is not None else cam_name(entry))
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(gradcam.overlay(arr, h))
        scale = CAM_MIN_SIDE / max(image.size)
        if scale > 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        image.save(path)
        out.append(str(path))
    return out


def cam_name(entry: ImageEntry) -> str:
    """``cat/01.jpg`` -> ``cat/01.jpg.cam.png``: the image's path under the classified folder, so
    ``a/b.png`` and ``a__b.png`` never share an overlay (the app's cams are laid out the same way)."""
    return (entry.rel or entry.path.name) + ".cam.png"


def low_res_by_default(native_size: list[int] | None, image_size: list[int]) -> bool:
    """Whether training went through a smaller native size (CIFAR's 32 px, upscaled inside the
    model to 224): then predict shrinks images to it first by default, so a sharp photo looks
    like what training saw (the model upscales it as it upscaled the training images)."""
    if native_size is None or list(native_size) == list(image_size):
        return False
    return all(n <= s for n, s in zip(native_size, image_size, strict=True))


def use_low_res(info: dict[str, Any], requested: bool | None) -> bool:
    """``--low-res`` (True), ``--full-res`` (False), or neither (None): as training saw the data."""
    return low_res_by_default(info["native_size"], info["image_size"]) if requested is None else requested


def input_size(info: dict[str, Any], low_res: bool) -> list[int]:
    """The size images are decoded to. For --low-res that is the native size: the model's
    own Resizing layer upscales it, exactly as it upscaled the native-size training images."""
    return info["native_size"] if low_res else info["image_size"]


def prediction(entry: ImageEntry, probs: Any, classes: list[str], k: int, labels: list[str] | None) -> PredictionRow:
    """Top-k by probability, highest first (ties: lower class index first)."""
    import numpy as np

    order = np.argsort(-probs, kind="stable")
    top = [(classes[i], float(probs[i])) for i in order[:k]]
    true = images.true_label(entry, labels)
    rank = None
    if true is not None:
        rank = int(np.nonzero(order == classes.index(true))[0][0]) + 1
    return PredictionRow(str(entry.path), top, true, entry.rel, rank)


def _batches(
    entries: Sequence[ImageEntry],
    batch_size: int,
    size: list[int],
    max_pixels: int,
) -> Iterator[tuple[list[tuple[ImageEntry, Any]], list[tuple[ImageEntry, str]]]]:
    """Decode lazily: yields (up to batch_size decoded images, files skipped meanwhile)."""
    import numpy as np

    batch: list[tuple[ImageEntry, Any]] = []
    skipped: list[tuple[ImageEntry, str]] = []
    for entry in entries:
        try:
            im = images.prepare(entry.path, size, max_pixels=max_pixels)
            batch.append((entry, np.asarray(im, dtype=np.uint8)))
        except ImageSkip as e:
            skipped.append((entry, str(e)))
        if len(batch) >= batch_size:
            yield batch, skipped
            batch, skipped = [], []
    if batch or skipped:
        yield batch, skipped


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Run a generator in a thread, ``depth`` items ahead: the next batch decodes (Pillow
    releases the GIL) while the model predicts this one. Same items, same order; an
    exception in the generator is raised here."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            q.put(("error", e))

    t = threading.Thread(target=produce, name="predict-decode", daemon=True)
    t.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
