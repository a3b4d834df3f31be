"""The demo: a synthetic, deterministic image-classification dataset drawn with PIL.

Six classes of coloured shapes (circle, square, triangle, star, cross, ring) with
random colours, positions, sizes, backgrounds and noise; plus a few larger
"photos" for inference. Nothing is downloaded. No TensorFlow here.
"""

from __future__ import annotations

import math
import random
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from tltui.core import presets
from tltui.core.errors import CommandError
from tltui.core.workspace import Workspace, atomic_write

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
DEFAULT_PER_CLASS = 300
DEFAULT_SIZE = 48
PHOTOS_PER_CLASS = 2
PHOTO_SIZE = 160
DEMO_PRESET = "demo.toml"
#: The shipped presets that train on the demo data (each gets its workspace copy).
DEMO_PRESETS = (DEMO_PRESET, "demo-two-phase.toml", "demo-sweep.toml")
DATA_DIR = Path("demo-data") / "shapes"  # under the workspace
PHOTOS_DIR = Path("demo-data") / "photos"
#: Written last; its presence means the dataset is complete.
MARKER = ".complete"


def _colours(rng: random.Random) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A background and a shape colour, one dark and one light: any hue, always a visible edge."""
    dark = tuple(rng.randrange(0, 110) for _ in range(3))
    light = tuple(rng.randrange(150, 256) for _ in range(3))
    return (dark, light) if rng.random() < 0.5 else (light, dark)  # type: ignore[return-value]


def _star(cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else r * 0.45
        a = rot + i * math.pi / 5
        pts.append((cx + rad * math.sin(a), cy - rad * math.cos(a)))
    return pts


def draw_shape(shape: str, size: int, rng: random.Random) -> Image.Image:
    """One image of ``shape``: random background, colour, position, size, rotation, noise."""
    bg, fg = _colours(rng)
    scale = 4  # draw large, then downsample: smooth edges
    s = size * scale
    img = Image.new("RGB", (s, s), bg)
    d = ImageDraw.Draw(img)
    r = rng.uniform(0.22, 0.42) * s
    cx = rng.uniform(r, s - r)
    cy = rng.uniform(r, s - r)
    rot = rng.uniform(0, 2 * math.pi)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif shape == "ring":
        w = max(2, int(r * rng.uniform(0.25, 0.4)))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=w)
    elif shape == "square":
        pts = [(cx + r * math.cos(rot + k * math.pi / 2), cy + r * math.sin(rot + k * math.pi / 2)) for k in range(4)]
        d.polygon(pts, fill=fg)
    elif shape == "triangle":
        pts = [
            (cx + r * math.cos(rot + k * 2 * math.pi / 3), cy + r * math.sin(rot + k * 2 * math.pi / 3))
            for k in range(3)
        ]
        d.polygon(pts, fill=fg)
    elif shape == "star":
        d.polygon(_star(cx, cy, r, rot), fill=fg)
    elif shape == "cross":
        t = r * rng.uniform(0.25, 0.4)
        for a in (rot, rot + math.pi / 2):
            dx, dy = math.cos(a), math.sin(a)
            px, py = -dy * t, dx * t
            d.polygon(
                [
                    (cx - dx * r + px, cy - dy * r + py),
                    (cx + dx * r + px, cy + dy * r + py),
                    (cx + dx * r - px, cy + dy * r - py),
                    (cx - dx * r - px, cy - dy * r - py),
                ],
                fill=fg,
            )
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    noise = Image.frombytes("L", (size, size), rng.randbytes(size * size)).convert("RGB")
    return Image.blend(img, noise, rng.uniform(0.05, 0.15))


def generate(
    root: str | Path,
    *,
    per_class: int = DEFAULT_PER_CLASS,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    shapes: tuple[str, ...] = SHAPES,
) -> Path:
    """Write ``root/<shape>/<shape>_NNNN.png``; same arguments, same bytes. Atomic as a whole:
    built in a temporary sibling folder, then renamed into place (replacing earlier demo data only:
    a ``root`` that holds anything else is refused, :class:`CommandError`)."""
    root = Path(root)
    check_replaceable(root)
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    except OSError as e:
        raise CommandError(f"{root}: cannot write here ({e.strerror or e})") from e
    try:
        for k, shape in enumerate(shapes):
            (tmp / shape).mkdir()
            rng = random.Random(f"{seed}:{k}")
            for i in range(per_class):
                draw_shape(shape, size, rng).save(tmp / shape / f"{shape}_{i:04d}.png", optimize=False)
        (tmp / MARKER).write_text(f"per_class={per_class} size={size} seed={seed}\n")
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def check_replaceable(root: Path) -> None:
    """:class:`CommandError` unless ``root`` is missing, empty or earlier demo data (what :func:`generate`
    replaces): a folder of the user's is never deleted."""
    if root.exists() and not is_complete(root) and (not root.is_dir() or any(root.iterdir())):
        raise CommandError(f"{root}: exists and is not demo data; it would be replaced: pick a new folder")


