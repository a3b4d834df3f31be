"""The backbone-family registry (``catalog.FAMILIES``): one record per family, read by the stage
maps, preflight, the worker; the stage table of docs/guide/freeze.md must say what the registry says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tltui.core import catalog, freeze_policy, preflight, stages
from tltui.core.catalog import BackboneSpec, Family, Variant
from tltui.core.stages import LayerInfo, StageError

README = Path(__file__).resolve().parents[2] / "docs" / "guide" / "freeze.md"
TABLE_HEADER = "| family (backbones) | stages |"


def readme_rows() -> list[tuple[str, str, list[str] | None, list[str], str]]:
    """The freeze guide's stage table as (family, variant, backbones or None, stages, the line) rows."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(TABLE_HEADER) + 2  # skip the |---|---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        first, second = (c.strip() for c in line.strip().strip("|").split("|"))
        m = re.fullmatch(r"(\w+)(?: (\w+))?(?: \((.*)\))?", first)
        assert m, f"README stage table: cannot read {first!r}"
        backbones = [b.strip().strip("`") for b in m.group(3).split(",")] if m.group(3) else None
        # a stage, then an optional "(annotation)"
        names = [re.sub(r"\s*\(.*\)$", "", s.strip()).strip("`") for s in second.split(" · ")]
        rows.append((m.group(1), m.group(2) or "", backbones, names, line))
    return rows


def documented_families() -> dict[str, Family]:
    """Every family but those only test backbones use."""
    test_only = {s.family for s in catalog.TEST_BACKBONES.values()} - {s.family for s in catalog.BACKBONES.values()}
    return {n: f for n, f in catalog.FAMILIES.items() if n not in test_only}


def test_the_readme_stage_table_is_the_registry() -> None:
    rows = readme_rows()
    assert sorted({r[0] for r in rows}) == sorted(documented_families()), "README families != catalog.FAMILIES"
    for name, fam in documented_families().items():
        mine = [r for r in rows if r[0] == name]
        if fam.variants:
            assert {r[1]: r[3] for r in mine} == {v.label: list(v.stages) for v in fam.variants}, name
        else:
            assert [(r[1], r[3]) for r in mine] == [("", list(fam.stages))], name
        expected = sorted(s.name for s in catalog.BACKBONES.values() if s.family == name)
        if expected:  # a row without "(backbones)" is the backbone of the family's name
            listed = sorted(b for r in mine for b in (r[2] if r[2] is not None else [name]))
            assert listed == expected, f"README lists {listed} for {name}, the catalog {expected}"
        text = " ".join(r[4] for r in mine)
        assert ("opaque" in text) is fam.opaque, name
        assert ("no feature cache" in text) is (not fam.feature_cache), name


def test_every_backbone_names_a_family_and_takes_its_preprocessing() -> None:
    for spec in [*catalog.BACKBONES.values(), *catalog.TEST_BACKBONES.values()]:
        fam = catalog.family(spec.family)
        assert spec.preprocess == fam.preprocess, spec.name
        assert fam.num_stages == freeze_policy.num_stages(spec.family) == len(fam.stages) >= 2, spec.name
        assert catalog.family_of(spec.name) is fam or spec.name in catalog.TEST_BACKBONES
    assert catalog.hub_spec("hub:/m", (96, 96)).preprocess == "none"


def test_hub_is_one_opaque_stage_without_feature_cache() -> None:
    hub = catalog.family_of("hub:https://tfhub.dev/x/1")
    assert hub is catalog.FAMILIES[catalog.HUB_FAMILY]
    assert hub.opaque and not hub.feature_cache and hub.stages == (stages.HUB_STAGE,)
    assert preflight.backbone_stages("hub:/anything") == 1
    assert catalog.family_of("alexnet") is None and preflight.backbone_stages("alexnet") is None
    with pytest.raises(StageError, match="unknown backbone family 'alexnet'"):
        catalog.family("alexnet")


def test_a_family_takes_alpha_exactly_when_its_weights_files_are_named_by_it() -> None:
    """Keras publishes a weights file per width multiplier; tests/worker/test_imagenet_weights.py checks
    each family's ``alpha`` against the Keras constructors and each file against what Keras requests."""
    with_weights = [s for s in catalog.BACKBONES.values() if s.weights is not None]
    assert with_weights
    for spec in with_weights:
        assert ("{alpha}" in spec.weights.origin) is catalog.family(spec.family).alpha, spec.name


