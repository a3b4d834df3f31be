"""A scripted workspace for TUI tests: completed, sweep, running, failed and queued runs.

Everything is deterministic (fixed times, closed-form curves) so snapshots are
stable; :data:`NOW` is the clock the app gets.
"""

from __future__ import annotations

import math
from pathlib import Path

from tltui.core import protocol
from tltui.core.protocol import Batch, EpochBegin, EpochEnd, Evaluated, Finished, ModelInfo, Started
from tltui.core.workspace import Workspace

NOW = 1_780_000_000.0
T0 = NOW - 6 * 3600
STEPS = 50

PRESET = """\
name = "{name}"
description = "scripted test preset"

[data]
source = "tfds:cifar100"
image_size = [224, 224]
batch_size = 32

[model]
backbone = "resnet50"
weights = "imagenet"

[freeze]
depth = {depth}
batchnorm = "frozen"

[train]
epochs = {epochs}
optimizer = "sgd"
learning_rate = 0.01
momentum = 0.9
nesterov = true
"""


def metrics(epoch: float, quality: float) -> dict[str, float]:
    """Smooth, plausible curves: accuracy rises towards ``quality``, loss falls."""
    k = 1 - math.exp(-epoch / 3)
    acc = 0.05 + (quality - 0.05) * k
    return {
        "loss": 4.6 * math.exp(-epoch / 2.5) + 0.6 * (1 - quality) + 0.2,
        "acc": min(0.99, acc + 0.06),
        "top5_acc": min(0.995, acc + 0.25),
        "val_loss": 4.6 * math.exp(-epoch / 3) + 0.8 * (1 - quality) + 0.35,
        "val_acc": acc,
        "val_top5_acc": min(0.99, acc + 0.2),
    }


def write_events(
    path: Path,
    *,
    start: float,
    epochs: int,
    done: int,
    quality: float,
    in_progress_steps: int = 0,
    finished: str | None = "completed",
    reason: str = "",
) -> None:
    lines = [
        Started(
            t=start,
            pid=4242,
            host="gpu-box",
            devices=["GPU:0"],
            epochs=epochs,
            steps_per_epoch=STEPS,
            restore_best=True,
        ),
        ModelInfo(
            t=start + 5,
            total_params=23_792_612,
            trainable_params=204_900,
            non_trainable_params=23_587_712,
            num_classes=100,
        ),
    ]
    t = start + 10
    for e in range(1, done + 1):
        lines.append(EpochBegin(t=t, epoch=e))
        for step in (10, 20, 30, 40, 50):
            m = metrics(e - 1 + step / STEPS, quality)
            lines.append(
                Batch(
                    t=t + step, epoch=e, step=step, steps=STEPS, metrics={k: m[k] for k in ("loss", "acc", "top5_acc")}
                )
            )
        t += 60
        lines.append(EpochEnd(t=t, epoch=e, metrics=metrics(e, quality), lr=0.01, epoch_seconds=60.0))
    if in_progress_steps:
        e = done + 1
        lines.append(EpochBegin(t=t, epoch=e))
        for step in range(5, in_progress_steps + 1, 5):
            m = metrics(e - 1 + step / STEPS, quality)
            lines.append(
                Batch(
                    t=t + step, epoch=e, step=step, steps=STEPS, metrics={k: m[k] for k in ("loss", "acc", "top5_acc")}
                )
            )
    if finished == "completed":  # the held-out test split, once, with the weights kept
        m = metrics(done, quality)
        lines.append(
            Evaluated(
                t=t + 0.5,
                split="test",
                examples=10_000,
                weights_epoch=done,
                metrics={
                    "test_loss": m["val_loss"] + 0.03,
                    "test_acc": m["val_acc"] - 0.012,
                    "test_top5_acc": m["val_top5_acc"] - 0.01,
                },
            )
        )
    if finished:
        kept = {"model_epoch": done, "model_rule": "best"} if finished == "completed" else {}  # the curves only rise
        lines.append(Finished(t=t + 1, status=finished, reason=reason, epochs_done=done, **kept))
    path.write_text("".join(protocol.encode(ev) for ev in lines))


