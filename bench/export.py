"""Export: size on disk, CPU latency per image and accuracy of each format against the Keras model.

A MobileNetV2 (alpha 0.35, ``weights = "none"``: ImageNet weights cannot be fetched here) is trained
briefly with ``tltui run`` on crops of twelve of scikit-image's photos, then ``tltui export``-ed to every
format and quantization. Per variant:

- size on disk of the artifact vs ``model.keras``;
- CPU latency per image (batch 1; and per image in batches of 32) through the artifact's own runtime
  (the runner ``tltui export`` verifies with), vs the Keras model called as a ``tf.function``
  (``training=False``); runtimes measured interleaved, round by round, the median of each;
- validation top-1 and top-5 (12 classes, 300 validation images) of the artifact vs the Keras model, as ``tltui export``
  measured and stored it, with their agreement.

``python -m bench.export [--tiny] [--rounds N]`` (``--tiny``: the test backbone on the demo's shapes,
two variants; seconds, no meaningful figures).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import PYTHON, Figure, Result, emit, median, run_env

#: one class per photo (the grey ones read as RGB): portraits, a cat, objects, space, textures
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "camera.png",
    "coins.png",
    "moon.png",
    "brick.png",
    "grass.png",
    "gravel.png",
)
VARIANTS: list[tuple[str, str | None]] = [
    ("savedmodel", None),
    ("litert", None),
    ("litert", "float16"),
    ("litert", "dynamic"),
    ("litert", "int8"),
    ("onnx", None),
    ("onnx", "dynamic"),
    ("onnx", "int8"),
]
TINY_VARIANTS: list[tuple[str, str | None]] = [("litert", "int8"), ("onnx", None)]


def photo_folder(root: Path, per_class: int, size: int, seed: int = 0, photos: Sequence[str] = PHOTOS) -> Path:
    """Random square crops of scikit-image's colour ``photos`` (file names in its data folder), one class
    per photo, ``per_class`` of ``size`` x ``size`` each; the same folder for the same ``seed``."""
    import numpy as np
    from PIL import Image

    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise RuntimeError("scikit-image (a test dependency, for its photos) is not installed")
    source = Path(spec.origin).parent / "data"
    rng = np.random.default_rng(seed)
    for name in photos:
        image = Image.open(source / name).convert("RGB")
        w, h = image.size
        folder = root / name.split(".")[0]
        folder.mkdir(parents=True)
        for i in range(per_class):
            side = int(rng.integers(min(w, h) // 3, min(w, h)))
            x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
            image.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC).save(folder / f"{i:03d}.png")
    return root


def preset_text(data: Path, tiny: bool) -> str:
    if tiny:
        model = 'backbone = "tiny_cnn"\nweights = "none"\nbn_momentum = 0.5'
        size, epochs, lr = 32, 3, 0.03
    else:
        model = 'backbone = "mobilenet_v2"\nweights = "none"\nalpha = 0.35\nbn_momentum = 0.9'
        size, epochs, lr = 128, 20, 0.003
    return f"""name = "export-bench"
