"""The model card written beside every export: ``model_card.json`` and ``MODEL_CARD.md``.

What a reader deciding whether to ship the artifact needs, from the run's own files: the preset,
the data (source, counts, classes), the freeze policy of each phase, the training result (the kept
epoch's validation metrics, the test split's), the export's own measured metrics against the Keras
model, its size on disk, and the commands that reproduce the run and the export. An export that
failed its verification says so on the card's first line. No TensorFlow here.
"""

from __future__ import annotations

from typing import Any

from tltui.core.export_records import ExportResult, SplitCheck
from tltui.core.exports import RUNTIME, Manifest, points, signature, variant
from tltui.core.presets import Preset
from tltui.core.runstate import RunState


def training_phases(preset: Preset, state: RunState) -> list[dict[str, Any]]:
    """Each phase's freeze policy and optimizer: the recorded phases of a phased run, else the preset's one."""
    phases = state.phases_list()
    if phases:
        return [
            {
                "phase": f"{p['index']}/{p['count']}" + (f" {p['name']}" if p["name"] else ""),
                "epochs": f"{p['first_epoch']}-{p['last_epoch']}",
                "freeze_depth": p["freeze_depth"],
                "batchnorm": p["batchnorm"],
                "optimizer": p["optimizer"],
                "learning_rate": p["learning_rate"],
                "trainable_params": p["trainable_params"],
            }
            for p in phases
        ]
    return [
        {
            "phase": "1/1",
            "epochs": f"1-{state.epochs_done or preset.train.epochs}",
            "freeze_depth": preset.freeze.depth,
            "batchnorm": preset.freeze.batchnorm,
            "optimizer": preset.train.optimizer,
            "learning_rate": preset.train.learning_rate,
            "trainable_params": state.model.get("trainable_params"),
        }
    ]


