"""The pure freeze policy and the map built from a description (no TensorFlow)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tltui.core import catalog, freeze_policy, preflight, presets
from tltui.core.freeze_policy import FreezeError, LayerInfo

LAYER_TYPES = ["Conv2D", "BatchNormalization", "Activation", "Add", "DepthwiseConv2D", "MaxPooling2D"]


def resnet50_layers() -> list[LayerInfo]:
    """The top-level layers of keras.applications.ResNet50 (names and types, model order)."""

    def conv(name: str, p: int = 100) -> list[LayerInfo]:
        return [
            LayerInfo(f"{name}_conv", "Conv2D", p, None, True),
            LayerInfo(f"{name}_bn", "BatchNormalization", 4, None, True, trainable_params=2),
        ]

    out = [
        LayerInfo("input_layer", "InputLayer", 0, None, False),
        LayerInfo("conv1_pad", "ZeroPadding2D", 0, None, False),
    ]
    out += conv("conv1") + [
        LayerInfo("conv1_relu", "Activation", 0, None, False),
        LayerInfo("pool1_pad", "ZeroPadding2D", 0, None, False),
        LayerInfo("pool1_pool", "MaxPooling2D", 0, None, False),
    ]
    for stage, blocks in zip(range(2, 6), (3, 4, 6, 3), strict=True):
        for b in range(1, blocks + 1):
            p = f"conv{stage}_block{b}"
            for i in (1, 2):
                out += conv(f"{p}_{i}") + [LayerInfo(f"{p}_{i}_relu", "Activation", 0, None, False)]
            if b == 1:
                out += conv(f"{p}_0")
            out += conv(f"{p}_3")
            out += [LayerInfo(f"{p}_add", "Add", 0, None, False), LayerInfo(f"{p}_out", "Activation", 0, None, False)]
    return out


def resnet50_description() -> dict[str, Any]:
    layers = catalog.family("resnet").assign(resnet50_layers())
    layers[-1] = replace(layers[-1], output_shape=(None, 7, 7, 2048))
    return {
        "version": freeze_policy.DESCRIPTION_VERSION,
        "backbone": "resnet50",
        "family": "resnet",
        "image_size": [224, 224],
        "stages": list(catalog.family("resnet").stage_names(layers)),
        "layers": [l.to_dict() for l in layers],
        "input_layers": [LayerInfo("image", "InputLayer", 0, (None, None, None, 3), False).to_dict()],
    }


def frozen_convs(layers: list[LayerInfo], flags: list[bool]) -> int:
    return sum(1 for l, t in zip(layers, flags, strict=True) if l.type == "Conv2D" and not t)


def test_resnet50_notebook_policy_freezes_0_11_24_43_53_convolutions() -> None:
    layers = catalog.family("resnet").assign(resnet50_layers())
    got = [frozen_convs(layers, freeze_policy.plan(layers, d, "trainable")) for d in range(5)]
    assert got == [0, 11, 24, 43, 53]
    assert frozen_convs(layers, freeze_policy.plan(layers, "all", "trainable")) == 53


def test_notebook_policy_keeps_batchnorm_trainable_inside_frozen_stages() -> None:
    layers = catalog.family("resnet").assign(resnet50_layers())
    flags = freeze_policy.plan(layers, "all", "trainable")
    assert all(t for l, t in zip(layers, flags, strict=True) if l.is_batchnorm)
    assert not any(t for l, t in zip(layers, flags, strict=True) if not l.is_batchnorm)


def test_frozen_batchnorm_policy_freezes_every_batchnorm_even_at_depth_0() -> None:
    layers = catalog.family("resnet").assign(resnet50_layers())
    flags = freeze_policy.plan(layers, 0, "frozen")
    assert not any(t for l, t in zip(layers, flags, strict=True) if l.is_batchnorm)
    assert all(t for l, t in zip(layers, flags, strict=True) if not l.is_batchnorm)


@st.composite
def described_backbones(draw: st.DrawFn) -> list[LayerInfo]:
    n_stages = draw(st.integers(1, 6))
    out: list[LayerInfo] = []
    for s in range(n_stages):
        for i in range(draw(st.integers(1, 6))):
            out.append(
                LayerInfo(
                    f"s{s}_{i}",
                    draw(st.sampled_from(LAYER_TYPES)),
                    draw(st.integers(0, 50)),
                    None,
                    True,
                    stage=f"stage{s}",
                )
            )
    head = [
        LayerInfo("avg_pool", "GlobalAveragePooling2D", 0, None, False, "head"),
        LayerInfo("logits", "Dense", 11, None, True, "head"),
    ]
    return [LayerInfo("resize", "Resizing", 0, None, False, "input"), *out, *head]


@given(described_backbones(), st.sampled_from(freeze_policy.BATCHNORM_POLICIES))
def test_each_depth_freezes_a_superset_of_the_one_before(layers: list[LayerInfo], bn: str) -> None:
    n = len({l.stage for l in layers} - {"input", "head"})
    plans = [freeze_policy.plan(layers, d, bn) for d in [*range(n + 1), "all"]]
    for before, after in zip(plans, plans[1:], strict=False):
        frozen_before = {i for i, t in enumerate(before) if not t}
        frozen_after = {i for i, t in enumerate(after) if not t}
        assert frozen_before <= frozen_after
    assert plans[-1] == plans[-2]  # depth N is "all"


@given(described_backbones(), st.sampled_from(freeze_policy.BATCHNORM_POLICIES))
def test_depth_0_all_head_and_input(layers: list[LayerInfo], bn: str) -> None:
    zero = freeze_policy.plan(layers, 0, bn)
    every = freeze_policy.plan(layers, "all", bn)
    for l, t0, ta in zip(layers, zero, every, strict=True):
        if l.stage == "head":
            assert t0 and ta
        elif l.stage == "input":
            assert not t0 and not ta
        elif l.is_batchnorm and bn != "inference":
            assert t0 == ta == (bn == "trainable")
        else:  # BatchNorm under "inference": its gamma/beta follow the stage like any layer
            assert t0 and not ta


@given(described_backbones(), st.sampled_from(freeze_policy.BATCHNORM_POLICIES), st.integers(0, 4))
def test_frozen_stages_and_batchnorm_run_in_inference_mode(layers: list[LayerInfo], bn: str, depth: int) -> None:
    """What runs in inference mode while the model trains: every layer a frozen stage holds (its Dropout and
    stochastic depth off), BatchNorm everywhere unless the policy trains it; the head never."""
    order = [s for s in dict.fromkeys(l.stage for l in layers) if s not in ("input", "head")]
    depth = min(depth, len(order))
    frozen = set(order[:depth])
    modes = freeze_policy.inference_mode(layers, depth, bn, order)
    flags = freeze_policy.plan(layers, depth, bn, order)
    for l, inf, t in zip(layers, modes, flags, strict=True):
        if l.stage in ("head", "input"):
            assert not inf
        elif l.is_batchnorm:
            assert inf == (bn != "trainable")
            assert t == (bn == "trainable" or (bn == "inference" and l.stage not in frozen))
        else:
            assert inf == (l.stage in frozen) == (not t)


@pytest.mark.parametrize("depth", [5, 17])
def test_depth_beyond_the_stages_is_an_error(depth: int) -> None:
    layers = catalog.family("resnet").assign(resnet50_layers())
    with pytest.raises(FreezeError, match=rf'freeze.depth = {depth}: .* has 4 stages; use 0..4 or "all"'):
        freeze_policy.plan(layers, depth, "frozen")


@pytest.mark.parametrize("depth", [-1, True, "some", 1.5])
def test_depth_must_be_a_count_or_all(depth: Any) -> None:
    with pytest.raises(FreezeError, match="freeze.depth: expected"):
        freeze_policy.plan(catalog.family("resnet").assign(resnet50_layers()), depth, "frozen")


def test_unknown_batchnorm_policy_is_an_error() -> None:
    with pytest.raises(FreezeError, match="freeze.batchnorm"):
        freeze_policy.plan(catalog.family("resnet").assign(resnet50_layers()), 0, "sometimes")


def test_build_map_document() -> None:
    head = freeze_policy.standard_head(2048, 100, dropout=0.2)
    doc = freeze_policy.build_map(resnet50_description(), 2, "frozen", head_layers=head)
    assert [s["name"] for s in doc["stages"]] == ["input", "stem+conv2", "conv3", "conv4", "conv5", "head"]
    assert doc["num_stages"] == 4 and doc["depth"] == 2 and doc["batchnorm"] == "frozen"
    rows = doc["layers"]
    assert rows[0]["name"] == "image" and rows[0]["stage"] == "input" and not rows[0]["trainable"]
    assert [r["name"] for r in rows[-4:]] == ["avg_pool", "dropout", "logits", "predictions"]
    assert all(r["trainable"] and r["stage"] == "head" for r in rows[-4:])
    assert rows[-2]["params"] == 2049 * 100
    for r in rows:
        assert set(r) >= {"name", "type", "stage", "trainable", "params", "output_shape", "bn_inference"}
        assert r["bn_inference"] == (r["type"] == "BatchNormalization" and not r["trainable"])
    by_stage = {s["name"]: s for s in doc["stages"]}
    assert by_stage["conv3"]["trainable"] == 0 and by_stage["conv3"]["frozen_by_depth"]
    assert by_stage["conv4"]["frozen"] == 19 and not by_stage["conv4"]["frozen_by_depth"]  # its BatchNorms
    t = doc["totals"]
    for key in ("layers", "frozen", "trainable", "params", "trainable_params", "frozen_params", "bn_inference"):
        assert t[key] == sum(s[key] for s in doc["stages"]), key
    assert t["params"] == t["trainable_params"] + t["frozen_params"]
    # trainable BatchNorm trains gamma/beta only: its moving statistics count as frozen
    nb = freeze_policy.build_map(resnet50_description(), 0, "trainable")
    assert nb["totals"]["trainable_params"] == nb["totals"]["params"] - 2 * 53


def test_build_map_rejects_a_depth_the_backbone_lacks() -> None:
    with pytest.raises(FreezeError, match="resnet50"):
        freeze_policy.build_map(resnet50_description(), 5, "frozen")


def _preset(**freeze: Any) -> presets.Preset:
    return presets.from_dict(
        {"name": "p", "data": {"source": "tfds:cifar10"}, "model": {"backbone": "resnet50"}, "freeze": freeze}
    )


def test_preflight_rejects_a_depth_beyond_the_backbones_stages() -> None:
    assert not preflight.freeze_depth_errors(_preset(depth=4), "p.toml")
    (issue,) = preflight.freeze_depth_errors(_preset(depth=5), "p.toml")
    assert str(issue) == 'p.toml: freeze.depth: resnet50 has 4 stages, got depth 5; use 0..4 or "all"'
    swept = presets.from_dict(
        {
            "name": "p",
            "data": {"source": "tfds:cifar10"},
            "model": {"backbone": "vgg16"},
            "sweep": {"freeze.depth": [0, 5, 6]},
        }
    )
    issues = preflight.freeze_depth_errors(swept, "p.toml")
    assert [i.field for i in issues] == ["sweep.freeze.depth"]
    assert "vgg16 has 5 stages, got depth 6" in issues[0].message
    assert preflight.check(_preset(depth=9), "p.toml").errors


def test_fully_frozen_backbone_gets_no_fine_tuning_learning_rate_warning() -> None:
    def warnings(depth: Any) -> list[str]:
        p = presets.from_dict(
            {
                "name": "p",
                "data": {"source": "tfds:cifar10"},
                "model": {"backbone": "resnet50"},
                "freeze": {"depth": depth},
                "train": {"optimizer": "adam", "learning_rate": 0.01},
            }
        )
        return [w for w in preflight.recipe_warnings(p) if "learning_rate" in w]

    assert warnings(2) and not warnings(4) and not warnings("all")


def test_validating_on_the_test_split_is_warned_about() -> None:
    def warnings(**data: Any) -> list[str]:
        p = presets.from_dict(
            {"name": "p", "data": {"source": "tfds:cifar10", **data}, "model": {"backbone": "resnet50"}}
        )
        return [w for w in preflight.recipe_warnings(p) if "test set" in w]

    assert not warnings()  # train[:90%] / train[90%:] / test
    (w,) = warnings(val_split="test")
    assert w.startswith("data.val_split = data.test_split = 'test': early stopping")
    assert not warnings(val_split="test", test_split="")  # no final test evaluation: nothing to mislead


def test_a_frozen_hub_module_gets_no_batchnorm_drift_warning() -> None:
    def drift(backbone: str) -> bool:
        p = presets.from_dict(
            {
                "name": "p",
                "data": {"source": "tfds:cifar10"},
                "model": {"backbone": backbone},
                "freeze": {"depth": "all", "batchnorm": "trainable"},
            }
        )
        return any("statistics drift" in w for w in preflight.recipe_warnings(p))

    assert drift("resnet50")
    assert not drift("hub:https://tfhub.dev/google/imagenet/resnet_v2_50/feature_vector/5")
