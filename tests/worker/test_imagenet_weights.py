"""``model.weights = "imagenet"`` for every backbone, without network.

Keras' ``get_file`` is intercepted: every backbone must ask for exactly the file, origin and hash
that plain ``keras.applications.X(include_top=False, weights="imagenet")`` asks for (EfficientNet
once asked for ``backbone_notop.h5`` and ConvNeXt refused to build), the served file must end up
in ``model.keras`` bit for bit after training a frozen backbone, and a failed fetch says which file
to copy where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tltui.core import catalog, presets

pytestmark = pytest.mark.e2e

keras = pytest.importorskip("keras")

from keras.src.utils import file_utils  # noqa: E402

from tltui.worker import model as worker_model  # noqa: E402


class Requested(Exception):
    """Raised by the fake ``get_file`` once it has recorded a request (nothing is downloaded)."""


def record_requests(monkeypatch: pytest.MonkeyPatch, serve: dict[str, Path] | None = None) -> list[dict[str, Any]]:
    """Replace Keras' ``get_file``: record each call; serve ``serve[fname]`` or raise ``Requested``."""
    calls: list[dict[str, Any]] = []

    def fake_get_file(fname: Any = None, origin: Any = None, *args: Any, **kwargs: Any) -> str:
        calls.append({"fname": fname, "origin": origin, "args": args, **kwargs})
        if serve and fname in serve:
            return str(serve[fname])
        raise Requested(fname)

    monkeypatch.setattr(file_utils, "get_file", fake_get_file)
    return calls


def preset_for(backbone: str, side: int, **model: Any) -> presets.Preset:
    return presets.from_dict(
        {
            "name": "weights",
            "data": {"source": "folder:/nonexistent", "image_size": [side, side], "batch_size": 4},
            "model": {"backbone": backbone, "weights": "imagenet", **model},
        }
    )


CASES = [(name, catalog.lookup(name).default_size, {}) for name in catalog.BACKBONES]
# The width multiplier and input size pick the file for MobileNet; a non-default pair too.
CASES += [
    ("mobilenet_v2", 96, {"alpha": 0.35}),
    ("mobilenet_v2", 64, {"alpha": 0.35}),
    ("mobilenet_v3_small", 224, {"alpha": 0.75}),
    ("mobilenet_v3_large", 64, {}),
]


@pytest.mark.parametrize(("backbone", "side", "extra"), CASES, ids=[f"{b}-{s}-{e}" if e else b for b, s, e in CASES])
def test_every_backbone_requests_the_file_plain_keras_requests(
    monkeypatch: pytest.MonkeyPatch, backbone: str, side: int, extra: dict[str, Any]
) -> None:
    spec = catalog.lookup(backbone)
    assert spec is not None
    calls = record_requests(monkeypatch)
    constructor = getattr(keras.applications, spec.constructor)
    with pytest.raises(Requested):
        constructor(include_top=False, weights="imagenet", input_shape=(side, side, 3), **extra)
    assert len(calls) == 1, calls
    plain = calls.pop()
    # tltui's own table (used by `check` and `weights fetch` without TensorFlow) names the same file
    assert catalog.imagenet_weights(backbone, (side, side), extra.get("alpha")) == catalog.WeightsFile(
        plain["fname"], plain["origin"]
    )

    with pytest.raises(worker_model.ModelError) as err:
        worker_model.build_backbone(spec, preset_for(backbone, side, **extra), imagenet=True)
    assert len(calls) == 1, calls
    assert calls[0] == plain
    assert "backbone" not in str(plain["fname"])  # named after the application, as Keras publishes it
    assert isinstance(err.value.__cause__, Requested)


@pytest.mark.parametrize("backbone", list(catalog.BACKBONES))
def test_a_family_takes_model_alpha_exactly_when_its_keras_application_does(backbone: str) -> None:
    """``Family.alpha`` (``model.alpha`` applies; the weights file is named by it) is what Keras says."""
    import inspect

    spec = catalog.BACKBONES[backbone]
    takes_alpha = "alpha" in inspect.signature(getattr(keras.applications, spec.constructor)).parameters
    assert takes_alpha is catalog.family(spec.family).alpha


def perturbed_weights_file(constructor: Any, side: int, path: Path) -> list[Any]:
    """A Keras-format (legacy HDF5) weights file for ``constructor`` with seeded non-initial values."""
    import h5py
    import numpy as np
    from keras.src.legacy.saving import legacy_h5_format

    model = constructor(include_top=False, weights=None, input_shape=(side, side, 3))
    rng = np.random.default_rng(7)
    for v in model.weights:
        value = v.numpy()
        noise = rng.uniform(0.5, 1.5, size=value.shape).astype(value.dtype)
        v.assign(value * noise + (0.25 if "variance" in v.path else 0.01))
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return [v.numpy() for v in model.weights]