def build(ws: Workspace) -> dict[str, str]:
    """Fill ``ws``; returns role -> run id."""
    single = ws.create_runs(
        [("resnet50-cifar100", PRESET.format(name="resnet50-cifar100", depth='"all"', epochs=10), {})],
        preset_name="resnet50-cifar100",
        epochs=[10],
    )[0]
    sweep = ws.create_runs(
        [
            (f"freeze-sweep[depth={d}]", PRESET.format(name="freeze-sweep", depth=d, epochs=8), {"freeze.depth": d})
            for d in range(4)
        ],
        preset_name="freeze-sweep",
        epochs=[8] * 4,
    )
    running = ws.create_runs(
        [("mobilenet-live", PRESET.format(name="mobilenet-live", depth=2, epochs=10), {})],
        preset_name="mobilenet-live",
        epochs=[10],
    )[0]
    failed = ws.create_runs(
        [("broken-run", PRESET.format(name="broken-run", depth=1, epochs=10), {})],
        preset_name="broken-run",
        epochs=[10],
    )[0]
    queued = ws.create_runs(
        [("waiting", PRESET.format(name="waiting", depth=0, epochs=5), {})], preset_name="waiting", epochs=[5]
    )[0]

    def finish(rec_id: str, start: float, epochs: int, done: int, quality: float, **kw) -> None:
        write_events(ws.run_paths(rec_id).events, start=start, epochs=epochs, done=done, quality=quality, **kw)

    finish(single.id, T0, 10, 10, 0.78)
    ws.update(
        single.id,
        status="completed",
        started=T0,
        finished=T0 + 611,
        epoch=10,
        best_val_acc=metrics(10, 0.78)["val_acc"],
        best_val_top5_acc=metrics(10, 0.78)["val_top5_acc"],
        best_epoch=10,
        gpus=[0],
        queue_pos=None,
    )
    for i, rec in enumerate(sweep):
        q = (0.74, 0.71, 0.66, 0.55)[i]
        start = T0 + 700 + 500 * i
        finish(rec.id, start, 8, 8, q)
        ws.update(
            rec.id,
            status="completed",
            started=start,
            finished=start + 491,
            epoch=8,
            best_val_acc=metrics(8, q)["val_acc"],
            best_val_top5_acc=metrics(8, q)["val_top5_acc"],
            best_epoch=8,
            gpus=[i % 2],
            queue_pos=None,
        )
    rstart = NOW - 200
    finish(running.id, rstart, 10, 2, 0.7, in_progress_steps=25, finished=None)
    ws.update(running.id, status="running", started=rstart, epoch=3, gpus=[1], queue_pos=None, pid=4242)
    fstart = T0 + 3000
    finish(failed.id, fstart, 10, 3, 0.6, finished="failed", reason="ResourceExhaustedError: OOM when allocating")
    ws.update(
        failed.id,
        status="failed",
        started=fstart,
        finished=fstart + 190,
        epoch=3,
        best_val_acc=metrics(3, 0.6)["val_acc"],
        reason="ResourceExhaustedError: OOM when allocating",
        queue_pos=None,
    )
    ws.run_paths(failed.id).log.write_text(
        "".join(f"epoch {e}/10 ... ok\n" for e in range(1, 4))
        + 'Traceback (most recent call last):\n  File "train.py", line 1, in fit\n'
        "ResourceExhaustedError: OOM when allocating tensor with shape [32,2048,7,7]\n"
    )
    return {
        "completed": single.id,
        "sweep0": sweep[0].id,
        "sweep3": sweep[3].id,
        "running": running.id,
        "failed": failed.id,
        "queued": queued.id,
    }
