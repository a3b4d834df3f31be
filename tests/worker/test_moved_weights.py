"""The weights-moved record (``moved.json``): frozen layers read exactly 0, trained ones do not,
and ``tltui freeze-map RUN --moved`` shows it (a frozen layer that moved is an error)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from tltui.commands.main import main
from tltui.core import demo, presets
from tltui.core.workspace import Workspace

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("train_e2e")]


def train_run(ws: Workspace, folder: Path, **freeze: object) -> str:
    from tltui.worker import train

    preset = presets.from_dict(
        {
            "name": "moved",
            "data": {
                "source": f"folder:{folder}",
                "image_size": [16, 16],
                "batch_size": 8,
                "validation_fraction": 0.25,
            },
            "model": {"backbone": "tiny_cnn", "weights": "none"},
            "freeze": freeze,
            "train": {"epochs": 2, "checkpoint_every": 0, "learning_rate": 0.05},
        }
    )
    (rec,) = ws.create_runs([("moved", presets.dumps(preset), {})], preset_name="moved", epochs=[2])
    assert train.main([str(ws.run_paths(rec.id).dir)]) == 0
    return rec.id


def cli(ws: Workspace, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["--workspace", str(ws.root), *args])
    return rc, out.getvalue()


def test_frozen_layers_read_zero_trained_ones_move_and_the_cli_says_so(
    ws: Workspace, tmp_path: Path, restore_signals
) -> None:
    folder = demo.generate(tmp_path / "shapes", per_class=8, size=16, shapes=("circle", "square", "cross"))
    rid = train_run(ws, folder, depth=1, batchnorm="frozen")
    doc = json.loads((ws.run_paths(rid).dir / "moved.json").read_text())
    by = {r["name"]: r for r in doc["layers"]}
    assert doc["epoch"] == 2 and doc["errors"] == []
    assert not by["block1_conv"]["trainable"] and by["block1_conv"]["moved"] == 0.0
    assert by["block1_bn"]["moved"] == 0.0 and by["block1_bn"]["bn_drift"] == 0.0  # BatchNorm frozen: inference mode
    assert by["block2_bn"]["bn_drift"] == 0.0  # frozen everywhere with batchnorm = "frozen"
    assert by["block2_conv"]["trainable"] and by["block2_conv"]["moved"] > 0
    assert by["logits"]["trainable"] and by["logits"]["moved"] > 0

    rc, out = cli(ws, "freeze-map", rid, "--moved", "--layers")
    assert rc == 0 and "every frozen layer reads exactly 0" in out
    assert any(line.split()[:2] == ["block1", "2"] and line.split()[2] == "0" for line in out.splitlines())
    rc, out = cli(ws, "freeze-map", rid, "--json")
    assert json.loads(out)["moved"]["epoch"] == 2

    # what the check exists to catch: a layer the map calls frozen whose weights changed
    path = ws.run_paths(rid).dir / "moved.json"
    by["block1_conv"]["moved"] = 1e-3
    path.write_text(json.dumps({**doc, "layers": list(by.values()), "errors": ["block1_conv"]}))
    rc, out = cli(ws, "freeze-map", rid, "--moved", "--layers")
    assert rc == 1 and "ERROR: 1 frozen layer(s) moved: block1_conv" in out and "ERROR: frozen but moved" in out


def test_trainable_batchnorm_drifts_inside_a_frozen_block(ws: Workspace, tmp_path: Path, restore_signals) -> None:
    """The notebook's policy: block 1 frozen but its BatchNorm trains; its statistics move."""
    folder = demo.generate(tmp_path / "shapes", per_class=8, size=16, shapes=("circle", "square", "cross"))
    rid = train_run(ws, folder, depth=1, batchnorm="trainable")
    by = {r["name"]: r for r in json.loads((ws.run_paths(rid).dir / "moved.json").read_text())["layers"]}
    assert by["block1_conv"]["moved"] == 0.0
    assert by["block1_bn"]["trainable"] and by["block1_bn"]["bn_drift"] > 0 and by["block1_bn"]["moved"] > 0


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet50"])
def test_the_record_on_real_backbones_after_a_step(backbone: str, tmp_path: Path) -> None:
    """Two more families, one optimizer step each: every frozen layer exactly 0, every trainable one moved.
    (Random weights: BatchNorm trains, as a from-scratch run needs; with it frozen at its initial
    statistics the deep stages saturate and get no gradient at all.)"""
    import keras
    import numpy as np

    from tltui.worker import model as model_mod
    from tltui.worker.archive import read_values
    from tltui.worker.freeze import apply_freeze
    from tltui.worker.moved import MovedWeights

    preset = presets.from_dict(
        {
            "name": "m",
            "data": {"source": "tfds:x", "image_size": [32, 32]},
            "model": {
                "backbone": backbone,
                "weights": "none",
                **({"alpha": 0.35} if backbone == "mobilenet_v2" else {}),
            },
            "freeze": {"depth": 2, "batchnorm": "trainable"},
        }
    )
    model, backbone_model = model_mod.build_classifier(preset, 3)
    spec = model_mod.backbone_spec(preset)
    apply_freeze(model, backbone_model, spec.family, 2, "trainable", name=backbone, image_size=[32, 32])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    moved = MovedWeights(model, tmp_path / "backup", tmp_path / "moved.json", fresh=True)
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32"), np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    doc = moved.record(read_values(list(model.weights)), 1)
    assert doc is not None and doc["errors"] == []
    frozen = [r for r in doc["layers"] if not r["trainable"]]
    trained = [r for r in doc["layers"] if r["trainable"]]
    assert frozen and trained
    assert all(r["moved"] == 0.0 and r["bn_drift"] is None for r in frozen)  # frozen convolutions
    still = [r["name"] for r in trained if r["moved"] == 0]
    assert not still, still
