"""TensorBoard's HParams summary of a run: its hyper-parameters when it starts, its result when it ends.

Written in the run's ``tensorboard/`` folder (beside the epoch scalars of ``train/`` and
``validation/``), so TensorBoard's HParams dashboard (table, parallel coordinates, scatter plots)
shows a sweep's runs side by side when pointed at the workspace's ``runs/``: one session per run, its
hyper-parameters the resolved preset's values, its metrics the ``final/*`` scalars written here plus
the epoch scalars TensorBoard finds by itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tltui.core import presets

#: A key whose values are a number in one run and a word in another (``freeze.depth``: 2 or "all"):
#: written as text, so each column of the dashboard has one type.
_MIXED = re.compile(r"(^|\.)(depth|mixed_precision)$")
_LEFT_OUT = ("name", "description")


def hparams_of(preset: presets.Preset) -> dict[str, bool | int | float | str]:
    """The preset as flat ``section.key`` hyper-parameters (phases as ``phases.N.section.key``, only
    what a phase sets); lists as text (``data.image_size``: ``"64x64"``), unset values left out."""
    out: dict[str, bool | int | float | str] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                add(f"{prefix}.{k}" if prefix else str(k), v)
        elif value is None or prefix in _LEFT_OUT:
            return
        elif isinstance(value, list):
            out[prefix] = "x".join(map(str, value))
        elif _MIXED.search(prefix) or not isinstance(value, bool | int | float):
            out[prefix] = str(value).lower() if isinstance(value, bool) else str(value)
        else:
            out[prefix] = value

    d = preset.to_toml_dict()
    d.pop("sweep", None)
    phases = d.pop("phases", [])
    add("", d)
    for i, ph in enumerate(phases, 1):
        add(f"phases.{i}", {k: v for k, v in ph.items() if k != "name"})
    return out


def write_hparams(log_dir: Path, preset: presets.Preset) -> None:
    """The run's hyper-parameters as an HParams session (``trial_id``: the run's name)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        hp.hparams(hparams_of(preset), trial_id=preset.name)
    writer.close()


def write_final(log_dir: Path, metrics: Mapping[str, float], step: int) -> None:
    """The run's result as ``final/NAME`` scalars at ``step`` (the epoch ``model.keras`` holds): the
    metrics the HParams table shows and sorts by."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        for name, value in metrics.items():
            tf.summary.scalar(f"final/{name}", float(value), step=step)
    writer.close()


def final_metrics(history: Mapping[str, Any], test: Mapping[str, float] | None) -> dict[str, float]:
    """The kept epoch's metrics (``history``: that epoch's row of the run's history) and the test split's."""
    out = {
        k: float(v)
        for k, v in history.items()
        if k not in ("epoch", "t", "epoch_seconds") and isinstance(v, int | float) and not isinstance(v, bool)
    }
    out.update({k: float(v) for k, v in (test or {}).items()})
    return out