@pytest.mark.parametrize(
    ("family", "layer", "block"),
    [
        ("resnet", "conv3_block2_1_conv", "conv3_block2"),
        ("resnet", "conv1_conv", None),
        ("resnet_v2", "conv5_block3_preact_bn", "conv5_block3"),
        ("densenet", "conv4_block12_0_bn", "conv4_block12"),
        ("mobilenet_v2", "block_13_expand", "block_13"),
        ("mobilenet_v2", "expanded_conv_project", "expanded_conv"),
        ("mobilenet_v2", "Conv_1", None),
        ("mobilenet_v3", "expanded_conv_3_expand", "expanded_conv_3"),
        ("mobilenet_v3", "expanded_conv/project", "expanded_conv"),
        ("efficientnet", "block2a_expand_conv", "block2a"),
        ("efficientnet_v2", "block6h_se_reduce", "block6h"),
        ("xception", "block13_sepconv1", "block13"),
        ("vgg", "block4_conv1", "block4"),
        ("convnext", "convnext_tiny_stage_1_block_2_depthwise_conv", "stage_1_block_2"),
        ("convnext", "convnext_tiny_downsampling_block_0", None),
        ("inception_v3", "mixed3", None),
        ("hub", "keras_layer", None),
        ("tiny", "block2_bn", "block2"),
    ],
)
def test_a_family_names_the_blocks_the_layer_map_groups_by(family: str, layer: str, block: str | None) -> None:
    assert catalog.family(family).block_of(layer) == block


def test_a_weights_file_is_named_as_keras_names_it() -> None:
    mnv2 = catalog.BACKBONES["mobilenet_v2"]
    base = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    assert catalog.imagenet_weights("mobilenet_v2", (96, 96), 0.35) == catalog.WeightsFile(name, base + name)
    # a side Keras has no file for, or a non-square input: the default size's file
    for size in ((100, 100), (96, 128)):
        wf = mnv2.imagenet_weights(size)
        assert wf is not None and wf.fname.endswith("_1.0_224_no_top.h5"), size
    assert catalog.imagenet_weights("tiny_cnn", (32, 32)) is None
    assert catalog.imagenet_weights("hub:https://tfhub.dev/x/1", (32, 32)) is None


@pytest.mark.parametrize(
    "weights",
    [
        {"origin": "https://example.org/toy_{rows}.h5"},  # only {alpha} and {side} are filled in
        {"origin": "https://example.org/toy_{side}.h5"},  # {side} without sides
        {"origin": "https://example.org/toy.h5", "sides": (64,)},  # sides without {side}
        {"origin": "https://example.org/toy.zip"},
    ],
)
def test_a_malformed_weights_file_fails_when_defined(weights: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="weights"):
        catalog.Weights(**weights)  # type: ignore[arg-type]


def test_a_backbone_s_weights_sides_hold_its_default_size() -> None:
    with pytest.raises(ValueError, match="backbone toy_net"):
        BackboneSpec(
            "toy_net", "tiny", "ToyNet", "toy", 224, 32, weights=catalog.Weights("https://e.org/{side}.h5", (96,))
        )


def test_a_variant_is_chosen_by_its_marker() -> None:
    mnv3 = catalog.family("mobilenet_v3")
    assert mnv3.stages == mnv3.variant([]).stages == next(v.stages for v in mnv3.variants if v.label == "small")
    large = [LayerInfo("expanded_conv_14_expand", "Conv2D", 1, None, True)]
    assert mnv3.variant(large).label == "large"


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # no way to assign stages
        {"rule": lambda n: "a", "opaque": True},  # two ways
        {"rule": lambda n: "a", "preprocess": "yolo"},
        {"opaque": True, "stages": ("a", "b")},
        {"variants": (Variant("x", ("a",), lambda n: "a", "m"),)},  # no unmarked fallback
        {"variants": (Variant("x", ("a",), lambda n: "a"), Variant("y", ("a", "b"), lambda n: "a", "m"))},
        {"rule": lambda n: "a", "block_pattern": r"^block\d+_"},  # no group to name the block
    ],
)
def test_a_malformed_family_fails_when_defined(kwargs: dict[str, object]) -> None:
    kwargs = {"stages": ("a",), **kwargs} if "variants" not in kwargs else kwargs
    with pytest.raises(ValueError, match="family toy"):
        Family("toy", **kwargs)  # type: ignore[arg-type]


def test_adding_a_family_is_one_record_and_its_backbones(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe of CONTRIBUTING.md: a record in FAMILIES, a spec in BACKBONES; nothing else in core."""
    rule = stages.blocks("blk", [(1,), (2,)], ("low", "high"))
    toy = Family("toy", ("low", "high"), rule, preprocess="tf", alpha=True, block_pattern=r"^(blk\d+)_")
    weights = catalog.Weights("https://example.org/toy_{alpha}_{side}_notop.h5", sides=(64, 128))
    monkeypatch.setitem(catalog.FAMILIES, "toy", toy)
    monkeypatch.setitem(
        catalog.BACKBONES, "toy_net", BackboneSpec("toy_net", "toy", "ToyNet", "toy", 64, 32, weights=weights)
    )
    assert catalog.BACKBONES["toy_net"].preprocess == "tf"
    layers = [LayerInfo(n, "Conv2D", 1, None, True) for n in ("input_layer", "blk1_conv", "add_3", "blk2_conv")]
    assert [l.stage for l in catalog.family("toy").assign(layers)] == ["low", "low", "low", "high"]
    assert freeze_policy.num_stages("toy") == preflight.backbone_stages("toy_net") == 2
    assert [toy.block_of(l.name) for l in layers] == [None, "blk1", None, "blk2"]
    assert catalog.imagenet_weights("toy_net", (128, 128), 0.5) == catalog.WeightsFile(
        "toy_0.5_128_notop.h5", "https://example.org/toy_0.5_128_notop.h5"
    )
