"""HubModule in a Keras 3 model, in process: freezing, BatchNorm mode, checks, saving, resolving.

Uses the tiny SavedModels of ``tests/hub_models.py``; no network (``tensorflow_hub.resolve``
is replaced where a URL handle is exercised).
"""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("hub_tf")]

tf = pytest.importorskip("tensorflow")

import hub_models as hm  # noqa: E402

from tltui.core import hubcache, presets  # noqa: E402
from tltui.worker import hub  # noqa: E402
from tltui.worker.model import ModelError, backbone_spec, build_classifier  # noqa: E402


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub_models")
    return {
        "callable": hm.save_callable(root / "callable"),
        "bn": hm.save_batchnorm(root / "bn"),
        "sig16": hm.save_signature(root / "sig16", size=16),
        "feature_map": hm.save_feature_map(root / "feature_map"),
    }


def make_preset(backbone: str, depth: int | str = "all", batchnorm: str = "frozen", **model: object) -> presets.Preset:
    return presets.from_dict(
        {
            "name": "hub-test",
            "data": {"source": "folder:/nowhere", "image_size": [16, 16]},
            "model": {"backbone": f"hub:{backbone}", **model},
            "freeze": {"depth": depth, "batchnorm": batchnorm},
        }
    )


def data(n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.random((n, 20, 24, 3)) * 255).astype("float32"), np.arange(n) % 2


def module_values(model) -> dict[str, np.ndarray]:
    return {v.name: v.numpy().copy() for v in hub.find_hub_layer(model).weights}


def train(preset: presets.Preset):
    model, backbone = build_classifier(preset, 2)
    doc = hub.hub_freeze_map(model, backbone, preset)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = module_values(model)
    x, y = data()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    after = module_values(model)
    changed = {k: not np.allclose(before[k], after[k]) for k in before}
    return model, doc, changed


def test_frozen_module_keeps_every_variable(saved: dict[str, Path]) -> None:
    model, doc, changed = train(make_preset(str(saved["bn"]), depth="all"))
    assert changed == {"kernel": False, "bias": False, "moving_mean": False}
    assert hub.find_hub_layer(model).trainable is False
    assert doc["family"] == "hub" and [s["name"] for s in doc["stages"]] == ["input", "hub_module", "head"]
    row = next(r for r in doc["layers"] if r["name"] == "hub_module")
    assert (row["trainable"], row["params"], row["variables"]) == (False, 3 * 8 + 8 + 3, 3)
    assert doc["hub"]["state"] == "frozen" and doc["hub"]["batchnorm_inside"] == "inference mode"
    assert doc["totals"]["trainable_params"] == 8 * 2 + 2  # the Dense head only
    assert {w.name for w in model.trainable_weights} == {"kernel", "bias"} and len(model.trainable_weights) == 2


def test_fine_tuning_with_frozen_batchnorm_trains_weights_not_statistics(saved: dict[str, Path]) -> None:
    model, doc, changed = train(make_preset(str(saved["bn"]), depth=0, batchnorm="frozen"))
    assert changed == {"kernel": True, "bias": True, "moving_mean": False}
    assert doc["hub"] == doc["hub"] | {
        "state": "trainable",
        "batchnorm_inside": "inference mode",
        "trainable_variables": 2,
    }
    assert doc["totals"]["trainable_params"] == (3 * 8 + 8) + (8 * 2 + 2)


def test_fine_tuning_with_trainable_batchnorm_updates_statistics(saved: dict[str, Path]) -> None:
    model, doc, changed = train(make_preset(str(saved["bn"]), depth=0, batchnorm="trainable"))
    assert changed == {"kernel": True, "bias": True, "moving_mean": True}
    assert doc["hub"]["batchnorm_inside"] == "follows training (statistics update)"
    # inference uses the moving statistics: same input, same output, and they do not move
    x, _ = data(4)
    mm = module_values(model)["moving_mean"]
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_array_equal(module_values(model)["moving_mean"], mm)


