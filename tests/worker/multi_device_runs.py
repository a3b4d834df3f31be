"""Run by ``test_multi_device.py`` in a subprocess of its own (the CPU is split into 2 logical devices
before TensorFlow starts, ``TLTUI_TEST_CPU_DEVICES=2``): the real worker in process, each preset once
on one device and once under MirroredStrategy over the 2; prints one JSON object per run.

Usage: ``python multi_device_runs.py OUT_DIR FOLDER``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tltui.core import presets, protocol, runstate


def preset(folder: str, **overrides: object) -> presets.Preset:
    raw = {
        "name": "multi",
        "data": {
            "source": f"folder:{folder}",
            "image_size": [32, 32],
            "batch_size": 8,
            "validation_fraction": 0.3,
            "augment": False,
        },
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "freeze": {"batchnorm": "frozen"},  # BatchNorm in inference mode: the same maths on 1 and 2 replicas
        "train": {"epochs": 2, "checkpoint_every": 0, "optimizer": "sgd", "learning_rate": 0.05},
    }
    return presets.from_dict(raw, overrides=overrides)


def run(run_dir: Path, p: presets.Preset) -> dict:
    import keras

    from tltui.worker import train

    run_dir.mkdir(parents=True)
    (run_dir / "preset.toml").write_text(presets.dumps(p))
    rc = train.main([str(run_dir)])
    events = protocol.read_events(run_dir / "events.jsonl")
    st = runstate.load(run_dir / "events.jsonl")
    started = next((e for e in events if isinstance(e, protocol.Started)), None)
    model = run_dir / "model.keras"
    weights = [v.numpy().tolist() for v in keras.saving.load_model(model, compile=False).weights] if rc == 0 else []
    data = json.loads((run_dir / "data.json").read_text()) if (run_dir / "data.json").exists() else {}
    return {
        "rc": rc,
        "reason": st.finished.reason if st.finished else None,
        "devices": started.devices if started else None,
        "compute": st.compute(),
        "feature_cache": bool(st.model.get("feature_cache")),
        "history": [{k: h[k] for k in ("loss", "val_loss", "val_acc") if k in h} for h in st.history_list()],
        "weights": weights,
        "train_examples": data.get("train_examples"),
        "val_examples": data.get("val_examples"),
    }


def main(out: Path, folder: str) -> None:
    cases = {
        "full": {"freeze.depth": 0},
        "cached": {"freeze.depth": "all"},  # the feature cache: its head model's fit
    }
    results = {}
    for name, overrides in cases.items():
        for gpus in (1, 2):
            results[f"{name}-{gpus}"] = run(out / f"{name}-{gpus}", preset(folder, **overrides, **{"train.gpus": gpus}))
    results["refused"] = run(out / "refused", preset(folder, **{"train.gpus": 2, "data.batch_size": 35}))
    print(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
