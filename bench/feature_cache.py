"""Target 3: epoch time with vs without the frozen-backbone feature cache, same final head metrics.

Two real ``tltui run`` trainings of the demo data with the whole backbone frozen
(``freeze.depth = "all"``, BatchNorm frozen, ``data.augment = false``): one with
``train.feature_cache = "auto"`` (the default: the cache applies), one with ``"off"``.
Runs alternate (off, auto, auto, off, ...). Steady-state epoch = gap between epoch
starts, without the first epoch. Also printed: the one-off feature extraction time
and the final val_acc / val_loss of both (the head should learn the same).

``python -m bench.feature_cache [--tiny] [--rounds N] [--epochs N]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import DEMO, PYTHON, Figure, Result, emit, median, preset_file, run_env
from bench.harness import demo_data, gaps


def run_once(home: Path, sets: list[str], env: dict[str, str], preset: Path = DEMO) -> list[dict[str, Any]]:
    cmd = [PYTHON, "-m", "tltui", "--workspace", str(home), "run", str(preset), "--plain"]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"tltui run failed ({proc.returncode}): {proc.stderr[-2000:]}{proc.stdout[-2000:]}")
    run_dir = sorted((home / "runs").iterdir(), key=lambda p: p.name)[-1]
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def summarize(events: list[dict[str, Any]]) -> dict[str, Any]:
    starts = [e["t"] for e in events if e["type"] == "epoch_begin"]
    ends = [e for e in events if e["type"] == "epoch_end"]
    model = next(e for e in events if e["type"] == "model")
    feat = next((e["t"] for e in events if e["type"] == "phase" and e["name"] == "features"), None)
    train = next(e["t"] for e in events if e["type"] == "phase" and e["name"] == "train")
    return {
        "cache": model["feature_cache"],
        "epochs": [s for _, s in gaps(starts)],
        "first_epoch": starts[1] - starts[0] if len(starts) > 1 else float("nan"),
        "extract": (train - feat) if feat is not None else 0.0,
        "val_acc": ends[-1]["metrics"].get("val_acc"),
        "val_loss": ends[-1]["metrics"].get("val_loss"),
    }


def run(tiny: bool = False, rounds: int | None = None, epochs: int | None = None) -> list[Result | Figure]:
    rounds = rounds or (1 if tiny else 2)
    epochs = epochs or (3 if tiny else 6)
    with tempfile.TemporaryDirectory(prefix="tltui-bench-fc-") as tmp:
        data = demo_data(Path(tmp))
        base = [
            f"train.epochs={epochs}",
            'freeze.depth="all"',
            'freeze.batchnorm="frozen"',
            "data.augment=false",
            "train.checkpoint_every=0",
            f'data.source="folder:{data}"',
            "model.dropout=0.0",
        ]
        if tiny:
            base += [
                'model.backbone="tiny_cnn"',
                "data.train_limit=64",
                "data.val_limit=32",
                "data.image_size=[32, 32]",
            ]
        env = run_env(Path(tmp) / "home")
        preset = preset_file(tiny, Path(tmp))
        if tiny:
            env["TLTUI_TEST_BACKBONES"] = "1"
        res: dict[str, list[dict[str, Any]]] = {"auto": [], "off": []}
        for r in range(rounds):
            order = ("off", "auto") if r % 2 == 0 else ("auto", "off")
            for mode in order:
                res[mode].append(
                    run_once(Path(tmp) / f"ws-{mode}-{r}", base + [f'train.feature_cache="{mode}"'], env, preset)
                )
    on = [summarize(e) for e in res["auto"]]
    off = [summarize(e) for e in res["off"]]
    if not all(s["cache"] for s in on) or any(s["cache"] for s in off):
        raise RuntimeError("feature cache not used as expected: " + json.dumps([on, off]))
    t_on = median([x for s in on for x in s["epochs"]])
    t_off = median([x for s in off for x in s["epochs"]])
    note = "tiny mode: not a measurement" if tiny else f"demo data, MobileNetV2 a0.35 64 px frozen, {rounds} rounds"
    out: list[Result | Figure] = [
        Result(
            "feature_cache",
            "steady-state epoch (frozen backbone)",
            "without cache",
            t_off,
            "with cache",
            t_on,
            "s",
            ">= 10",
            note=note,
        ),
        Result(
            "feature_cache",
            "one-off feature extraction vs one uncached epoch",
            "extraction",
            median([s["extract"] for s in on]),
            "uncached epoch",
            t_off,
            "s",
            "<= 1.5",
            note="paid once, before epoch 1",
        ),
    ]
    for key in ("val_acc", "val_loss"):
        a = [s[key] for s in on]
        b = [s[key] for s in off]
        out.append(
            Figure(
                "feature_cache",
                f"final {key}: with cache {', '.join(f'{v:.4f}' for v in a)}; without "
                f"{', '.join(f'{v:.4f}' for v in b)}; |difference of medians|",
                abs(median(a) - median(b)),
                "",
                None,
                note="within noise if small",
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.feature_cache")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--rounds", type=int)
    p.add_argument("--epochs", type=int)
    args = p.parse_args(argv)
    emit(run(args.tiny, args.rounds, args.epochs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
