"""End to end: hub: backbones through the real training worker (``python -m tltui.worker train``).

A tiny SavedModel with BatchNorm-like state (``tests/hub_models.py``), a generated
two-class image folder, 2 epochs. Frozen runs keep the module's variables, fine-tuned
runs change them; a resumed run continues from its backup; the run's ``model.keras``
loads in safe mode without the hub cache, and ``tltui predict`` classifies with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("hub_e2e")]

tf = pytest.importorskip("tensorflow")

import hub_models as hm  # noqa: E402

from tltui.core import hubcache, presets, protocol  # noqa: E402
from tltui.core.workspace import Workspace  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from PIL import Image

    root = tmp_path_factory.mktemp("hub_e2e")
    saved = hm.save_batchnorm(root / "bn_module")
    tgz = hm.make_tarball(saved, root / "bn_module.tar.gz")
    rng = np.random.default_rng(1)
    images = root / "images"
    for cls, channel in (("red", 0), ("blue", 2)):
        (images / cls).mkdir(parents=True)
        for i in range(6):
            px = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
            px[..., channel] = rng.integers(170, 255, (16, 16), dtype=np.uint8)
            Image.fromarray(px).save(images / cls / f"{i}.png")
    return {"saved": saved, "tgz": tgz, "images": images}


def make_run(
    ws: Workspace, name: str, backbone: str, images: Path, depth: object, batchnorm: str, epochs: int = 2
) -> Path:
    preset = presets.from_dict(
        {
            "name": name,
            "data": {
                "source": f"folder:{images}",
                "image_size": [16, 16],
                "batch_size": 4,
                "augment": False,
                "validation_fraction": 0.34,
            },
            "model": {"backbone": backbone, "hub_output_dim": 8},
            "freeze": {"depth": depth, "batchnorm": batchnorm},
            "train": {"epochs": epochs, "optimizer": "sgd", "learning_rate": 0.5, "checkpoint_every": 1},
        }
    )
    rec = ws.create_runs([(name, presets.dumps(preset), {})], preset_name=name, epochs=[epochs], queued=False)[0]
    return ws.run_paths(rec.id).dir


def run_worker(run_dir: Path, *extra: str) -> list[protocol.Event]:
    proc = subprocess.run(
        [sys.executable, "-m", "tltui.worker", "train", str(run_dir), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    events = protocol.read_events(run_dir / "events.jsonl")
    finished = [e for e in events if isinstance(e, protocol.Finished)]
    assert finished and finished[-1].status == "completed", (finished, proc.stderr[-3000:])
    return events


def load(model_path: Path):
    import keras

    import tltui.worker.hub  # noqa: F401 - registers HubModule

    return keras.models.load_model(model_path, safe_mode=True, compile=False)


def module_values(model_path: Path) -> dict[str, np.ndarray]:
    import tltui.worker.hub as hub

    return {v.name: v.numpy() for v in hub.find_hub_layer(load(model_path)).weights}


def original_values(saved: Path) -> dict[str, np.ndarray]:
    loaded = tf.saved_model.load(str(saved))
    return {v.name.split(":")[0]: v.numpy() for v in loaded.variables}


def test_frozen_run_from_a_file_url_tarball(
    ws: Workspace, assets: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url = assets["tgz"].as_uri()
    run_dir = make_run(ws, "hub-frozen", f"hub:{url}", assets["images"], "all", "frozen")
    events = run_worker(run_dir)

    # downloaded once into the workspace's persistent cache
    folder = hubcache.module_folder(hubcache.cache_root(ws.root), hubcache.parse(url))
    assert hubcache.inspect(folder).state == "ready"
    epochs = [e.epoch for e in events if isinstance(e, protocol.EpochEnd)]
    assert epochs == [1, 2]
    info = next(e for e in events if isinstance(e, protocol.ModelInfo))
    assert info.trainable_params == 8 * 2 + 2 and info.non_trainable_params == 3 * 8 + 8 + 3

    fmap = json.loads((run_dir / "freeze_map.json").read_text())
    assert fmap["family"] == "hub" and fmap["hub"]["state"] == "frozen" and fmap["hub"]["variables"] == 3
    assert [s["name"] for s in fmap["stages"]] == ["input", "hub_module", "head"]
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.keras")) == ["epoch-0001.keras", "epoch-0002.keras"]

    after = module_values(run_dir / "model.keras")
    for name, value in original_values(assets["saved"]).items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)

    # the saved run predicts without the cache (the module travels inside model.keras)
    import shutil

    x = np.random.default_rng(3).integers(0, 255, (5, 23, 17, 3)).astype("float32")
    expected = load(run_dir / "model.keras").predict(x, verbose=0)
    shutil.rmtree(folder)
    np.testing.assert_allclose(load(run_dir / "model.keras").predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)

    # ... and through `tltui predict` (the predict worker, another process)
    from tltui.commands import main as cli

    ws.update(run_dir.name, status="completed")
    capsys.readouterr()
    assert cli.main(["--workspace", str(ws.root), "predict", run_dir.name, str(assets["images"]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["predictions"]) == 12 and doc["skipped"] == []
    for p in doc["predictions"]:
        assert {t["label"] for t in p["top_k"]} == {"red", "blue"}
        assert p["top_k"][0]["probability"] >= p["top_k"][1]["probability"]
    assert doc["summary"]["accuracy"] is not None


def test_fine_tuned_run_changes_the_module_and_resumes(ws: Workspace, assets: dict[str, Path]) -> None:
    run_dir = make_run(ws, "hub-tuned", f"hub:{assets['saved']}", assets["images"], 0, "trainable")
    run_worker(run_dir)
    fmap = json.loads((run_dir / "freeze_map.json").read_text())
    assert fmap["hub"]["state"] == "trainable"
    assert fmap["hub"]["batchnorm_inside"] == "follows training (statistics update)"
    tuned = module_values(run_dir / "model.keras")
    original = original_values(assets["saved"])
    for name in ("kernel", "bias", "moving_mean"):
        assert not np.allclose(tuned[name], original[name]), name

    # resume continues from the backup of the last completed epoch (here: nothing left to
    # train), module variables included: the model it saves is the tuned one, not the original
    (run_dir / "model.keras").unlink()
    events = run_worker(run_dir, "--resume")
    started = [e for e in events if isinstance(e, protocol.Started)]
    assert [s.initial_epoch for s in started] == [0, 2]
    assert [e.epoch for e in events if isinstance(e, protocol.EpochEnd)] == [1, 2]
    resumed = module_values(run_dir / "model.keras")
    for name in ("kernel", "bias", "moving_mean"):
        np.testing.assert_array_equal(resumed[name], tuned[name], err_msg=name)
