"""Stage maps per backbone family, over layer descriptions (no TensorFlow)."""

from __future__ import annotations

import pytest

from tltui.core import catalog, freeze_policy, stages
from tltui.core.stages import LayerInfo, StageError


def L(name: str, type_: str = "Conv2D", params: int = 10) -> LayerInfo:  # noqa: N802
    return LayerInfo(name, type_, params if type_ not in ("Activation", "Add", "InputLayer") else 0, None, True)


def stage_of(layers: list[LayerInfo]) -> dict[str, str]:
    return {l.name: l.stage for l in layers}


def test_every_catalog_family_has_a_stage_map() -> None:
    for spec in [*catalog.BACKBONES.values(), *catalog.TEST_BACKBONES.values()]:
        assert catalog.family(spec.family).num_stages >= 2, spec.name
    assert catalog.family("hub").num_stages == 1


def test_resnet_stem_joins_conv2_and_auto_named_layers_follow_the_layer_before() -> None:
    layers = [
        L("input_layer_3", "InputLayer"),
        L("conv1_conv"),
        L("conv1_bn", "BatchNormalization"),
        L("pool1_pool", "MaxPooling2D"),
        L("conv2_block1_1_conv"),
        L("conv2_block1_out", "Activation"),
        L("conv3_block1_1_conv"),
        L("max_pooling2d_7", "MaxPooling2D"),  # ResNetV2's unnamed shortcut pool
        L("conv4_block1_1_conv"),
        L("conv5_block1_1_conv"),
        L("post_bn", "BatchNormalization"),
        L("post_relu", "Activation"),
    ]
    got = stage_of(catalog.family("resnet_v2").assign(layers))
    assert got["input_layer_3"] == got["conv1_conv"] == got["pool1_pool"] == got["conv2_block1_out"] == "stem+conv2"
    assert got["max_pooling2d_7"] == "conv3"
    assert got["post_bn"] == got["post_relu"] == "conv5"
    assert catalog.family("resnet").stage_names(layers) == ("stem+conv2", "conv3", "conv4", "conv5")


def test_the_notebooks_res_names_match_nothing() -> None:
    """The seed matched 'res5' in names: no Keras ResNet layer is named like that."""
    layers = [
        L("conv1_conv"),
        L("conv2_block1_1_conv"),
        L("conv3_block1_1_conv"),
        L("conv4_block1_1_conv"),
        L("conv5_block1_1_conv"),
        L("res5a_branch2a"),
    ]
    with pytest.raises(StageError, match="res5a_branch2a"):
        catalog.family("resnet").assign(layers)


def test_a_stage_without_layers_is_an_error() -> None:
    layers = [L("conv1_conv"), L("conv2_block1_1_conv"), L("conv3_block1_1_conv"), L("conv4_block1_1_conv")]
    with pytest.raises(StageError, match="conv5"):
        catalog.family("resnet").assign(layers)


def test_unknown_family_is_an_error() -> None:
    with pytest.raises(StageError, match="unknown backbone family"):
        catalog.family("alexnet").assign([L("conv1")])
    with pytest.raises(StageError):
        freeze_policy.num_stages("alexnet")


def test_mobilenet_v2_groups_blocks_by_resolution() -> None:
    names = ["Conv1", "bn_Conv1", "Conv1_relu", "expanded_conv_depthwise", "expanded_conv_project"]
    names += [f"block_{i}_expand" for i in range(1, 17)] + ["Conv_1", "Conv_1_bn", "out_relu"]
    got = stage_of(catalog.family("mobilenet_v2").assign([L(n) for n in names]))
    assert got["Conv1"] == got["expanded_conv_project"] == got["block_2_expand"] == "stem+block_1-2"
    assert got["block_3_expand"] == got["block_5_expand"] == "block_3-5"
    assert got["block_6_expand"] == got["block_12_expand"] == "block_6-12"
    assert got["block_13_expand"] == got["Conv_1_bn"] == got["out_relu"] == "block_13-16+top"


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        (10, {0: "stem+block_0", 1: "block_1-2", 2: "block_1-2", 3: "block_3-7", 8: "block_8-10+top"}),
        (14, {0: "stem+block_0-2", 2: "stem+block_0-2", 3: "block_3-5", 6: "block_6-11", 12: "block_12-14+top"}),
    ],
)
def test_mobilenet_v3_small_and_large_differ(last: int, expected: dict[int, str]) -> None:
    names = ["rescaling_2", "conv", "conv_bn", "activation_3", "expanded_conv_depthwise", "re_lu_4"]
    names += [f"expanded_conv_{i}_expand" for i in range(1, last + 1)] + ["conv_1", "conv_1_bn", "activation_9"]
    got = stage_of(catalog.family("mobilenet_v3").assign([L(n) for n in names]))
    assert got["rescaling_2"] == got["conv_bn"] == got["re_lu_4"] == got["expanded_conv_depthwise"] == expected[0]
    for block, stage in expected.items():
        if block:
            assert got[f"expanded_conv_{block}_expand"] == stage
    assert got["activation_9"] == got["conv_1_bn"] == got[f"expanded_conv_{last}_expand"]


