"""The frozen-backbone feature cache: when it applies, that it trains the classifier's own head,
and one real worker run that uses it (events, freeze map, complete model.keras and checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.xdist_group("feature_cache")

keras = pytest.importorskip("keras")

from tltui.commands import main as cli  # noqa: E402
from tltui.core import presets
from tltui.worker import feature_cache  # noqa: E402
from tltui.worker import model as model_mod  # noqa: E402
from tltui.worker.freeze import apply_freeze  # noqa: E402


def make_preset(**over: object) -> presets.Preset:
    raw = {
        "name": "fc",
        "data": {"source": "folder:/x", "image_size": [16, 16], "batch_size": 4, "augment": False},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "freeze": {"depth": "all", "batchnorm": "frozen"},
        "train": {"epochs": 2},
    }
    return presets.from_dict(raw, overrides=over)


def built(preset: presets.Preset, num_classes: int = 3):
    model, backbone = model_mod.build_classifier(preset, num_classes)
    spec = model_mod.backbone_spec(preset)
    apply_freeze(model, backbone, spec.family, preset.freeze.depth, preset.freeze.batchnorm)
    return model, backbone, spec.family


def decide(preset: presets.Preset, n: int | None = 100) -> feature_cache.Plan:
    model, backbone, family = built(preset)
    return feature_cache.plan(preset, model, backbone, family, n, 20)


def test_used_only_when_nothing_before_the_head_changes_during_training() -> None:
    on = decide(make_preset())
    assert on.use and "feature cache on" in on.reason
    cases = {
        "train.feature_cache": ('"off"', "off"),
        "data.augment": ("true", "data.augment"),
        "freeze.depth": ("1", "part of the backbone trains"),
        "freeze.batchnorm": ('"trainable"', "BatchNormalization"),
    }
    for key, (value, words) in cases.items():
        p = decide(make_preset(**{key: presets.parse_value(value)}))
        assert not p.use and words in p.reason, (key, p.reason)
    unknown = decide(make_preset(), n=None)
    assert not unknown.use and "unknown" in unknown.reason


def test_random_layers_inside_the_backbone_turn_it_off() -> None:
    preset = make_preset()
    model, backbone, family = built(preset)
    noisy = keras.Sequential([keras.layers.Dropout(0.2, name="block_drop")])
    assert feature_cache.plan(preset, model, backbone, family, 10, 2).use
    backbone_layers = [noisy]

    class Wrapper:  # a backbone-shaped object whose sublayers include a Dropout
        trainable_weights: list = []
        layers = backbone_layers

    p = feature_cache.plan(preset, model, Wrapper(), family, 10, 2)
    assert not p.use and "block_drop" in p.reason


def test_too_many_features_for_memory_turn_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feature_cache, "CACHE_LIMIT_BYTES", 1000)
    p = decide(make_preset(), n=100)  # 120 x 16 floats > 1000 bytes
    assert not p.use and "GiB" in p.reason


def test_head_trained_on_cached_features_is_the_classifiers_head() -> None:
    import tensorflow as tf

    preset = make_preset()
    model, _, _ = built(preset)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(12, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 3, size=(12,)).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    feats, labels = feature_cache.extract(model, ds)
    assert feats.shape == (12, 16) and feats.dtype == np.float32 and (labels == y).all()
    head = feature_cache.head_model(model)
    np.testing.assert_allclose(head(feats).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)
    # training the head moves the full model's Dense weights (shared layers)
    before = model.get_layer("logits").get_weights()[0].copy()
    head.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    head.fit(feats, labels, epochs=1, verbose=0)
    assert not np.allclose(before, model.get_layer("logits").get_weights()[0])
    np.testing.assert_allclose(head(feats).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)


def test_steps_per_execution_divides_the_epoch() -> None:
    # the head's stream is endless: Keras would run a whole execution past the epoch's last step
    assert [feature_cache.steps_per_execution(n) for n in (1, 5, 16, 32, 45, 17, 1407)] == [1, 5, 16, 16, 15, 1, 7]


def _folder(root: Path) -> Path:
    from PIL import Image

    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 210)}
    for name, rgb in colours.items():
        (root / name).mkdir(parents=True)
        for i in range(8):
            shade = tuple(max(0, min(255, c + 5 * i - 20)) for c in rgb)
            Image.new("RGB", (16, 16), shade).save(root / name / f"{i}.png")
    return root


@pytest.mark.e2e
def test_worker_run_uses_the_cache_and_exports_a_complete_classifier(ws, tmp_path: Path) -> None:
    data = _folder(tmp_path / "data")
    preset = tmp_path / "fc.toml"
    preset.write_text(
        f'name = "fc"\n[data]\nsource = "folder:{data}"\nimage_size = [16, 16]\nbatch_size = 4\naugment = false\n'
        '[model]\nbackbone = "tiny_cnn"\nweights = "none"\n[freeze]\ndepth = "all"\n'
        "[train]\nepochs = 2\ncheckpoint_every = 1\nlearning_rate = 0.05\n"
    )
    assert cli.main(["--workspace", str(ws.root), "run", str(preset), "--plain"]) == 0
    (rec,) = ws.list_runs()
    paths = ws.run_paths(rec.id)
    events = [json.loads(line) for line in paths.events.read_text().splitlines()]
    model_ev = next(e for e in events if e["type"] == "model")
    assert model_ev["feature_cache"] is True
    assert any(e["type"] == "phase" and e["name"] == "features" for e in events)
    assert any(e["type"] == "log" and "feature cache on" in e["message"] for e in events)
    assert events[-1]["type"] == "finished" and events[-1]["status"] == "completed"
    assert json.loads(paths.freeze_map.read_text())["feature_cache"] is True

    full = keras.models.load_model(paths.model, compile=False)
    assert full.get_layer("backbone") is not None
    probs = full.predict(np.full((2, 16, 16, 3), 128.0, "float32"), verbose=0)
    assert probs.shape == (2, 3) and probs.dtype == np.float32
    kept = events[-1]["model_epoch"]  # the best val_acc epoch: model.keras holds its weights (train.restore_best)
    ckpt = keras.models.load_model(paths.checkpoints / f"epoch-{kept:04d}.keras", compile=False)
    assert ckpt.get_layer("backbone") is not None
    for a, b in zip(ckpt.get_layer("logits").get_weights(), full.get_layer("logits").get_weights(), strict=True):
        np.testing.assert_allclose(a, b)


@pytest.mark.e2e
def test_cached_and_uncached_runs_train_the_same_epochs(tmp_path: Path) -> None:
    """Same batches in the same order, same number of optimizer steps, same schedule: the cache
    only skips recomputing the frozen backbone (review: they used to diverge from epoch 2)."""
    from tltui.worker import train

    data = _folder(tmp_path / "data")
    histories = {}
    for mode in ("auto", "off"):
        preset = presets.from_dict(
            {
                "name": "fc",
                "data": {
                    "source": f"folder:{data}",
                    "image_size": [16, 16],
                    "batch_size": 5,
                    "augment": False,
                    "validation_fraction": 0.25,
                },
                "model": {"backbone": "tiny_cnn", "weights": "none", "dropout": 0.0},
                "freeze": {"depth": "all"},
                "train": {
                    "epochs": 3,
                    "checkpoint_every": 0,
                    "learning_rate": 0.05,
                    "lr_schedule": "cosine",
                    "feature_cache": mode,
                },
            }
        )
        run_dir = tmp_path / mode
        run_dir.mkdir()
        (run_dir / "preset.toml").write_text(presets.dumps(preset))
        assert train.main([str(run_dir)]) == 0
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        assert next(e for e in events if e["type"] == "model")["feature_cache"] is (mode == "auto")
        histories[mode] = [(e["metrics"], e["lr"]) for e in events if e["type"] == "epoch_end"]
    assert len(histories["auto"]) == 3
    for (m_auto, lr_auto), (m_off, lr_off) in zip(histories["auto"], histories["off"], strict=True):
        assert lr_auto == pytest.approx(lr_off, rel=1e-6)
        for k in m_off:
            assert m_auto[k] == pytest.approx(m_off[k], rel=1e-4, abs=1e-5), k