def card(
    *,
    preset: Preset,
    state: RunState,
    data_info: dict[str, Any],
    manifest: Manifest,
    result: ExportResult,
    versions: dict[str, str],
    commands: dict[str, str],
) -> dict[str, Any]:
    """The card as one JSON document (``model_card.json``); :func:`markdown` renders it."""
    return {
        "status": "passed" if result.passed else "verification failed",
        "run": {"id": manifest.run_id, "dir": manifest.run_dir, "preset": preset.name},
        "model": {
            "backbone": preset.model.backbone,
            "weights": preset.model.weights,
            "alpha": preset.model.alpha,
            "dropout": preset.model.dropout,
            "image_size": manifest.image_size,
            "total_params": state.model.get("total_params"),
        },
        "data": {
            "source": data_info.get("source", preset.data.source),
            "native_size": data_info.get("native_size"),
            "train_examples": data_info.get("train_examples"),
            "val_examples": data_info.get("val_examples"),
            "test_examples": data_info.get("test_examples"),
            "num_classes": len(manifest.classes),
            "classes": manifest.classes,
        },
        "training": {
            "phases": training_phases(preset, state),
            "epochs_trained": state.epochs_done,
            "kept": state.kept(),
            "test": state.test,
        },
        "export": {
            "format": manifest.format,
            "quantize": manifest.quantize,
            "artifact": manifest.artifact,
            "size_bytes": result.size_bytes,
            "runtime": RUNTIME[manifest.format],
            "signature": signature(manifest.input_size, len(manifest.classes)),
            "calibration": result.calibration,
            "versions": versions,
        },
        "verification": {
            "max_drop": result.max_drop,
            "passed": result.passed,
            "checks": [{**vars(c), "drop": c.drop} for c in result.checks],
        },
        "reproduce": commands,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def failure_line(result: ExportResult) -> str:
    """``VERIFICATION FAILED: top-1 dropped 3.40 points on validation (...)`` (the card's first line)."""
    w = result.worst
    assert w is not None
    return (
        f"VERIFICATION FAILED: top-1 dropped {w.drop:.2f} points on {w.split} ({_pct(w.keras_top1)} -> "
        f"{_pct(w.export_top1)}), more than the {points(result.max_drop)} allowed; kept for inspection"
    )


def markdown(doc: dict[str, Any], result: ExportResult) -> str:
    run, model, data, training, export = doc["run"], doc["model"], doc["data"], doc["training"], doc["export"]
    title = f"# {run['id']} {run['preset']}: {model['backbone']} as {variant(export['format'], export['quantize'])}"
    lines = [f"**{failure_line(result)}**", "", title] if not result.passed else [title]
    h, w = export["signature"]["inputs"]["image"]["shape"][1:3]
    n = data["num_classes"]
    lines += [
        "",
        f"Exported from run {run['id']} (`{run['dir']}`), preset `{run['preset']}`.",
        "",
        "## Use",
        "",
        f"- input `image`: uint8 RGB pixels 0..255, shape `[N, {h}, {w}, 3]` (NHWC); resizing and the "
        f"backbone's preprocessing are inside the model (it resizes to {model['image_size'][0]}x{model['image_size'][1]})",
        f"- output `probabilities`: float32 softmax, shape `[N, {n}]`, in the order of `classes.json` / `labels.txt`",
        f"- signature `serving_default`; runtime: {export['runtime']}",
        f"- artifact `{export['artifact']}`, {_size(export['size_bytes'])} on disk",
        "",
        "## Model",
        "",
        f"- backbone `{model['backbone']}`, weights `{model['weights']}`"
        + (f", alpha {model['alpha']}" if model["alpha"] is not None else "")
        + (f", dropout {model['dropout']}" if model["dropout"] else "")
        + (f", {model['total_params']:,} parameters" if model["total_params"] else ""),
        "",
        "## Data",
        "",
        f"- source `{data['source']}`, images at {'x'.join(str(x) for x in data['native_size'] or [])}",
        f"- {data['train_examples']} training / {data['val_examples'] or 0} validation"
        + (f" / {data['test_examples']} test" if data["test_examples"] else "")
        + " images",
        f"- {n} classes: " + ", ".join(f"`{c}`" for c in data["classes"][:50]) + (" ..." if n > 50 else ""),
        "",
        "## Training",
        "",
        "| phase | epochs | freeze depth | BatchNorm | optimizer | learning rate | trainable params |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in training["phases"]:
        tp = f"{p['trainable_params']:,}" if isinstance(p["trainable_params"], int) else "-"
        lines.append(
            f"| {p['phase']} | {p['epochs']} | {p['freeze_depth']} | {p['batchnorm']} | {p['optimizer']} | "
            f"{p['learning_rate']:g} | {tp} |"
        )
    kept = training["kept"]
    lines.append("")
    if kept:
        top5 = f", val top-5 {_pct(kept['val_top5_acc'])}" if kept.get("val_top5_acc") is not None else ""
        lines.append(
            f"- the model is epoch {kept['epoch']} of {training['epochs_trained']} ({kept['rule']}): "
            f"val acc {_pct(kept['val_acc'])}{top5}, val loss {kept['val_loss']:.4f}"
            if kept.get("val_loss") is not None
            else f"- the model is epoch {kept['epoch']} of {training['epochs_trained']} ({kept['rule']})"
        )
    test = training["test"]
    if test:
        top5 = f", top-5 {_pct(test['test_top5_acc'])}" if test.get("test_top5_acc") is not None else ""
        lines.append(
            f"- test split `{test['split']}` ({test['examples']} images): acc {_pct(test.get('test_acc'))}{top5}"
        )
    lines += [
        "",
        "## Verification",
        "",
        f"The artifact was loaded back with {export['runtime']} and compared with the Keras model "
        f"(`model.keras`) on the same images. Threshold: top-1 may drop at most {points(result.max_drop)} on "
        f"any split: **{'passed' if result.passed else 'failed'}**.",
        "",
        "| split | images | Keras top-1 | export top-1 | drop (points) | Keras top-5 | export top-5 | agreement | max prob diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_check_row(c) for c in result.checks]
    if result.calibration:
        c = result.calibration
        lines += ["", f"int8 calibration: {c['images']} {c['split']} images drawn with seed {c['seed']}."]
    versions = ", ".join(f"{k} {v}" for k, v in export["versions"].items())
    lines += [
        "",
        "## Reproduce",
        "",
        "```",
        *doc["reproduce"].values(),
        "```",
        "",
        f"Built with {versions}.",
        "",
    ]
    return "\n".join(lines)


def _check_row(c: SplitCheck) -> str:
    name = c.split if c.name == c.split else f"{c.split} (`{c.name}`)"
    return (
        f"| {name} | {c.images} | {_pct(c.keras_top1)} | {_pct(c.export_top1)} | {c.drop:+.2f} | "
        f"{_pct(c.keras_top5)} | {_pct(c.export_top5)} | {_pct(c.agreement)} | {c.max_abs_diff:.2g} |"
    )
