"""Generated image folders and tiny runs for the inference tests (no TensorFlow here).

The colour model (built by :data:`BUILD_MODEL`) maps an image's mean colour to
six classes: ``red``, ``green``, ``blue`` follow the dominant channel (x20), and
fixed biases rank the rest ``d`` > ``f`` > ``e`` > ``green`` > ``red`` > ``blue``.
So a red image's top-5 is red, d, f, e, green: ordered by probability, not by
class index; a black image predicts ``d`` with ``red`` at rank 5.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

from PIL import Image

CLASSES = ["red", "green", "blue", "d", "e", "f"]
RED, GREEN, BLUE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0)
SIZE = (40, 30)

#: Expected outcome of the labelled corpus: relative path -> true label, top-1.
EXPECTED = {
    "blue/b_rgba.png": ("blue", "blue"),
    "blue/c_upper.JPG": ("blue", "blue"),
    "blue/d_red.bmp": ("blue", "red"),
    "blue/e_webp.webp": ("blue", "blue"),
    "blue/f_tiff.tif": ("blue", "blue"),
    "green/a_gray16.png": ("green", "green"),
    "green/b_palette.png": ("green", "green"),
    "green/c_anim.gif": ("green", "green"),
    "loose.png": (None, "red"),
    "red/a_red.png": ("red", "red"),
    "red/b_black.jpg": ("red", "d"),
    "red/c_cmyk.jpeg": ("red", "red"),
    "red/sub/deep.png": ("red", "red"),
}

#: Files that must be skipped: relative path -> words the reason contains.
SKIPPED = {
    "blue/z_bomb.png": "too large",
    "green/z_empty.png": "empty file",
    "red/z_broken.png": "broken symlink",
    "red/z_fake.jpg": "not an image",
    "red/z_truncated.jpg": "truncated",
}


def solid(color: tuple[int, int, int], size: tuple[int, int] = SIZE) -> Image.Image:
    return Image.new("RGB", size, color)


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (no real pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def make_corpus(root: Path) -> Path:
    """The labelled folder of :data:`EXPECTED` and :data:`SKIPPED`, plus an ignored ``notes.txt``."""
    for d in ("red/sub", "green", "blue"):
        (root / d).mkdir(parents=True, exist_ok=True)
    solid(RED).save(root / "red/a_red.png")
    solid(BLACK).save(root / "red/b_black.jpg", quality=95)
    Image.new("CMYK", SIZE, (0, 255, 255, 0)).save(root / "red/c_cmyk.jpeg", quality=95)
    solid(RED).save(root / "red/sub/deep.png")
    Image.new("I;16", SIZE, 65535).save(root / "green/a_gray16.png")
    solid(GREEN).convert("P").save(root / "green/b_palette.png")
    frames = [solid(GREEN).convert("P"), solid(RED).convert("P")]
    frames[0].save(root / "green/c_anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.new("RGBA", SIZE, (0, 0, 255, 128)).save(root / "blue/b_rgba.png")
    solid(BLUE).save(root / "blue/c_upper.JPG", format="JPEG", quality=95)
    solid(RED).save(root / "blue/d_red.bmp")
    solid(BLUE).save(root / "blue/e_webp.webp", quality=95)
    solid(BLUE).save(root / "blue/f_tiff.tif")
    solid(RED).save(root / "loose.png")
    # the bad ones
    (root / "blue/z_bomb.png").write_bytes(bomb_png(50_000, 50_000))
    (root / "green/z_empty.png").write_bytes(b"")
    (root / "red/z_broken.png").symlink_to(root / "missing.png")
    (root / "red/z_fake.jpg").write_text("this is not a picture\n")
    noisy = Image.effect_noise((256, 256), 64).convert("RGB")
    noisy.save(root / "red/z_truncated.jpg", quality=90)
    blob = (root / "red/z_truncated.jpg").read_bytes()
    (root / "red/z_truncated.jpg").write_bytes(blob[: len(blob) // 2])
    (root / "notes.txt").write_text("ignored\n")
    return root


BUILD_MODEL = r"""
import json, sys
import numpy as np
import keras

out = sys.argv[1]
n = 6
inp = keras.Input(shape=(None, None, 3))
x = keras.layers.Resizing(8, 8)(inp)
x = keras.layers.Rescaling(1.0 / 255)(x)
x = keras.layers.GlobalAveragePooling2D()(x)
dense = keras.layers.Dense(n)
x = dense(x)
outp = keras.layers.Activation("softmax", dtype="float32")(x)
m = keras.Model(inp, outp)
w = np.zeros((3, n), "float32")
w[0, 0] = w[1, 1] = w[2, 2] = 20.0
b = np.array([0.2, 0.5, 0.0, 3.0, 1.0, 2.0], "float32")
dense.set_weights([w, b])
m.save(out + "/model.keras")