def generate_photos(
    root: str | Path, *, per_class: int = PHOTOS_PER_CLASS, size: int = PHOTO_SIZE, seed: int = 1
) -> Path:
    """A flat folder of larger shape images (``circle_1.png``...) to try inference on; a folder that holds
    other files is refused (:class:`CommandError`), one of earlier demo photos is written over."""
    root = Path(root)
    ours = {f"{shape}_{i + 1}.png" for shape in SHAPES for i in range(per_class)}
    if root.exists() and (not root.is_dir() or any(p.name not in ours for p in root.iterdir())):
        raise CommandError(f"{root}: exists and holds other files than demo photos: pick a new folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CommandError(f"{root}: cannot write here ({e.strerror or e})") from e
    for k, shape in enumerate(SHAPES):
        rng = random.Random(f"photos:{seed}:{k}")
        for i in range(per_class):
            draw_shape(shape, size, rng).save(root / f"{shape}_{i + 1}.png")
    return root


def is_complete(root: str | Path) -> bool:
    return (Path(root) / MARKER).is_file()


def workspace_preset(ws: Workspace, name: str = DEMO_PRESET) -> Path:
    """``WORKSPACE/presets/demo.toml`` (or another of :data:`DEMO_PRESETS`): the shipped demo preset
    with ``data.source`` pointing at the workspace's demo data. Written once; an existing copy
    (perhaps edited) is left alone."""
    import tomlkit

    path = ws.presets_dir / name
    if not path.exists():
        doc = tomlkit.parse((presets.shipped_presets_dir() / name).read_text(encoding="utf-8"))
        rel = Path("..") / DATA_DIR  # relative to the preset file: the workspace can move
        doc["data"]["source"] = f"folder:{rel.as_posix()}"  # type: ignore[index]
        atomic_write(path, tomlkit.dumps(doc))
    return path


def ensure_demo(ws: Workspace, name: str = DEMO_PRESET) -> Path:
    """The workspace's demo preset (``name``: one of :data:`DEMO_PRESETS`), with its data generated
    if missing, and the other demo presets' copies; returns the preset's path."""
    data = ws.root / DATA_DIR
    if not is_complete(data):
        print(f"generating the demo dataset in {data} ...", file=sys.stderr)
        generate(data)
        generate_photos(ws.root / PHOTOS_DIR)
    for other in DEMO_PRESETS:
        workspace_preset(ws, other)
    return workspace_preset(ws, name)


def find_preset(ref: str, ws: Workspace) -> Path:
    """The preset ``ref`` names (:func:`tltui.core.presets.find_preset`), for a command that trains it or
    reads its data: a demo preset named by its name (``tltui run demo``) is the workspace's copy, with
    the demo data generated first when it is missing (:func:`ensure_demo`)."""
    name = f"{ref}.toml"
    if name in DEMO_PRESETS and not Path(ref).expanduser().is_file():  # a name wins over a folder here
        return ensure_demo(ws, name)
    return presets.find_preset(ref, ws)
