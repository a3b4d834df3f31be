"""What an exported model is, for every process: formats, quantizations, signature, folder layout.

``tltui export`` (the worker job :mod:`tltui.worker.export`) writes one folder per export, by
default ``RUN_DIR/exports/<format>[-<quantize>]/``::

    model.tflite | model.onnx | saved_model/    the artifact
    classes.json, labels.txt                     the class names, in output order
    export.json                                  the manifest (:class:`Manifest`): what tltui reads back
    verification.json                            the figures measured on the run's own splits
    MODEL_CARD.md, model_card.json               the model card
    VERIFICATION_FAILED                          only when top-1 dropped more than the threshold

Every format has one signature: input ``image``, uint8 RGB ``[N, H, W, 3]`` at the size the run's
images were fed at (``data.json`` ``native_size``), output ``probabilities``, float32 softmax
``[N, classes]``; the model's resizing and preprocessing are inside. Stdlib only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tltui.core.errors import TltuiError

FORMATS = ("savedmodel", "litert", "onnx")
QUANTIZATIONS = ("float16", "dynamic", "int8")
#: The quantizations each format takes: a SavedModel stays float32 (TF Serving's input); onnxruntime
#: has no float16 kernels for most operators on a CPU, so ONNX takes the two integer ones.
QUANTIZE_BY_FORMAT: dict[str, tuple[str, ...]] = {
    "savedmodel": (),
    "litert": ("float16", "dynamic", "int8"),
    "onnx": ("dynamic", "int8"),
}
#: The artifact's name inside an export folder.
ARTIFACT = {"savedmodel": "saved_model", "litert": "model.tflite", "onnx": "model.onnx"}
#: The runtime each format is loaded back with to verify it (and by ``tltui predict``).
RUNTIME = {
    "savedmodel": "TensorFlow's SavedModel loader (tf.saved_model.load)",
    "litert": "the LiteRT interpreter (ai-edge-litert)",
    "onnx": "onnxruntime (CPUExecutionProvider)",
}
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
SIGNATURE = "serving_default"
#: ``--max-drop``: points of top-1 accuracy an export may lose against the Keras model.
DEFAULT_MAX_DROP = 1.0
#: Training images full-integer quantization is calibrated on (drawn with the run's seed).
CALIBRATION_IMAGES = 300
MANIFEST = "export.json"
#: The latest export's worker output (TensorFlow, the converters, a traceback), in the run's folder.
LOG = "export.log"
FAILED_MARKER = "VERIFICATION_FAILED"


class ExportError(TltuiError):
    """An export that cannot be made or read; ``str(e)`` is one line for the user."""


def check_combination(fmt: str, quantize: str | None) -> None:
    """:class:`ExportError` for a format that does not take that quantization."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: unknown format (one of {', '.join(FORMATS)})")
    if quantize is None:
        return
    allowed = QUANTIZE_BY_FORMAT[fmt]
    if quantize not in allowed:
        if not allowed:
            raise ExportError(
                f"--quantize {quantize}: a SavedModel is exported as float32; quantize for LiteRT or ONNX "
                "(--format litert|onnx)"
            )
        raise ExportError(f"--quantize {quantize}: {fmt} takes {' or '.join(allowed)}; float16 is for --format litert")


