"""The classifier builder: preprocessing equals keras.applications', weights sources, contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tltui.core import presets  # noqa: E402
from tltui.core.catalog import BackboneSpec  # noqa: E402
from tltui.worker import model as M  # noqa: E402


def tiny(**overrides: object) -> presets.Preset:
    raw = {
        "name": "tiny",
        "data": {"source": "folder:/nowhere", "image_size": [16, 16]},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
    }
    return presets.from_dict(raw, overrides=overrides)


@pytest.mark.parametrize(("mode", "module"), [("caffe", "resnet50"), ("tf", "mobilenet_v2"), ("torch", "densenet")])
def test_preprocessing_layers_match_keras_applications(mode: str, module: str) -> None:
    spec = BackboneSpec("x", "x", "", module, 224, 32, mode)
    inp = keras.Input((None, None, 3))
    m = keras.Model(inp, M.add_preprocessing(inp, spec))
    x = np.random.RandomState(0).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    expected = getattr(keras.applications, module).preprocess_input(x.copy())
    np.testing.assert_allclose(m.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-4)


def test_every_family_has_a_builder_and_alpha_follows_the_family() -> None:
    from tltui.core import catalog

    for fam in catalog.FAMILIES.values():  # "hub": tltui.worker.hub builds the whole classifier
        assert fam.build in M.BUILDERS or fam.build == "hub", fam.name
        assert fam.preprocess in catalog.PREPROCESS_MODES
    spec = catalog.TEST_BACKBONES["tiny_cnn"]
    with pytest.raises(M.ModelError, match="only MobileNet backbones have a width multiplier"):
        M.build_backbone(spec, tiny(**{"model.alpha": 0.5}), imagenet=False)


def test_classifier_contract() -> None:
    model, backbone = M.build_classifier(tiny(**{"model.dropout": 0.2}), 4)
    assert backbone.name == "backbone" and model.get_layer("backbone") is backbone
    assert tuple(model.input.shape) == (None, None, None, 3)
    assert [l.name for l in backbone.layers[1:]] == [
        "block1_conv",
        "block1_bn",
        "block1_relu",
        "block2_conv",
        "block2_bn",
        "block2_relu",
    ]
    names = [l.name for l in model.layers]
    assert names[-4:] == ["avg_pool", "dropout", "logits", "predictions"]
    out = model.predict(np.zeros((3, 40, 30, 3), "float32"), verbose=0)  # any input size
    assert out.shape == (3, 4) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_weights_from_a_completed_run_and_from_a_file(tmp_path: Path) -> None:
    src, src_bb = M.build_classifier(tiny(), 3)
    run_dir = tmp_path / "runs" / "r0007"
    run_dir.mkdir(parents=True)
    src.save(run_dir / "model.keras")
    _, bb = M.build_classifier(tiny(**{"model.weights": "run:7"}), 5, runs_dir=tmp_path / "runs")
    for a, b in zip(src_bb.get_weights(), bb.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    wfile = tmp_path / "bb.weights.h5"
    src_bb.save_weights(str(wfile))
    _, bb2 = M.build_classifier(tiny(**{"model.weights": str(wfile)}), 3)
    np.testing.assert_array_equal(src_bb.get_weights()[0], bb2.get_weights()[0])


def test_weights_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(M.ModelError, match="r0009/model.keras does not exist"):
        M.build_classifier(tiny(**{"model.weights": "run:r0009"}), 3, runs_dir=tmp_path)
    with pytest.raises(M.ModelError, match="does not exist"):
        M.build_classifier(tiny(**{"model.weights": str(tmp_path / "x.weights.h5")}), 3)
    with pytest.raises(M.ModelError, match="only MobileNet"):
        M.build_classifier(tiny(**{"model.alpha": 0.5}), 3)
    with pytest.raises(M.ModelError, match="at least 2"):
        M.build_classifier(tiny(), 1)