def test_efficientnet_stages_follow_names_not_order() -> None:
    # keras orders block2a's expand conv after block1b: names decide, not order
    names = [
        "rescaling",
        "normalization",
        "stem_conv",
        "block1a_dwconv",
        "block1b_dwconv",
        "block2a_expand_conv",
        "block3a_expand_conv",
        "block4a_expand_conv",
        "block5c_add",
        "block6a_expand_conv",
        "block7a_project_bn",
        "top_conv",
        "top_activation",
    ]
    got = stage_of(catalog.family("efficientnet").assign([L(n) for n in names]))
    assert got["normalization"] == got["block2a_expand_conv"] == "stem+block1-2"
    assert got["block3a_expand_conv"] == "block3"
    assert got["block5c_add"] == "block4-5"
    assert got["top_activation"] == got["block7a_project_bn"] == "block6-7+top"


def test_convnext_names_follow_the_model_name() -> None:
    for prefix in ("convnext_tiny", "backbone"):
        names = [f"{prefix}_prestem_normalization", f"{prefix}_stem", f"{prefix}_stage_0_block_0_depthwise_conv"]
        for i in range(3):
            names += [f"{prefix}_downsampling_block_{i}", f"{prefix}_stage_{i + 1}_block_0_depthwise_conv"]
        names += ["layer_normalization_4"]
        got = stage_of(catalog.family("convnext").assign([L(n) for n in names]))
        assert got[f"{prefix}_stem"] == "stem+stage_0"
        assert got[f"{prefix}_downsampling_block_0"] == got[f"{prefix}_stage_1_block_0_depthwise_conv"] == "stage_1"
        assert got["layer_normalization_4"] == "stage_3"


def test_xception_flows_and_unnamed_shortcuts() -> None:
    names = []
    for b in range(1, 15):
        names += [f"block{b}_sepconv1", f"block{b}_sepconv1_bn"]
        if b in (2, 3, 4, 13):
            names += [f"conv2d_{90 + b}", f"block{b}_pool", f"batch_normalization_{90 + b}", f"add_{b}"]
    got = stage_of(catalog.family("xception").assign([L(n) for n in names]))
    assert got["add_4"] == got["conv2d_94"] == "entry_flow"
    assert got["block5_sepconv1"] == got["block12_sepconv1_bn"] == "middle_flow"
    assert got["conv2d_103"] == got["block14_sepconv1"] == "exit_flow"


def _inception_layers() -> list[LayerInfo]:
    """InceptionV3-like model order: process-global names, stages only from order."""
    out = [
        L("input_layer_9", "InputLayer"),
        L("conv2d_40"),
        L("max_pooling2d_3", "MaxPooling2D"),
        L("conv2d_41"),
        L("max_pooling2d_4", "MaxPooling2D"),
    ]
    n = 42
    for k in range(11):
        out += [L(f"conv2d_{n}"), L(f"batch_normalization_{n}", "BatchNormalization")]
        if k in (3, 8):
            out.append(L(f"max_pooling2d_{n}", "MaxPooling2D"))
        if k == 9:
            out += [L("mixed9_0", "Concatenate"), L("concatenate_5", "Concatenate")]
        out.append(L(f"mixed{k}", "Concatenate"))
        n += 1
    return out


def test_inception_stages_come_from_model_order() -> None:
    got = catalog.family("inception_v3").assign(_inception_layers())
    by = stage_of(got)
    assert by["max_pooling2d_4"] == "stem"
    assert by["conv2d_42"] == by["mixed2"] == "mixed0-2"
    assert by["conv2d_45"] == by["max_pooling2d_45"] == by["mixed7"] == "mixed3-7"
    assert by["mixed9_0"] == by["concatenate_5"] == by["mixed10"] == "mixed8-10"
    # the names' numbers mean nothing: renumbering gives the same stages
    renamed = [
        LayerInfo(l.name.replace("conv2d_", "conv2d_9"), l.type, l.params, None, True) for l in _inception_layers()
    ]
    assert [l.stage for l in catalog.family("inception_v3").assign(renamed)] == [l.stage for l in got]


def test_inception_layers_after_the_last_block_are_an_error() -> None:
    with pytest.raises(StageError, match="after the last mixedK"):
        catalog.family("inception_v3").assign([*_inception_layers(), L("conv2d_999")])


def test_hub_is_one_opaque_stage() -> None:
    got = catalog.family("hub").assign([L("keras_layer", "KerasLayer", 100)])
    assert [l.stage for l in got] == [stages.HUB_STAGE]
    assert catalog.family("hub").stage_names(got) == (stages.HUB_STAGE,)


def test_layer_info_round_trips_through_dict() -> None:
    info = LayerInfo("conv1_bn", "BatchNormalization", 256, (None, 56, 56, 64), True, "stem+conv2", 128)
    assert LayerInfo.from_dict(info.to_dict()) == info
    assert info.is_batchnorm and info.weight_params == 128
