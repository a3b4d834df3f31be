"""docs/architecture.md, invariant 6: for every supported backbone, depth and BatchNorm policy, the
real Keras model's ``trainable`` flags equal the pure policy's map over its description.

Each backbone is built once (random weights, smallest legal input) and every
depth/policy is applied to that one model.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tltui.core import catalog, freeze_policy
from tltui.core.freeze_policy import FreezeError

pytestmark = pytest.mark.e2e

keras = pytest.importorskip("keras")

from tltui.worker import describe  # noqa: E402
from tltui.worker.freeze import apply_freeze, layer_info, runs_in_inference_mode  # noqa: E402

ALL = [*catalog.BACKBONES, *catalog.TEST_BACKBONES]
# ResNet50 serves two tests: same xdist worker, built once.
RESNET50 = pytest.mark.xdist_group("freeze_resnet50")
PARAMS = [pytest.param(n, marks=RESNET50) if n == "resnet50" else n for n in ALL]
_built: dict[str, Any] = {}


def build(name: str) -> tuple[Any, Any, Any]:
    """The classifier around ``name`` at its smallest legal size (ResNet50 kept for reuse)."""
    if name in _built:
        return _built[name]
    out = describe.build(name, small_size(name))
    if name == "resnet50":
        _built[name] = out
    return out


def small_size(name: str) -> tuple[int, int]:
    spec = catalog.lookup(name)
    assert spec is not None
    side = max(spec.min_size, 32)
    return side, side


def real_flags(model: Any, backbone: Any) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for layer in model.layers:
        if layer is backbone:
            out += [(l.name, bool(l.trainable)) for l in backbone.layers]
        else:
            out.append((layer.name, bool(layer.trainable)))
    return out


def keras_trainable_params(model: Any) -> int:
    return sum(math.prod(v.shape) for v in model.trainable_weights)


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("backbone", "image_size", "num_classes")}


@pytest.mark.parametrize("name", PARAMS)
def test_real_trainable_flags_equal_the_pure_map(name: str) -> None:
    size = small_size(name)
    model, backbone, spec = build(name)
    description = json.loads(json.dumps(describe.description_of(model, backbone, spec.family, name, size)))
    n = len(description["stages"])
    assert n == freeze_policy.num_stages(spec.family)
    # the layer map groups a stage's layers by the family's blocks: Keras still names them so, and a block
    # never straddles two stages
    family = catalog.family(spec.family)
    block_stages: dict[str, set[str]] = {}
    for layer in description["layers"]:
        block = family.block_of(layer["name"])
        if block is not None:
            block_stages.setdefault(block, set()).add(layer["stage"])
    assert bool(block_stages) is bool(family.block_pattern), name
    assert all(len(s) == 1 for s in block_stages.values()), block_stages
    outer = list(model.layers)
    head = [layer_info(l) for l in outer[outer.index(backbone) + 1 :]]
    for batchnorm in freeze_policy.BATCHNORM_POLICIES:
        for depth in [*range(n + 1), "all"]:
            recorded = apply_freeze(model, backbone, spec.family, depth, batchnorm)
            pure = freeze_policy.build_map(description, depth, batchnorm, head_layers=head)
            where = f"{name} depth={depth} batchnorm={batchnorm}"
            real = real_flags(model, backbone)
            assert [(r["name"], r["trainable"]) for r in recorded["layers"]] == real, where
            assert _strip(pure) == _strip(recorded), where
            assert recorded["totals"]["trainable_params"] == keras_trainable_params(model), where
            inference = [
                runs_in_inference_mode(l)
                for l in [
                    *model.layers[: outer.index(backbone)],
                    *backbone.layers,
                    *model.layers[outer.index(backbone) + 1 :],
                ]
            ]
            assert [r["inference"] for r in recorded["layers"]] == inference, where
            assert all(s["layers"] > 0 for s in recorded["stages"]), where
    with pytest.raises(FreezeError, match=f"has {n} stages"):
        apply_freeze(model, backbone, spec.family, n + 1, "frozen")


@RESNET50
def test_resnet50_notebook_policy_freezes_0_11_24_43_53_convolutions() -> None:
    model, backbone, _ = build("resnet50")
    counts = []
    for depth in range(5):
        apply_freeze(model, backbone, "resnet", depth, "trainable")
        counts.append(sum(1 for l in backbone.layers if isinstance(l, keras.layers.Conv2D) and not l.trainable))
    assert counts == [0, 11, 24, 43, 53]


def test_frozen_batchnorm_runs_in_inference_mode() -> None:
    """What the map calls "BatchNorm inference mode" is what Keras does with training=True."""
    import numpy as np

    model, backbone, _ = describe.build("tiny_cnn", (16, 16))
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    for batchnorm, moves in (("frozen", False), ("trainable", True)):
        doc = apply_freeze(model, backbone, "tiny", "all", batchnorm)
        row = next(r for r in doc["layers"] if r["name"] == "block1_bn")
        assert row["bn_inference"] is not moves
        bn = backbone.get_layer("block1_bn")
        before = bn.moving_mean.numpy()
        model(x, training=True)
        assert (not np.allclose(before, bn.moving_mean.numpy())) is moves


def test_inference_policy_trains_gamma_beta_and_keeps_the_statistics() -> None:
    """``batchnorm = "inference"`` (keras.io's recipe): in an unfrozen stage BatchNorm's gamma/beta train
    while its moving statistics stay bit-identical; a frozen stage does not move at all. (The recipe's own
    ``base_model(x, training=False)`` does not do this in Keras 3: the outer fit's ``training=True``
    reaches the nested model, keras-team/keras#20285.)"""
    import numpy as np

    model, backbone, _ = describe.build("tiny_cnn", (16, 16))
    doc = apply_freeze(model, backbone, "tiny", 1, "inference")
    rows = {r["name"]: r for r in doc["layers"]}
    assert rows["block2_bn"]["trainable"] and rows["block2_bn"]["bn_inference"] and rows["block2_bn"]["inference"]
    assert rows["block2_bn"]["trainable_params"] == 2 * 16  # gamma and beta, not the statistics
    assert not rows["block1_bn"]["trainable"] and rows["block1_conv"]["inference"]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (8, 16, 16, 3)).astype("float32")
    y = np.arange(8) % 2  # describe.build's classifier has 2 classes
    bn2, bn1 = backbone.get_layer("block2_bn"), backbone.get_layer("block1_bn")
    before = {
        v.path: v.numpy().copy() for v in [*bn2.weights, *bn1.weights, *backbone.get_layer("block1_conv").weights]
    }
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    after = {v.path: v.numpy() for v in [*bn2.weights, *bn1.weights, *backbone.get_layer("block1_conv").weights]}
    moved = {p for p in before if not np.array_equal(before[p], after[p])}
    assert moved == {bn2.gamma.path, bn2.beta.path}


def test_a_frozen_backbone_runs_its_random_layers_in_inference_mode() -> None:
    """EfficientNet's stochastic depth (Dropout inside the blocks) is off in frozen stages: the frozen
    backbone's features are the same in training and inference mode, so the feature cache may serve it."""
    import numpy as np

    from tltui.core import presets
    from tltui.worker import feature_cache

    size = small_size("efficientnet_b0")
    model, backbone, spec = describe.build("efficientnet_b0", size)
    x = np.random.default_rng(0).uniform(0, 255, (2, *size, 3)).astype("float32")
    drops = [l for l in backbone.layers if isinstance(l, keras.layers.Dropout) and l.rate > 0]
    assert drops
    apply_freeze(model, backbone, spec.family, "all", "frozen")
    np.testing.assert_array_equal(backbone(x, training=True).numpy(), backbone(x, training=False).numpy())
    preset = presets.from_dict(
        {
            "name": "e",
            "data": {"source": "folder:/x", "augment": False},
            "model": {"backbone": "efficientnet_b0", "weights": "none"},
            "freeze": {"depth": "all"},
        }
    )
    assert feature_cache.plan(preset, model, backbone, spec.family, 10, 2).use
    apply_freeze(model, backbone, spec.family, 1, "frozen")  # the unfrozen stages draw again
    assert not np.array_equal(backbone(x, training=True).numpy(), backbone(x, training=False).numpy())
    assert not feature_cache.plan(preset, model, backbone, spec.family, 10, 2).use


@RESNET50
def test_resnet50_inference_policy_trains_what_the_keras_io_recipe_trains() -> None:
    """Phase 2 of cifar100-resnet50-two-phase (depth 2, 100 classes): the keras.io recipe unfreezes conv4
    and conv5 with their BatchNorm gamma/beta, 22,289,508 trainable parameters; "frozen" keeps those
    43,008 gamma/beta frozen too."""
    model, backbone, _ = build("resnet50")
    head = model.get_layer("logits")  # describe.build's classifier has 2 classes
    counts = {}
    for policy in ("inference", "frozen"):
        doc = apply_freeze(model, backbone, "resnet", 2, policy)
        backbone_and_head = keras_trainable_params(model) - sum(math.prod(w.shape) for w in head.weights)
        counts[policy] = backbone_and_head + 2048 * 100 + 100  # the cifar100 head
        assert doc["totals"]["trainable_params"] == keras_trainable_params(model)
    assert counts == {"inference": 22_289_508, "frozen": 22_289_508 - 43_008}


def test_freeze_map_cli_describes_once_through_the_worker(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "tltui", "--workspace", str(ws), "freeze-map", "tiny_cnn", "--depth", "1", "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    cached = ws / "cache" / "backbones" / "tiny_cnn-32x32.json"
    assert cached.is_file()
    mtime = cached.stat().st_mtime_ns
    doc = json.loads(first.stdout)
    assert [(r["name"], r["trainable"]) for r in doc["layers"] if r["stage"] == "block1"][1:] == [
        ("block1_conv", False),
        ("block1_bn", False),
        ("block1_relu", False),
    ]
    assert all(r["trainable"] for r in doc["layers"] if r["stage"] == "block2" and r["type"] != "BatchNormalization")
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0 and json.loads(second.stdout) == doc
    assert cached.stat().st_mtime_ns == mtime  # read from the cache, not described again


def test_describe_job_reports_an_unknown_backbone_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d.json"
    assert describe.main(["resnet5", "--image-size", "32", "32", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown backbone 'resnet5'") and err.count("\n") == 1
    assert describe.main(["inception_v3", "--image-size", "32", "32", "--out", str(out)]) == 2
    assert "at least 75x75" in capsys.readouterr().err
    assert not out.exists()