def test_any_positive_depth_freezes_the_single_stage(saved: dict[str, Path]) -> None:
    _model, _doc, changed = train(make_preset(str(saved["callable"]), depth=1))
    assert changed == {"kernel": False, "bias": False}
    with pytest.raises(Exception, match="has 1 stages"):
        train(make_preset(str(saved["callable"]), depth=2))


def test_signature_module_trains_frozen(saved: dict[str, Path]) -> None:
    model, doc, changed = train(make_preset(str(saved["sig16"]), hub_output_dim=8))
    assert changed == {"kernel": False, "bias": False}
    assert doc["hub"]["endpoint"] == "serving_default"
    assert doc["hub"]["batchnorm_inside"].startswith("fixed")


def test_spec_and_errors_before_training(saved: dict[str, Path], tmp_path: Path) -> None:
    assert backbone_spec(make_preset(str(saved["callable"]))).family == "hub"
    bad_size = make_preset(str(saved["sig16"])).model_copy(
        update={"data": make_preset(str(saved["sig16"])).data.model_copy(update={"image_size": [32, 32]})}
    )
    with pytest.raises(ModelError) as e:
        build_classifier(bad_size, 2)
    assert "data.image_size = [32, 32]" in str(e.value) and "set data.image_size = [16, 16]" in str(e.value)
    with pytest.raises(ModelError, match=r"model.hub_output_dim = 2048 but hub:.* outputs 8 features; set it to 8"):
        build_classifier(make_preset(str(saved["callable"]), hub_output_dim=2048), 2)
    with pytest.raises(ModelError, match=r"outputs shape \(1, 16, 16, 3\), not a feature vector"):
        build_classifier(make_preset(str(saved["feature_map"])), 2)
    with pytest.raises(ModelError, match="no such folder"):
        build_classifier(make_preset(str(tmp_path / "missing")), 2)
    with pytest.raises(ModelError, match="brings its own weights"):
        build_classifier(make_preset(str(saved["callable"]), weights="none"), 2)


