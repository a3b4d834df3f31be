"""`tltui weights ls|fetch` and `check`'s download warning, without TensorFlow or network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tltui.commands.main import main
from tltui.core import catalog, preflight, presets


def preset(**model: object) -> presets.Preset:
    return presets.from_dict(
        {
            "name": "p",
            "data": {"source": "tfds:cifar10", "image_size": [224, 224]},
            "model": {"backbone": "resnet50", **model},
        }
    )


def weights_warnings(p: presets.Preset) -> list[str]:
    return [w for w in preflight.download_warnings(p) if w.startswith("model.weights")]


def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    return tmp_path / "kh" / "models"


def test_check_warns_once_per_file_a_run_will_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = cache(tmp_path, monkeypatch)
    (w,) = weights_warnings(preset())
    fname = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert f"https://storage.googleapis.com/tensorflow/keras-applications/resnet/{fname}" in w
    assert "`tltui weights fetch resnet50`" in w and f"copy {fname} to {models}/" in w
    assert weights_warnings(preset(weights="none")) == []
    assert weights_warnings(preset(backbone="hub:/nowhere")) == []
    swept = presets.from_dict(
        {
            "name": "p",
            "data": {"source": "tfds:cifar10"},
            "model": {"backbone": "resnet50"},
            "sweep": {"freeze.depth": [0, 1, 2], "model.backbone": ["resnet50", "vgg16"]},
        }
    )
    assert len(weights_warnings(swept)) == 2  # six runs, two files
    models.mkdir(parents=True)
    (models / fname).write_bytes(b"weights")
    assert weights_warnings(preset()) == []
    assert [w for w in preflight.check(preset(), "p.toml").warnings if "downloaded" in w] == []


def test_weights_ls_and_fetch_of_what_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    models = cache(tmp_path, monkeypatch)
    models.mkdir(parents=True)
    (models / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"x" * 1000)
    assert main(["weights", "ls", "--json"]) == 0
    rows = {r["backbone"]: r for r in json.loads(capsys.readouterr().out)["weights"]}
    assert set(rows) == set(catalog.BACKBONES)
    assert rows["vgg16"]["cached"] and rows["vgg16"]["bytes"] == 1000 and not rows["resnet50"]["cached"]
    (models / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"")  # a download killed at once
    assert main(["weights", "ls", "--json"]) == 0
    assert not {r["backbone"]: r for r in json.loads(capsys.readouterr().out)["weights"]}["resnet50"]["cached"]
    # cached or not, the worker job runs (Keras checks the hash); here a stand-in that answers like it
    reply = json.dumps({"path": str(models / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"), "bytes": 1000})
    monkeypatch.setenv("TLTUI_WORKER_CMD", json.dumps([sys.executable, "-c", f"print({reply!r})"]))
    assert main(["weights", "fetch", "vgg16", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["weights"]
    assert entry["state"] == "verified" and entry["path"] == str(
        models / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )
    monkeypatch.setenv("TLTUI_WORKER_CMD", json.dumps(["false"]))
    assert main(["weights", "fetch", "resnet50"]) == 1  # the worker (here: `false`) failed
    assert "error: weights-fetch exited 1" in capsys.readouterr().err


def test_weights_fetch_of_a_preset_takes_its_runs_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    models = cache(tmp_path, monkeypatch)
    models.mkdir(parents=True)
    f = tmp_path / "mn.toml"
    f.write_text(
        'name = "mn"\n[data]\nsource = "tfds:cifar10"\nimage_size = [96, 96]\n'
        '[model]\nbackbone = "mobilenet_v2"\nalpha = 0.35\n'
    )
    fname = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    (models / fname).write_bytes(b"x")
    monkeypatch.setenv(
        "TLTUI_WORKER_CMD",
        json.dumps([sys.executable, "-c", "import sys, json; print(json.dumps({'path': 'p', 'argv': sys.argv[1:]}))"]),
    )
    assert main(["weights", "fetch", str(f), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["weights"]
    assert entry["file"] == fname and entry["state"] == "verified"
    assert main(["weights", "fetch", "not-a-thing"]) == 2
    assert "neither a backbone" in capsys.readouterr().err


def test_check_warns_about_a_tfds_download_and_refuses_one_it_may_not_make(tmp_path: Path) -> None:
    def p(**data: object) -> presets.Preset:
        return presets.from_dict(
            {
                "name": "p",
                "data": {"source": "tfds:cifar10", "data_dir": str(tmp_path / "tfds"), **data},
                "model": {"backbone": "resnet50", "weights": "none"},
            }
        )

    (w,) = preflight.download_warnings(p())
    assert w == (
        f"tfds:cifar10 is not prepared in {tmp_path / 'tfds'}: the run downloads and prepares it first "
        "(`tltui data fetch tfds:cifar10` does it now)"
    )
    (err,) = preflight.check(p(download=False), "p.toml").errors
    assert err.field == "data.source" and "data.download = false" in err.message
    incomplete = tmp_path / "tfds" / "cifar10" / "3.0.2.incomplete.abc"
    incomplete.mkdir(parents=True)
    (incomplete / "dataset_info.json").write_text("{}")
    assert preflight.download_warnings(p())  # a half-prepared copy does not count
    done = tmp_path / "tfds" / "cifar10" / "3.0.2"
    done.mkdir()
    (done / "dataset_info.json").write_text("{}")
    assert preflight.download_warnings(p()) == [] and not preflight.check(p(download=False), "p.toml").errors
    assert preflight.tfds_prepared("cifar10:3.0.2", tmp_path / "tfds")
    assert not preflight.tfds_prepared("cifar10:9.9.9", tmp_path / "tfds")
