"""Image folders for inference: discovery, safe decoding to RGB, labels and scores.

Core module: Pillow and the stdlib only (no TensorFlow, no numpy), so the TUI
can use it too. The worker decodes with :func:`prepare`; everything a user can
throw at it (empty, truncated or fake files, broken symlinks, unreadable files,
decompression bombs) becomes :class:`ImageSkip` with a short reason instead of
an exception that stops the job.
"""

from __future__ import annotations

import heapq
import os
import re
import stat
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from struct import error as struct_error  # Pillow raises it on some corrupt headers
from typing import Any

from PIL import (  # the plugins of PIL_FORMATS, registered explicitly (Image.open's lazy init may not)
    BmpImagePlugin,  # noqa: F401
    GifImagePlugin,  # noqa: F401
    Image,
    ImageOps,
    JpegImagePlugin,  # noqa: F401
    PngImagePlugin,  # noqa: F401
    TiffImagePlugin,  # noqa: F401
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401
)

#: File name endings (lower case) that are treated as images.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tiff", ".tif"})

#: Decoders Pillow may use. Anything else (PSD, EPS, ...) is refused even if it is
#: named ``.jpg``: fewer decoders, less attack surface. (Camera JPEGs that carry a
#: preview picture open through the JPEG decoder as format "MPO".)
PIL_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")

#: Larger images are skipped as possible decompression bombs (Pillow's own default,
#: about 9,500 x 9,500: every phone photo fits; a 300 MB RGB buffer is the worst case).
DEFAULT_MAX_PIXELS = 89_478_485


class ImageSkip(Exception):
    """An image that cannot be used; ``str(e)`` is the one-line reason."""


@dataclass(frozen=True)
class ImageEntry:
    """One candidate file of a folder. ``rel`` is its POSIX path relative to the folder."""

    path: Path
    rel: str

    @property
    def top_folder(self) -> str | None:
        """The immediate subfolder of the root that holds it (``None`` at the top level)."""
        head, sep, _ = self.rel.partition("/")
        return head if sep else None


# ---------------------------------------------------------------------------- discovery


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def walk_files(folder: str | os.PathLike[str]) -> list[tuple[tuple[str, ...], Path]]:
    """Every entry under ``folder`` that is not a directory, as ``(relative path parts, path)``,
    sorted by relative path: the one traversal of training (``scan_folder``) and ``predict``.

    Entries with any path part starting with ``.`` are left out (``.thumbnails/a.jpg`` too).
    Directory symlinks are followed, and each real directory is read once, so symlink cycles end.
    Which path a directory is read through does not depend on the order the file system lists
    entries: the one with the fewest symlinks, then the shallowest, then the first in sorted order.
    So a real folder is always read as itself (``blue/redlink -> ../red`` never turns ``red``'s
    images into ``blue``'s), and a symlinked class folder as itself rather than through a link
    deeper in another class. Broken symlinks, unreadable files and other non-directories are
    listed too: the decoder reports them with their reason.
    """
    root = Path(folder)
    found: list[tuple[tuple[str, ...], Path]] = []
    seen: set[tuple[int, int]] = set()
    # (symlinks on the way, depth, relative parts): each key is larger than its parent's, so every
    # directory is first reached through its best path
    heap: list[tuple[int, int, tuple[str, ...], str]] = [(0, 0, (), str(root))]
    while heap:
        hops, depth, parts, d = heapq.heappop(heap)
        try:
            st = os.stat(d)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except OSError:
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            rel_parts = (*parts, e.name)
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                link = 1 if e.is_symlink() else 0
                heapq.heappush(heap, (hops + link, depth + 1, rel_parts, os.path.join(d, e.name)))
            else:
                found.append((rel_parts, root.joinpath(*rel_parts)))
    found.sort(key=lambda x: x[0])
    return found


def find_images(folder: str | os.PathLike[str]) -> list[ImageEntry]:
    """Every file with an image extension under ``folder``, sorted by relative path
    (:func:`walk_files`: hidden parts left out, directory symlinks followed once)."""
    return [ImageEntry(path, "/".join(parts)) for parts, path in walk_files(folder) if is_image_name(parts[-1])]


# ---------------------------------------------------------------------------- decoding


