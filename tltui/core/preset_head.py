"""A preset's classifier head and phases on its freeze map, before any run has built the model.

The head's Dense layer has ``F x C + C`` parameters (``F`` the backbone's features, ``C`` the
classes). ``C`` is known cheaply for a folder (its class subfolders) and for a prepared TFDS dataset
(its ``dataset_info.json``); otherwise the map says how the head's size follows ``C`` instead of
counting it as 0. A phased preset's map lists what trains in each phase, not only ``[freeze]``.
Pure: no TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tltui.core import formatting as fmt
from tltui.core import freeze_policy, preflight


def folder_classes(folder: str | Path) -> int | None:
    """The class subfolders of a folder source (hidden ones aside); ``None`` when it does not read."""
    try:
        return sum(1 for p in Path(folder).expanduser().iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return None


def tfds_classes(name: str, data_dir: Path) -> int | None:
    """The label's class count of a prepared TFDS dataset (``NAME[/CONFIG][:VERSION]``) from its
    ``dataset_info.json``; ``None`` when not prepared here or not one clear count."""
    base, _, version = name.partition(":")
    root = data_dir.joinpath(*base.split("/"))
    pattern = f"{version}/dataset_info.json" if version else "*/dataset_info.json"
    found = sorted(p for p in [*root.glob(pattern), *root.glob(f"*/{pattern}")] if "incomplete" not in p.parent.name)
    for path in reversed(found):  # the newest version last in name order
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        counts = set(_num_classes(info.get("features") if isinstance(info, dict) else None))
        return counts.pop() if len(counts) == 1 else None
    return None


def _num_classes(node: Any) -> list[int]:
    """Every ``classLabel.numClasses`` in a TFDS features proto (as JSON)."""
    out: list[int] = []
    if isinstance(node, dict):
        label = node.get("classLabel")
        if isinstance(label, dict) and str(label.get("numClasses", "")).isdigit():
            out.append(int(label["numClasses"]))
        for value in node.values():
            out.extend(_num_classes(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(_num_classes(value))
    return out


def preset_classes(preset: Any) -> int | None:
    """The number of classes of a preset's data when it costs no download and no TensorFlow."""
    d = preset.data
    if d.kind == "folder":
        return folder_classes(d.target)
    if d.kind == "tfds":
        return tfds_classes(d.target, preflight.tfds_data_dir(d.data_dir))
    return None


def features_of(description: dict[str, Any]) -> int | None:
    """The backbone's feature channels (the head's input), from its description's last layer."""
    layers = description.get("layers") or []
    shape = layers[-1].get("output_shape") if layers else None
    return shape[-1] if isinstance(shape, list) and shape and isinstance(shape[-1], int) else None


def head_size_text(features: int | None) -> str:
    """``1280 x C + C params for C classes``: the head's size when the class count is unknown."""
    return f"{features} x C + C params for C classes" if features else "its size follows the number of classes"


def phase_rows(
    description: dict[str, Any], preset: Any, classes: int | None, dropout: float = 0.0
) -> list[dict[str, Any]]:
    """Per phase of a phased preset (none otherwise): its label, epochs, depth, BatchNorm policy and
    the parameters that train of all (the head's counted when ``classes`` is known)."""
    if not preset.phases:
        return []
    head = freeze_policy.standard_head(features_of(description), classes, dropout)
    rows = []
    for i, q in enumerate(preset.phase_presets()):
        row: dict[str, Any] = {
            "label": preset.phase_label(i),
            "epochs": q.train.epochs,
            "depth": q.freeze.depth,
            "batchnorm": q.freeze.batchnorm,
        }
        try:
            t = freeze_policy.build_map(description, q.freeze.depth, q.freeze.batchnorm, head_layers=head)["totals"]
            row.update(trainable_params=t["trainable_params"], params=t["params"])
        except freeze_policy.FreezeError as e:  # a depth beyond the backbone's stages: said on its line
            row["error"] = str(e)
        rows.append(row)
    return rows


def phase_line(row: dict[str, Any], head_known: bool) -> str:
    """``phase 2/2 fine-tune: 4 epochs, depth 2, BatchNorm frozen · 1.2M/2.3M params train``."""
    what = f"phase {row['label']}: {row['epochs']} epochs, depth {row['depth']}, BatchNorm {row['batchnorm']}"
    if "error" in row:
        return f"{what} · {row['error']}"
    head = "" if head_known else " + the head"
    return f"{what} · {fmt.params(row['trainable_params'])}/{fmt.params(row['params'])} params train{head}"