@pytest.mark.parametrize("backbone", ["efficientnet_b0", "convnext_tiny"])
def test_served_weights_are_in_model_keras_bit_identical_after_training_a_frozen_backbone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, backbone: str
) -> None:
    import numpy as np

    from tests.worker.test_train_e2e import run_in_process
    from tltui.core import demo

    spec = catalog.lookup(backbone)
    assert spec is not None
    side = 32
    constructor = getattr(keras.applications, spec.constructor)
    calls = record_requests(monkeypatch)
    with pytest.raises(Requested):
        constructor(include_top=False, weights="imagenet", input_shape=(side, side, 3))
    fname = calls.pop()["fname"]
    served = perturbed_weights_file(constructor, side, tmp_path / fname)
    calls = record_requests(monkeypatch, serve={fname: tmp_path / fname})

    folder = demo.generate(tmp_path / "shapes", per_class=6, size=side, shapes=("circle", "square", "cross"))
    preset = presets.from_dict(
        {
            "name": "served",
            "data": {
                "source": f"folder:{folder}",
                "image_size": [side, side],
                "batch_size": 6,
                "validation_fraction": 0.25,
            },
            "model": {"backbone": backbone, "weights": "imagenet"},
            "freeze": {"depth": "all"},
            "train": {"epochs": 1, "checkpoint_every": 0, "learning_rate": 0.05},
        }
    )
    rc, _ = run_in_process(tmp_path / "run", preset)
    assert rc == 0
    assert [c["fname"] for c in calls] == [fname]

    model = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    kept = [v.numpy() for v in model.get_layer(worker_model.BACKBONE_NAME).weights]
    assert len(kept) == len(served)
    assert all(np.array_equal(a, b) for a, b in zip(kept, served, strict=True))
    head = [l for l in model.layers if l.name != worker_model.BACKBONE_NAME and l.weights]
    assert head and any(np.abs(v.numpy()).sum() > 0 for l in head for v in l.weights)


def test_a_failed_fetch_names_the_file_its_origin_and_where_to_copy_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "keras-home").mkdir()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    seen: list[str] = []

    def offline(fname: Any = None, origin: Any = None, *args: Any, **kwargs: Any) -> str:
        seen.append(origin)
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    spec = catalog.lookup("resnet50")
    assert spec is not None
    with pytest.raises(worker_model.ModelError) as err:
        worker_model.build_backbone(spec, preset_for("resnet50", 32), imagenet=True)
    msg = str(err.value)
    assert "\n" not in msg
    target = tmp_path / "keras-home" / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert f"could not fetch {target.name} for resnet50 from {seen[0]} " in msg
    assert "(None -- [Errno -3] Temporary failure in name resolution)" in msg
    assert f"copy that file to {target}," in msg
    assert 'model.weights = "none"' in msg


def test_weights_fetch_job_stores_the_file_where_keras_and_check_look(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tltui weights fetch` runs this job: Keras "downloads" (here: copies a served file into its
    cache), the build checks it loads, and `check` stops warning about a download."""
    import json
    import shutil

    from tltui.core import preflight

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    (tmp_path / "keras-home").mkdir()
    spec = catalog.lookup("efficientnet_b0")
    assert spec is not None
    wf = catalog.imagenet_weights("efficientnet_b0", (32, 32))
    assert wf is not None
    served = tmp_path / "served.h5"
    perturbed_weights_file(keras.applications.EfficientNetB0, 32, served)

    def download(fname: Any = None, origin: Any = None, *args: Any, **kwargs: Any) -> str:
        assert (fname, origin) == (wf.fname, wf.origin)
        target = catalog.keras_cache_path(fname, kwargs.get("cache_subdir", "datasets"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(served, target)
        return str(target)

    p = preset_for("efficientnet_b0", 32)
    (warning,) = preflight.download_warnings(p)
    assert wf.origin in warning and f"copy {wf.fname} to {tmp_path / 'keras-home' / 'models'}/" in warning
    monkeypatch.setattr(file_utils, "get_file", download)
    assert worker_model.main(["efficientnet_b0", "32", "32"]) == 0
    reply = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert reply == {"path": str(tmp_path / "keras-home" / "models" / wf.fname), "bytes": served.stat().st_size}
    assert preflight.download_warnings(p) == []

    def offline(fname: Any = None, origin: Any = None, *args: Any, **kwargs: Any) -> str:
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    assert worker_model.main(["convnext_tiny", "32", "32"]) == 2
    reply = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "could not fetch convnext_tiny_notop.h5" in reply["error"]