def test_keras_file_embeds_the_module(saved: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    import keras

    own = tmp_path / "own_copy"
    shutil.copytree(saved["bn"], own)
    model, _doc, _ = train(make_preset(str(own), depth=0, batchnorm="trainable"))
    model.save(tmp_path / "model.keras")
    shutil.rmtree(own)  # the saved run must not need the module's folder
    import zipfile

    names = zipfile.ZipFile(tmp_path / "model.keras").namelist()
    assert any(n.endswith("saved_model/saved_model.pb") for n in names), names
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    x, _ = data(4)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert hub.find_hub_layer(loaded).get_config()["batchnorm"] == "trainable"
    loaded.save(tmp_path / "again.keras")  # a reloaded model saves again (checkpoints after resume)
    again = keras.models.load_model(tmp_path / "again.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_weights_file_round_trip_restores_fine_tuned_module(saved: dict[str, Path], tmp_path: Path) -> None:
    preset = make_preset(str(saved["bn"]), depth=0, batchnorm="trainable")
    model, _doc, _ = train(preset)
    model.save_weights(tmp_path / "w.weights.h5")
    fresh, _ = build_classifier(preset, 2)
    assert not np.allclose(module_values(fresh)["kernel"], module_values(model)["kernel"])
    fresh.load_weights(tmp_path / "w.weights.h5")
    for k, v in module_values(model).items():
        np.testing.assert_array_equal(module_values(fresh)[k], v)


# --------------------------------------------------------------------------- resolving handles


def test_cache_folder_naming_matches_tensorflow_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorflow_hub import compressed_module_resolver

    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    url = "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5"
    theirs = compressed_module_resolver._module_dir(url)
    assert Path(theirs) == hubcache.module_folder(tmp_path, hubcache.parse(url))


def test_tfhub_url_half_deleted_cache_is_refetched(
    saved: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import tensorflow_hub

    url = "https://tfhub.dev/google/tiny/feature_vector/1"
    handle = hubcache.parse(url)
    cache = tmp_path / "tfhub"
    folder = hubcache.module_folder(cache, handle)
    (folder / "variables").mkdir(parents=True)  # saved_model.pb is gone
    calls = []

    def fake_resolve(h: str) -> str:  # what tensorflow_hub does: use the folder if it is non-empty
        calls.append((h, folder.exists()))
        import os

        assert os.environ["TFHUB_CACHE_DIR"] == str(cache)
        if not folder.exists():
            shutil.copytree(saved["callable"], folder)
        return str(folder)

    monkeypatch.setattr(tensorflow_hub, "resolve", fake_resolve)
    assert hub.resolve(handle, cache) == folder
    assert calls == [(url, False)]  # the broken folder was removed before resolving
    assert hubcache.is_saved_model(folder)


def test_tfhub_url_offline_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import tensorflow_hub

    def offline(h: str) -> str:
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(tensorflow_hub, "resolve", offline)
    preset = make_preset("https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5")
    with pytest.raises(ModelError) as e:
        build_classifier(preset, 2, runs_dir=tmp_path / "ws" / "runs")
    msg = str(e.value)
    assert "\n" not in msg
    assert "cannot download (Temporary failure in name resolution)" in msg
    assert "`tltui hub fetch https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5`" in msg
    assert str(tmp_path / "ws" / "cache" / "tfhub") in msg  # the workspace cache, not the temp dir


def test_tfhub_url_whose_cache_lost_its_graph_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow_hub

    broken = tmp_path / "elsewhere"
    (broken / "variables").mkdir(parents=True)
    monkeypatch.setattr(tensorflow_hub, "resolve", lambda h: str(broken))
    with pytest.raises(hubcache.HubError, match=f"delete {broken} and run `tltui hub fetch"):
        hub.resolve(hubcache.parse("https://tfhub.dev/x/y/1"), tmp_path / "cache")


def test_hub_fetch_job_from_a_file_url_tarball(
    saved: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tgz = hm.make_tarball(saved["sig16"], tmp_path / "sig.tar.gz")
    cache = tmp_path / "cache"
    assert hub.main([tgz.as_uri(), "--cache", str(cache)]) == 0
    info = json.loads(capsys.readouterr().out)
    folder = hubcache.module_folder(cache, hubcache.parse(tgz.as_uri()))
    assert info["path"] == str(folder)
    assert (info["endpoint"], info["input_size"], info["output_dim"]) == ("serving_default", [16, 16], 8)
    assert (info["variables"], info["trainable_variables"], info["params"]) == (2, 2, 3 * 8 + 8)
    # a second fetch is served from the cache: the archive is no longer needed
    tgz.unlink()
    assert hub.main([tgz.as_uri(), "--cache", str(cache)]) == 0
    capsys.readouterr()


def test_hub_fetch_job_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    def offline(url, timeout):
        assert timeout == 0.5
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(hubcache.urllib.request, "urlopen", offline)
    assert hub.main(["https://models.example.org/m.tar.gz", "--cache", str(tmp_path), "--timeout", "0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: hub:https://models.example.org/m.tar.gz: cannot download (Temporary failure")
    assert "\n" not in err


def test_regularization_losses_count_only_while_fine_tuning(saved: dict[str, Path]) -> None:
    x, _ = data(2)
    for depth, expected in (("all", 0), (0, 1)):
        preset = make_preset(str(saved["callable"]), depth=depth)
        model, backbone = build_classifier(preset, 2)
        hub.hub_freeze_map(model, backbone, preset)
        model(x, training=True)
        kernel = hub.find_hub_layer(model).weights[0 if "kernel" in hub.find_hub_layer(model).weights[0].name else 1]
        assert len(model.losses) == expected, depth
        if expected:
            np.testing.assert_allclose(float(model.losses[0]), 0.01 * float(np.sum(kernel.numpy() ** 2)), rtol=1e-5)
        model(x, training=False)
        assert len(model.losses) == 0
