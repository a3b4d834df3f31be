"""Budgeted sweep vs grid: the same sampled configurations, each trained to the end (grid) or under
successive halving (``[sweep.budget]``, ASHA), both through the queue runner on this machine.

Real images: crops of twelve of scikit-image's photos (as ``bench.export``), MobileNetV2 (alpha 0.35,
``weights = "none"``) at 64 px; nine configurations (learning rate log-uniform, dropout uniform, seed
0), 18 epochs each; the budget: rungs at epochs 2 and 6 (eta 3). Reported side by side: epochs trained,
wall time from ``queue add`` to the sweep's end, and the best validation accuracy each found (the grid:
the best kept val_acc of its runs; the budgeted sweep: of the runs it trained to the end). The target
(issue 30): within 1 point of the grid's best with at most 1/3 of the epochs.

``python -m bench.sweep [--epochs R] [--min-epochs r] [--tiny]`` (defaults 27 and 3, the configuration that met both targets; ``--tiny``: the test
backbone on the demo's shapes, 3 configurations of 4 epochs; seconds, no meaningful figures). Each run's
val_acc per epoch is printed too (``sweep: grid r0004 completed ...``): what the rungs saw.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import Figure, Result, emit, run_env
from bench.export import cli, photo_folder


def preset_text(data: Path, tiny: bool, budget: bool, epochs: int = 18, min_epochs: int = 2) -> str:
    if tiny:
        model = 'backbone = "tiny_cnn"\nweights = "none"'
        size, epochs, samples, rungs = 32, 4, 3, "min_epochs = 1\neta = 2"
    else:
        model = 'backbone = "mobilenet_v2"\nweights = "none"\nalpha = 0.35\nbn_momentum = 0.9'
        size, samples, rungs = 64, 9, f"min_epochs = {min_epochs}\neta = 3"
    text = f"""name = "sweep-bench"
[data]
source = "folder:{data}"
image_size = [{size}, {size}]
batch_size = 16
validation_fraction = 0.25
augment = true
[model]
{model}
[freeze]
batchnorm = "trainable"
[train]
epochs = {epochs}
optimizer = "adam"
lr_schedule = "cosine"
checkpoint_every = 0
restore_best = true
[sweep]
"train.learning_rate" = {{ loguniform = [1e-4, 3e-2] }}
"model.dropout" = {{ uniform = [0.0, 0.5] }}
samples = {samples}
seed = 0
"""
    return text + (f"[sweep.budget]\n{rungs}\n" if budget else "")


def sweep_once(root: Path, data: Path, tiny: bool, budget: bool, epochs: int, min_epochs: int) -> dict[str, float]:
    """Queue the sweep in a fresh workspace and wait for it to settle: epochs, seconds, best val_acc."""
    from tltui.core.status import RunStatus
    from tltui.core.workspace import Workspace

    home = root / ("budgeted" if budget else "grid")
    env = run_env(home)
    env["TLTUI_RUNNER_IDLE_TIMEOUT"] = "5"
    if tiny:
        env["TLTUI_TEST_BACKBONES"] = "1"
    preset = root / f"sweep-{'budgeted' if budget else 'grid'}.toml"
    preset.write_text(preset_text(data, tiny, budget, epochs, min_epochs))
    t0 = time.perf_counter()
    proc = cli(home, env, "queue", "add", str(preset))
    if proc.returncode != 0:
        raise RuntimeError(f"queue add failed ({proc.returncode}): {proc.stderr[-2000:]}")
    ws = Workspace(home)
    try:
        while True:
            runs = ws.list_runs()
            busy = [r for r in runs if r.status in (RunStatus.QUEUED, RunStatus.RUNNING)]
            undecided = [
                r for r in runs if r.status == RunStatus.PAUSED and not (r.reason or "").startswith("stopped early")
            ]
            if runs and not busy and not undecided:
                break
            time.sleep(0.5)
        seconds = time.perf_counter() - t0
        failed = [r for r in runs if r.status not in (RunStatus.COMPLETED, RunStatus.PAUSED)]
        if failed:
            raise RuntimeError(f"{failed[0].id} {failed[0].status}: {failed[0].reason}")
        from tltui.core import runstate

        for r in runs:  # each run's val_acc per epoch: what the rungs saw
            hist = runstate.load(ws.run_paths(r.id).events).history_list()
            curve = " ".join(f"{h.get('val_acc', float('nan')):.3f}" for h in hist)
            print(f"sweep: {'budgeted' if budget else 'grid'} {r.id} {r.status} {r.name}: {curve}", flush=True)
        done = [r.best_val_acc for r in runs if r.status == RunStatus.COMPLETED and r.best_val_acc is not None]
        return {"epochs": float(sum(r.epoch for r in runs)), "seconds": seconds, "best": max(done, default=0.0)}
    finally:
        ws.close()


def run(tiny: bool = False, epochs: int = 18, min_epochs: int = 2) -> list[Result | Figure]:
    with tempfile.TemporaryDirectory(prefix="tltui-bench-sweep-") as tmp:
        root = Path(tmp)
        if tiny:
            from tltui.core import demo

            data = demo.generate(root / "shapes", per_class=12, size=16, shapes=("circle", "square", "cross"))
        else:
            data = photo_folder(root / "photos", per_class=40, size=64)
        grid = sweep_once(root, data, tiny, False, epochs, min_epochs)
        budgeted = sweep_once(root, data, tiny, True, epochs, min_epochs)
    return [
        Result("sweep", "epochs trained", "budgeted", budgeted["epochs"], "grid", grid["epochs"], "epochs", "<= 0.34"),
        Result("sweep", "wall time", "budgeted", budgeted["seconds"], "grid", grid["seconds"], "s", "info"),
        Figure(
            "sweep",
            "best val_acc, grid minus budgeted",
            100 * (grid["best"] - budgeted["best"]),
            "points",
            1.0,
            note=f"grid {100 * grid['best']:.1f}%, budgeted {100 * budgeted['best']:.1f}%",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sweep")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--epochs", type=int, default=27, help="R: each run's epochs")
    ap.add_argument("--min-epochs", type=int, default=3, help="r: the first rung")
    args = ap.parse_args(argv)
    emit(run(args.tiny, args.epochs, args.min_epochs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