[data]
source = "folder:{data}"
image_size = [{size}, {size}]
batch_size = 16
validation_fraction = 0.25
augment = true
[model]
{model}
[freeze]
batchnorm = "trainable"
[train]
epochs = {epochs}
optimizer = "adam"
learning_rate = {lr}
checkpoint_every = 0
restore_best = true
"""


def cli(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "tltui", "--workspace", str(home), *args], env=env, capture_output=True, text=True
    )


def per_image_seconds(fn: Callable[[Any], Any], x: Any, rounds: int, calls: int) -> list[float]:
    """Seconds per image of ``fn(x)``, one figure per round of ``calls`` calls."""
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(x)
        out.append((time.perf_counter() - t0) / (calls * len(x)))
    return out


def latencies(
    run_dir: Path, exports: dict[str, Path], images: Any, rounds: int, tiny: bool
) -> dict[str, dict[str, float]]:
    """Median seconds per image at batch 1 and in batches of 32 for the Keras model and each export,
    measured round by round in turn (interleaved), after a warm-up."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tltui.core.exports import read_manifest
    from tltui.worker.export_formats import open_artifact

    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    call = tf.function(lambda x: model(tf.cast(x, tf.float32), training=False))
    runners: dict[str, Callable[[Any], Any]] = {"keras": lambda x: call(tf.constant(x)).numpy()}
    for name, folder in exports.items():
        m = read_manifest(folder)
        runners[name] = open_artifact(m.format, folder / m.artifact)
    one, batch = np.ascontiguousarray(images[:1]), np.ascontiguousarray(np.resize(images, (32, *images.shape[1:])))
    calls = (5, 1) if tiny else (40, 4)
    times: dict[str, dict[str, list[float]]] = {n: {"1": [], "32": []} for n in runners}
    for fn in runners.values():  # warm-up: tracing, allocation, delegate set-up
        fn(one)
        fn(batch)
    for _ in range(rounds):
        for name, fn in runners.items():
            times[name]["1"] += per_image_seconds(fn, one, 1, calls[0])
            times[name]["32"] += per_image_seconds(fn, batch, 1, calls[1])
    return {n: {k: median(v) for k, v in t.items()} for n, t in times.items()}


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def run(tiny: bool = False, rounds: int | None = None) -> list[Result | Figure]:
    import numpy as np
    from PIL import Image

    rounds = rounds or (2 if tiny else 7)
    variants = TINY_VARIANTS if tiny else VARIANTS
    out: list[Result | Figure] = []
    with tempfile.TemporaryDirectory(prefix="tltui-bench-export-") as tmp:
        root = Path(tmp)
        home = root / "ws"
        env = run_env(home)
        if tiny:
            from tltui.core import demo

            data = demo.generate(root / "shapes", per_class=12, size=16, shapes=("circle", "square", "cross"))
            env["TLTUI_TEST_BACKBONES"] = "1"
        else:
            data = photo_folder(root / "photos", per_class=100, size=128)
        preset = root / "export-bench.toml"
        preset.write_text(preset_text(data, tiny))
        t0 = time.perf_counter()
        proc = cli(home, env, "run", str(preset), "--plain")
        if proc.returncode != 0:
            raise RuntimeError(f"tltui run failed ({proc.returncode}): {proc.stderr[-2000:]}{proc.stdout[-2000:]}")
        trained = time.perf_counter() - t0
        run_dir = sorted((home / "runs").iterdir())[-1]
        results: dict[str, dict[str, Any]] = {}
        folders: dict[str, Path] = {}
        export_seconds: dict[str, float] = {}
        for fmt, quantize in variants:
            name = f"{fmt}-{quantize}" if quantize else fmt
            t0 = time.perf_counter()
            proc = cli(
                home,
                env,
                "export",
                run_dir.name,
                "--format",
                fmt,
                *(["--quantize", quantize] if quantize else []),
                "--json",
            )
            export_seconds[name] = time.perf_counter() - t0
            if proc.returncode not in (0, 1):
                raise RuntimeError(f"tltui export {name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
            results[name] = json.loads(proc.stdout)
            folders[name] = Path(results[name]["out"])
        info = json.loads((run_dir / "data.json").read_text())
        val = sorted(p for p in Path(data).rglob("*.png"))[:64]
        h, w = info["native_size"]
        images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((w, h), Image.BICUBIC)) for p in val])
        lat = latencies(run_dir, folders, images, rounds, tiny)
        kmb = size_of(run_dir / "model.keras") / 1e6
    note = (
        "tiny mode: not a measurement" if tiny else f"MobileNetV2 a0.35 128 px, weights none, trained {trained:.0f} s"
    )
    for name, doc in results.items():
        check = doc["checks"][0]
        out.append(
            Result(
                "export",
                f"{name}: size on disk",
                name,
                doc["size_bytes"] / 1e6,
                "model.keras",
                kmb,
                "MB",
                "info",
                note=note,
            )
        )
        out.append(
            Result(
                "export",
                f"{name}: CPU latency per image, batch 1 (batch 32: {1e3 * lat[name]['32']:.2f} vs {1e3 * lat['keras']['32']:.2f} ms)",
                name,
                1e3 * lat[name]["1"],
                "Keras tf.function",
                1e3 * lat["keras"]["1"],
                "ms",
                "info",
                note=f"export took {export_seconds[name]:.1f} s",
            )
        )
        top5 = (
            f", top-5 {100 * check['export_top5']:.2f}% vs {100 * check['keras_top5']:.2f}%"
            if check.get("keras_top5") is not None
            else ""
        )
        out.append(
            Figure(
                "export",
                f"{name}: validation top-1 {100 * check['export_top1']:.2f}% vs Keras {100 * check['keras_top1']:.2f}%"
                f"{top5}, agreement {100 * check['agreement']:.2f}%, max prob diff {check['max_abs_diff']:.2g} "
                f"({check['images']} images); top-1 drop",
                check["drop"],
                "points",
                1.0,
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.export")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--rounds", type=int)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    emit(run(args.tiny, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