def open_rgb(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode the first frame of an image as 8-bit RGB, upright (EXIF orientation applied).

    Grayscale, palette, RGBA (alpha dropped, as TensorFlow's ``decode_image(channels=3)``
    does for training folders), CMYK and 16-bit images are converted. ``draft_size``
    (width, height) lets JPEG decode at a reduced scale no smaller than that size.
    Raises :class:`ImageSkip` with the reason for anything unusable.
    """
    p = Path(path)
    if p.is_symlink() and not p.exists():
        raise ImageSkip("broken symlink")
    try:
        st = p.stat()
    except OSError as e:
        raise ImageSkip(f"cannot read: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        raise ImageSkip("not a regular file")
    if st.st_size == 0:
        raise ImageSkip("empty file")
    try:
        f = open(p, "rb")  # noqa: SIM115 - the `with` below closes it; opening is where a read error is told apart
    except OSError as e:
        raise ImageSkip(f"cannot read: {e.strerror or e}") from None
    with f, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im: Image.Image = Image.open(f, formats=PIL_FORMATS)
            w, h = im.size
            if w * h > max_pixels:
                raise ImageSkip(f"too large to decode safely ({w}x{h} pixels, limit {max_pixels:,})")
            if draft_size is not None and im.format in ("JPEG", "MPO"):
                im.draft("RGB", draft_size)
            im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_rgb(im)
        except ImageSkip:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            m = re.search(r"\((\d+) pixels\)", str(e))
            claimed = f"{int(m.group(1)):,} pixels, " if m else ""
            raise ImageSkip(f"too large to decode safely ({claimed}limit {max_pixels:,})") from None
        except UnidentifiedImageError:
            raise ImageSkip("not an image (or not png/jpeg/bmp/gif/webp/tiff)") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct_error) as e:
            msg = str(e) or type(e).__name__
            if "truncated" in msg or isinstance(e, EOFError):
                raise ImageSkip(f"truncated or corrupt image ({msg})") from None
            raise ImageSkip(f"corrupt image ({msg})") from None
        except MemoryError:
            raise ImageSkip("out of memory while decoding") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; 16-bit and float samples are scaled, not clipped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        im = im.convert("I").point(lambda v: v * (1 / 256))
    elif im.mode == "I":
        hi = float(im.getextrema()[1])  # type: ignore[arg-type]  # one band: (min, max)
        if hi > 255:  # 16-bit samples stored in a 32-bit mode (some PNG/TIFF decoders)
            im = im.point(lambda v: v * (255 / hi if hi > 65535 else 1 / 256))
    elif im.mode == "F":
        lo, hi = (float(v) for v in im.getextrema())  # type: ignore[arg-type]  # one band: (min, max)
        if hi <= 1.0:
            im = im.point(lambda v: v * 255)
    if im.mode in ("I", "F"):
        im = im.convert("L")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im


def prepare(
    path: str | os.PathLike[str],
    image_size: Sequence[int],
    *,
    native_size: Sequence[int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """An image ready for a run's model: RGB, resized to ``image_size`` ([height, width]).

    With ``native_size`` (the low-res trick) the image is first shrunk to the
    training data's native resolution and then upscaled, so a photo looks like,
    say, a CIFAR image: what the model sees, for display. (The worker feeds the
    native-size image and lets the model's Resizing layer upscale it, as in
    training.) Raises :class:`ImageSkip`.
    """
    h, w = int(image_size[0]), int(image_size[1])
    first = (int(native_size[1]), int(native_size[0])) if native_size else (w, h)
    im = open_rgb(path, max_pixels=max_pixels, draft_size=(2 * first[0], 2 * first[1]))
    try:
        if native_size:
            im = im.resize(first, Image.Resampling.BILINEAR, reducing_gap=None)
        if im.size != (w, h):
            im = im.resize((w, h), Image.Resampling.BILINEAR)
    except (OSError, ValueError) as e:  # lazily decoded tiles can still fail here
        raise ImageSkip(f"corrupt image ({e})") from None
    return im


def probe_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(height, width) of an image as :func:`open_rgb` will return it (EXIF orientation applied),
    read from its header without decoding the pixels; ``None`` when the header is unusable
    (:func:`open_rgb` then says why)."""
    try:
        with open(path, "rb") as f, Image.open(f, formats=PIL_FORMATS) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(0x0112)
            except Exception:  # noqa: BLE001 - a broken EXIF block: exif_transpose ignores it too
                orientation = None
    except Exception:  # noqa: BLE001 - anything unreadable is reported when it is decoded
        return None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


# ---------------------------------------------------------------------------- labels


def _subfolders(folder: str | os.PathLike[str]) -> list[str] | None:
    """The sorted names of ``folder``'s non-hidden immediate subfolders (``None``: unreadable)."""
    try:
        return sorted(
            e.name for e in os.scandir(folder) if not e.name.startswith(".") and e.is_dir(follow_symlinks=True)
        )
    except OSError:
        return None


def folder_labels(folder: str | os.PathLike[str], classes: Sequence[str]) -> list[str] | None:
    """The class names used as immediate subfolders of ``folder``, or ``None``.

    A folder is *labelled* when it has at least one (non-hidden) subfolder and
    every subfolder is named after one of the run's classes; each image's true
    label is then the subfolder that holds it.
    """
    subs = _subfolders(folder)
    names = set(classes)
    if not subs or any(s not in names for s in subs):
        return None
    return subs


#: Subfolders :func:`label_mismatch` names (then "and N more").
MISMATCH_SHOWN = 5


def label_mismatch(folder: str | os.PathLike[str], classes: Sequence[str]) -> str | None:
    """Why a folder that is nearly labelled is not (one line), else ``None``: some of its subfolders
    are classes of the run and others are not (``Red`` for ``red``, ``unknown``), which leaves the
    whole folder unscored. ``None`` when it is labelled, or when no subfolder is a class."""
    subs = _subfolders(folder)
    names = set(classes)
    if not subs or not any(s in names for s in subs):
        return None
    odd = [s for s in subs if s not in names]
    if not odd:
        return None
    by_case = {c.casefold(): c for c in classes}
    shown = ", ".join(odd[:MISMATCH_SHOWN]) + (
        f" and {len(odd) - MISMATCH_SHOWN} more" if len(odd) > MISMATCH_SHOWN else ""
    )
    hints = [f"{s}: did you mean {by_case[s.casefold()]}?" for s in odd if s.casefold() in by_case][:MISMATCH_SHOWN]
    verb = "is not a class" if len(odd) == 1 else "are not classes"
    return (
        f"subfolder(s) {shown} {verb} of the run" + (f" ({'; '.join(hints)})" if hints else "") + ": "
        "no accuracy or confusion matrix until every subfolder is named after a class"
    )


def true_label(entry: ImageEntry, labels: Iterable[str] | None) -> str | None:
    if not labels:
        return None
    top = entry.top_folder
    return top if top is not None and top in set(labels) else None


# ---------------------------------------------------------------------------- scores


@dataclass
class Score:
    """Accuracy, top-5 accuracy and a confusion matrix, updated one prediction at a time.

    Only predictions with a true label count. ``rank`` is the 1-based position of
    the true class when all classes are sorted by probability (1 = top-1 hit).
    """

    classes: Sequence[str]
    total: int = 0
    top1: int = 0
    top5: int = 0
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)
    misclassified: list[dict[str, Any]] = field(default_factory=list)

    def add(self, path: str, true: str, predicted: str, probability: float, rank: int | None) -> None:
        self.total += 1
        if predicted == true:
            self.top1 += 1
        else:
            self.misclassified.append(
                {"path": path, "true_label": true, "predicted": predicted, "probability": probability}
            )
        if rank is not None and rank <= 5:
            self.top5 += 1
        self.pairs[(true, predicted)] = self.pairs.get((true, predicted), 0) + 1

    @property
    def accuracy(self) -> float | None:
        return self.top1 / self.total if self.total else None

    @property
    def top5_accuracy(self) -> float | None:
        return self.top5 / self.total if self.total else None

    def confusion(self) -> dict[str, Any]:
        """Rows are true labels, columns predictions, over the classes that occur (in class order)."""
        used = {c for pair in self.pairs for c in pair}
        labels = [c for c in self.classes if c in used]
        index = {c: i for i, c in enumerate(labels)}
        matrix = [[0] * len(labels) for _ in labels]
        for (t, p), n in self.pairs.items():
            matrix[index[t]][index[p]] += n
        return {"labels": labels, "matrix": matrix}

    def per_class(self) -> list[dict[str, Any]]:
        """Per true label (in class order, those that occur): images, correct, accuracy."""
        n: dict[str, int] = {}
        ok: dict[str, int] = {}
        for (t, p), k in self.pairs.items():
            n[t] = n.get(t, 0) + k
            if t == p:
                ok[t] = ok.get(t, 0) + k
        return [
            {"label": c, "images": n[c], "correct": ok.get(c, 0), "accuracy": ok.get(c, 0) / n[c]}
            for c in self.classes
            if c in n
        ]

    def confused_pairs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """``(true, predicted)`` pairs that differ, most frequent first (ties: class order): what a
        100-class confusion matrix hides."""
        order = {c: i for i, c in enumerate(self.classes)}
        pairs = sorted(
            ((t, p, k) for (t, p), k in self.pairs.items() if t != p),
            key=lambda x: (-x[2], order.get(x[0], 0), order.get(x[1], 0)),
        )
        return [{"true_label": t, "predicted": p, "count": k} for t, p, k in pairs[:limit]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "top5_accuracy": self.top5_accuracy,
            "confusion": self.confusion(),
            "per_class": self.per_class(),
            "confused_pairs": self.confused_pairs(),
            "misclassified": list(self.misclassified),
        }

    def confusion_csv(self) -> str:
        """The confusion matrix as CSV: one row per true label with its image count and accuracy,
        then one column per predicted label."""
        import csv
        import io

        conf = self.confusion()
        acc = {r["label"]: r for r in self.per_class()}
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["true_label", "images", "accuracy", *conf["labels"]])
        for label, row in zip(conf["labels"], conf["matrix"], strict=True):
            r = acc.get(label)
            w.writerow([label, r["images"] if r else 0, f"{r['accuracy']:.6f}" if r else "", *row])
        return buf.getvalue()
