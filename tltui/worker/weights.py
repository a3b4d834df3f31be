"""The preset's own weights put into a freshly built classifier: ``model.weights`` set to a
``.weights.h5`` file or to ``run:RUN_ID``. Shared by both builders (:mod:`tltui.worker.model` and
:mod:`tltui.worker.hub`), which call :func:`load_preset_weights` once the model is built."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from tltui.core.workspace import format_run_id
from tltui.worker.errors import ModelError, first_line

#: The nested backbone's name in every classifier tltui builds (what ``run:`` weights are copied from).
BACKBONE_NAME = "backbone"


def load_preset_weights(
    model: keras.Model, backbone: keras.Model, weights: str, runs_dir: str | os.PathLike[str] | None
) -> None:
    """``model.weights`` when it names a file or a run (``"imagenet"`` and ``"none"`` are the builder's)."""
    if weights.endswith(".weights.h5"):
        load_weights_file(model, backbone, Path(weights))
    elif weights.startswith("run:"):
        load_run_backbone(backbone, weights[4:], runs_dir)


def load_weights_file(model: keras.Model, backbone: keras.Model, path: Path) -> None:
    """A ``.weights.h5`` of the backbone alone, else of a whole classifier like this one."""
    if not path.is_file():
        raise ModelError(f"model.weights: weights file {path} does not exist")
    try:
        backbone.load_weights(str(path))
        return
    except Exception as backbone_error:  # noqa: BLE001 - try the other layout before giving up
        try:
            model.load_weights(str(path))
        except Exception:  # noqa: BLE001
            raise ModelError(
                f"model.weights: {path} matches neither this backbone nor this model "
                f"({first_line(backbone_error)}); was it saved from the same backbone and image size?"
            ) from backbone_error


def load_run_backbone(backbone: keras.Model, run_ref: str, runs_dir: str | os.PathLike[str] | None) -> None:
    """Copy the backbone weights of a completed run's ``model.keras``."""
    if runs_dir is None:
        raise ModelError("model.weights: run: weights need the workspace's runs folder")
    digits = run_ref.strip().removeprefix("r")
    if not digits.isdigit():
        raise ModelError(f'model.weights = "run:{run_ref}": not a run id (expected like r0012)')
    run_id = format_run_id(int(digits))
    path = Path(runs_dir) / run_id / "model.keras"
    if not path.is_file():
        raise ModelError(f'model.weights = "run:{run_ref}": {path} does not exist (did that run complete?)')
    source = keras.models.load_model(path, compile=False)
    try:
        src_backbone = source.get_layer(BACKBONE_NAME)
    except ValueError:
        raise ModelError(f'model.weights = "run:{run_ref}": {path} has no layer named {BACKBONE_NAME!r}') from None
    src, dst = src_backbone.get_weights(), backbone.get_weights()
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src, dst, strict=True)):
        raise ModelError(
            f'model.weights = "run:{run_ref}": that run\'s backbone differs from {backbone.name} at this '
            "image size; use the same model.backbone, alpha and data.image_size"
        )
    backbone.set_weights(src)
