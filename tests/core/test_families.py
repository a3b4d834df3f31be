"""The backbone-family registry (``catalog.FAMILIES``): one record per family, read by the stage
maps, preflight, the worker; README.md's stage table must say what the registry says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tltui.core import catalog, freeze_policy, preflight, stages
from tltui.core.catalog import BackboneSpec, Family, Variant
from tltui.core.stages import LayerInfo, StageError

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE_HEADER = "| family (backbones) | stages |"


def readme_rows() -> list[tuple[str, str, list[str] | None, list[str], str]]:
    """README's stage table as (family, variant, backbones or None, stages, the line) rows."""
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
        assert fam.num_stages == stages.num_stages(spec.family) == len(fam.stages) >= 2, spec.name
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


def test_only_mobilenets_take_alpha() -> None:
    assert sorted(n for n, f in catalog.FAMILIES.items() if f.alpha) == ["mobilenet_v2", "mobilenet_v3"]


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
    ],
)
def test_a_malformed_family_fails_when_defined(kwargs: dict[str, object]) -> None:
    kwargs = {"stages": ("a",), **kwargs} if "variants" not in kwargs else kwargs
    with pytest.raises(ValueError, match="family toy"):
        Family("toy", **kwargs)  # type: ignore[arg-type]


def test_adding_a_family_is_one_record_and_its_backbones(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe of CONTRIBUTING.md: a record in FAMILIES, a spec in BACKBONES; nothing else in core."""
    toy = Family("toy", ("low", "high"), stages.blocks("blk", [(1,), (2,)], ("low", "high")), preprocess="tf")
    monkeypatch.setitem(catalog.FAMILIES, "toy", toy)
    monkeypatch.setitem(catalog.BACKBONES, "toy_net", BackboneSpec("toy_net", "toy", "ToyNet", "toy", 64, 32))
    assert catalog.BACKBONES["toy_net"].preprocess == "tf"
    layers = [LayerInfo(n, "Conv2D", 1, None, True) for n in ("input_layer", "blk1_conv", "add_3", "blk2_conv")]
    assert [l.stage for l in stages.assign("toy", layers)] == ["low", "low", "low", "high"]
    assert freeze_policy.num_stages("toy") == preflight.backbone_stages("toy_net") == 2