inp = keras.Input(shape=(None, None, 3))
x = keras.layers.Lambda(lambda t: t * 1.0)(inp)
x = keras.layers.GlobalAveragePooling2D()(x)
outp = keras.layers.Dense(n, activation="softmax")(x)
keras.Model(inp, outp).save(out + "/lambda.keras")
"""


def build_models(out: Path) -> Path:
    """Build ``model.keras`` (the colour model) and ``lambda.keras`` in a child process,
    so the test process never imports TensorFlow."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", BUILD_MODEL, str(out)], check=True, capture_output=True)
    return out


PRESET = """\
[data]
source = "folder:/nowhere"
image_size = [{h}, {w}]

[model]
backbone = "test_tiny"
"""


def make_run(
    ws, model_file: Path | None, *, status: str = "completed", native_size=(4, 4), image_size=(16, 16), classes=CLASSES
) -> str:
    """A registry row plus a run folder holding the files a completed run has."""
    rec = ws.create_runs([("colour", PRESET.format(h=image_size[0], w=image_size[1]), {})], preset_name="test")[0]
    paths = ws.run_paths(rec.id)
    if model_file is not None:
        paths.model.write_bytes(model_file.read_bytes())
    paths.classes.write_text(json.dumps(classes))
    info = {"source": "folder:/nowhere", "num_classes": len(classes), "image_size": list(image_size)}
    if native_size is not None:
        info["native_size"] = list(native_size)
    paths.data_info.write_text(json.dumps(info))
    ws.update(rec.id, status=status)
    return rec.id


#: Stands in for ``python -m tltui.worker``. Real discovery, labels, resolution choice (the run's
#: ``data.json``) and Grad-CAM file names, fake model: every image gets the same top-3 (a ``--cam``
#: overlay is a copy of the image); FAKE_MODE picks a failure to act out.
FAKE_WORKER = r"""
import json, os, sys, time
from pathlib import Path
from tltui.core import images
from tltui.core.predict_records import PredictStarted, PredictionRow, Progress, Skipped, encode
from tltui.worker.predict import cam_name, use_low_res

argv = sys.argv[1:]
assert argv[0] == "predict", argv
run_dir, folder = argv[1], argv[2]
fd = int(argv[argv.index("--out-fd") + 1])
k = int(argv[argv.index("--top-k") + 1])
cam_dir = Path(argv[argv.index("--cam") + 1]) if "--cam" in argv else None
out = os.fdopen(fd, "w", buffering=1)
mode = os.environ.get("FAKE_MODE", "ok")
print("some TensorFlow noise on stdout", flush=True)
if mode == "error":
    out.write(encode({"type": "error", "message": "model.keras: refused to load"}))
    sys.exit(2)
if mode == "crash":
    print("Traceback: boom at the end", file=sys.stderr, flush=True)
    sys.exit(3)
classes_file, data_file = Path(run_dir, "classes.json"), Path(run_dir, "data.json")
classes = json.loads(classes_file.read_text()) if classes_file.exists() else ["red", "green", "blue", "d", "e", "f"]
info = json.loads(data_file.read_text()) if data_file.exists() else {}
info = {"image_size": info.get("image_size", [16, 16]), "native_size": info.get("native_size")}
low_res = use_low_res(info, True if "--low-res" in argv else False if "--full-res" in argv else None)
k = min(k, len(classes))
entries = images.find_images(folder)
labels = images.folder_labels(folder, classes)
out.write(encode(PredictStarted(len(entries), classes, labels, k, info["image_size"], low_res, info["native_size"])))
top = [("red", 0.7), ("d", 0.2), ("blue", 0.1)] if "d" in classes else [("red", 0.7), ("blue", 0.2), ("green", 0.1)]
top = top[:k]
if os.environ.get("FAKE_GREEN_RUN") and run_dir.endswith(os.environ["FAKE_GREEN_RUN"]):
    top = [("green", 0.6), ("red", 0.3), ("blue", 0.1)][:k]  # another model: says "green" for everything
for i, e in enumerate(entries, 1):
    if mode == "hang" and i == 2:
        time.sleep(60)
    try:
        im = images.open_rgb(e.path)
    except images.ImageSkip as exc:
        out.write(encode(Skipped(str(e.path), str(exc), e.rel)))
    else:
        true = images.true_label(e, labels)
        rank = None if true is None else ([c for c, _ in top].index(true) + 1 if true in dict(top) else min(6, len(classes)))
        cam = None
        if cam_dir is not None:
            cam = str(cam_dir / cam_name(e))
            Path(cam).parent.mkdir(parents=True, exist_ok=True)
            im.save(cam, format="PNG")
        out.write(encode(PredictionRow(str(e.path), top, true, e.rel, rank, cam)))
    out.write(encode(Progress(i, len(entries))))
"""


def fake_worker_cmd(tmp_path: Path) -> list[str]:
    """argv that replaces ``python -m tltui.worker`` with :data:`FAKE_WORKER`."""
    script = tmp_path / "fake_predict_worker.py"
    script.write_text(FAKE_WORKER)
    return [sys.executable, str(script)]