def parse_max_drop(text: str) -> float:
    """``--max-drop``: points of top-1 accuracy, a finite number (negative: the export must gain that much);
    :class:`ExportError` otherwise (``nan`` failed every export, ``inf`` passed any)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
        if text.strip().lower() != "nan":
            raise ExportError(f"max drop {text!r}: expected a number of points, e.g. 1 or 0.5") from None
    if not math.isfinite(value):
        raise ExportError(f"max drop {text!r}: expected a finite number of points, e.g. 1 or 0.5")
    return value


def points(x: float) -> str:
    """``1 point``, ``0.5 points``: a threshold of top-1 accuracy as the reports say it."""
    return f"{x:g} point" + ("" if abs(x) == 1 else "s")


def variant(fmt: str, quantize: str | None) -> str:
    """``litert-int8``, ``onnx``: the default folder name of an export."""
    return f"{fmt}-{quantize}" if quantize else fmt


def default_dir(run_dir: str | os.PathLike[str], fmt: str, quantize: str | None) -> Path:
    return Path(run_dir) / "exports" / variant(fmt, quantize)


@dataclass(frozen=True)
class ExportPaths:
    """Where each file of an export folder lives. Pure path arithmetic; creates nothing."""

    dir: Path

    def artifact(self, fmt: str) -> Path:
        return self.dir / ARTIFACT[fmt]

    @property
    def manifest(self) -> Path:
        return self.dir / MANIFEST

    @property
    def verification(self) -> Path:
        return self.dir / "verification.json"

    @property
    def card(self) -> Path:
        return self.dir / "MODEL_CARD.md"

    @property
    def card_json(self) -> Path:
        return self.dir / "model_card.json"

    @property
    def classes(self) -> Path:
        return self.dir / "classes.json"

    @property
    def labels(self) -> Path:
        return self.dir / "labels.txt"

    @property
    def failed_marker(self) -> Path:
        return self.dir / FAILED_MARKER


@dataclass(frozen=True)
class Manifest:
    """``export.json``: what an export folder holds and how to feed it.

    ``input_size``: the artifact's ``[height, width]`` (the run's native size); ``image_size``: the size
    the model resizes to inside. ``passed``: the verification stayed within ``max_drop``."""

    format: str
    quantize: str | None
    artifact: str
    input_size: list[int]
    image_size: list[int]
    classes: list[str]
    run_id: str
    run_dir: str
    passed: bool
    max_drop: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "quantize": self.quantize,
            "artifact": self.artifact,
            "signature": signature(self.input_size, len(self.classes)),
            "input_size": self.input_size,
            "image_size": self.image_size,
            "classes": self.classes,
            "run_id": self.run_id,
            "run_dir": self.run_dir,
            "passed": self.passed,
            "max_drop": self.max_drop,
        }

    @property
    def label(self) -> str:
        """``r0012 litert-int8``: the run and the variant, as reports name an export."""
        return f"{self.run_id} {variant(self.format, self.quantize)}"


def signature(input_size: list[int], num_classes: int) -> dict[str, Any]:
    """The documented signature, as the manifest and the model card state it."""
    h, w = input_size
    return {
        "name": SIGNATURE,
        "inputs": {INPUT_NAME: {"dtype": "uint8", "shape": [None, h, w, 3], "layout": "NHWC, RGB, 0..255"}},
        "outputs": {OUTPUT_NAME: {"dtype": "float32", "shape": [None, num_classes], "meaning": "softmax over classes"}},
    }


def is_export(path: str | os.PathLike[str]) -> bool:
    """``path`` is a folder ``tltui export`` wrote (it holds ``export.json``)."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(folder: str | os.PathLike[str]) -> Manifest:
    """The manifest of an export folder; :class:`ExportError` (one line) when it does not read."""
    path = ExportPaths(Path(folder)).manifest
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        m = Manifest(
            format=str(doc["format"]),
            quantize=doc.get("quantize"),
            artifact=str(doc["artifact"]),
            input_size=[int(x) for x in doc["input_size"]],
            image_size=[int(x) for x in doc["image_size"]],
            classes=[str(c) for c in doc["classes"]],
            run_id=str(doc["run_id"]),
            run_dir=str(doc["run_dir"]),
            passed=bool(doc["passed"]),
            max_drop=float(doc["max_drop"]),
        )
    except OSError as e:
        raise ExportError(f"{path}: cannot read ({e.strerror or e})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ExportError(f"{path}: not an export manifest ({type(e).__name__}: {e})") from None
    if m.format not in FORMATS or len(m.input_size) != 2 or not m.classes:
        raise ExportError(f"{path}: not an export manifest (format {m.format!r}, input size {m.input_size})")
    return m
