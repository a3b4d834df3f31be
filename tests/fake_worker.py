"""A scripted stand-in for ``python -m tltui.worker`` (no TensorFlow), for fast tests and demos.

Same command line as the real worker::

    python tests/fake_worker.py train RUN_DIR --events-fd N [--resume]

It reads ``RUN_DIR/preset.toml`` (``train.epochs``, ``train.steps_per_epoch``,
``train.checkpoint_every``), then emits started / phase (data, build) / model /
phase (train) / epoch_begin / batch / epoch_end / checkpoint / finished events with plausible improving metrics to
``events.jsonl`` (the record) and the pipe (best effort, like the real one).

Script it with environment variables, or per run with ``RUN_DIR/fake.json``
(same keys, lower case, without the prefix; the file wins):

- ``TLTUI_FAKE_EPOCH_SECONDS`` (default 0.05): time per epoch
- ``TLTUI_FAKE_STEPS`` (default 4): steps per epoch unless the preset sets them
- ``TLTUI_FAKE_CRASH_AT`` = N: die in epoch N (after its first step) with
  ``TLTUI_FAKE_EXIT_CODE`` (default 3) and a traceback-like line in the log
- ``TLTUI_FAKE_NAN_AT`` = N: loss becomes NaN in epoch N: ``finished`` failed
- ``TLTUI_FAKE_IGNORE_TERM`` = 1: ignore SIGTERM (to test SIGKILL after the grace period)
- ``TLTUI_FAKE_STAGE_SECONDS`` (default 0): time spent in each step before the first batch (the
  worker's data / build / train phases; ``train`` is graph tracing), to see the run's state then
- ``TLTUI_FAKE_SCORE`` (default 0): added to every val_acc (runs of a sweep that rank differently)
- ``TLTUI_FAKE_HOLD_ON_RESUME`` = 1: with ``--resume``, write nothing and wait (up to a minute) until SIGTERM
  kills it: a worker cancelled before it started (a slow import, a cluster job still pending)

A preset with ``[sweep.budget]`` pauses at its rungs as the real worker does (``paused`` after the
rung's epoch; ``RUN_DIR/rungs.json`` says how many rungs it was promoted past).

SIGTERM otherwise stops it at the next step: ``finished`` with status
``cancelled``, exit code 0. ``--resume`` continues after the last ``epoch_end``
in ``events.jsonl`` and says so with ``started.initial_epoch``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import signal
import socket
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(_REPO))

from tltui.core import asha, protocol  # noqa: E402  (stdlib only)
from tltui.core.protocol import (  # noqa: E402
    Batch,
    Checkpoint,
    EpochBegin,
    EpochEnd,
    Event,
    Finished,
    Log,
    ModelInfo,
    Phase,
    Started,
)

DEFAULTS: dict[str, Any] = {
    "epoch_seconds": 0.05,
    "steps": 4,
    "crash_at": None,
    "exit_code": 3,
    "nan_at": None,
    "ignore_term": False,
    "stage_seconds": 0,
    "score": 0,
    "hold_on_resume": False,
}


def script(run_dir: Path) -> dict[str, Any]:
    cfg = dict(DEFAULTS)
    for key in cfg:
        raw = os.environ.get(f"TLTUI_FAKE_{key.upper()}")
        if raw is not None:
            cfg[key] = json.loads(raw)
    with contextlib.suppress(FileNotFoundError, ValueError):
        cfg.update(json.loads((run_dir / "fake.json").read_text()))
    return cfg


class Writer:
    """events.jsonl first (flushed), then the pipe; a dead pipe is dropped, training goes on."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.file = open(path, "ab")  # noqa: SIM115
        self.fd = fd
        if fd is not None:
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)

    def emit(self, ev: Event) -> None:
        line = protocol.encode(ev).encode()
        self.file.write(line)
        self.file.flush()
        if self.fd is None:
            return
        try:
            os.write(self.fd, line)
        except OSError as e:
            if e.errno not in (errno.EPIPE, errno.EBADF):
                raise
            self.fd = None


def last_epoch_done(events: Path) -> int:
    done = 0
    for ev in protocol.read_events(events):
        if isinstance(ev, Started):
            done = min(done, ev.initial_epoch)
        elif isinstance(ev, EpochEnd):
            done = max(done, ev.epoch)
    return done


def metrics(epoch: int, frac: float = 1.0, score: float = 0.0) -> dict[str, float]:
    x = epoch - 1 + frac
    acc = 0.25 + 0.6 * (1 - math.exp(-x / 3))
    return {
        "loss": round(2.5 * math.exp(-x / 4) + 0.2, 4),
        "acc": round(acc, 4),
        "top5_acc": round(min(1.0, acc + 0.2), 4),
        "val_loss": round(2.6 * math.exp(-x / 4) + 0.3, 4),
        "val_acc": round(acc - 0.03 + score, 4),
        "val_top5_acc": round(min(1.0, acc + 0.15), 4),
    }


def train(run_dir: Path, events_fd: int | None, resume: bool) -> int:
    cfg = script(run_dir)
    if resume and cfg["hold_on_resume"]:
        time.sleep(60)  # SIGTERM's default action ends it first, before it wrote anything
        return 1
    preset = tomllib.loads((run_dir / "preset.toml").read_text())
    tr = preset.get("train", {})
    epochs = int(tr.get("epochs", 10))
    steps = int(tr.get("steps_per_epoch") or cfg["steps"])
    ckpt_every = int(tr.get("checkpoint_every", 5))
    events = run_dir / "events.jsonl"
    initial = last_epoch_done(events) if resume else 0
    budget = preset.get("sweep", {}).get("budget")
    pause = None
    if budget is not None:
        phases = [int(p.get("train", {}).get("epochs", epochs)) for p in preset.get("phases", [])]
        total = sum(phases) or epochs
        rungs = asha.rungs(budget["min_epochs"], budget["eta"], total, phases, budget["rung_in_first_epoch"])
        pause = asha.pause_epoch(rungs, asha.read_passed(run_dir), initial)

    stop = {"flag": False}
    if cfg["ignore_term"]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    w = Writer(events, events_fd)
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    devices = [f"GPU:{i}" for i, d in enumerate(cvd.split(",")) if d and d != "-1"] or ["CPU:0"]
    w.emit(
        Started(
            time.time(),
            pid=os.getpid(),
            host=socket.gethostname(),
            devices=devices,
            epochs=epochs,
            initial_epoch=initial,
            steps_per_epoch=steps,
            restore_best=bool(tr.get("restore_best", True)),
            versions={"fake_worker": "1", "CUDA_VISIBLE_DEVICES": cvd},
        )
    )
    stage_sleep = float(cfg["stage_seconds"])

    def stage(name: str, message: str) -> None:  # the real worker's steps before the first batch
        w.emit(Phase(time.time(), name=name, message=message))
        time.sleep(stage_sleep)

    stage("data", "loading fake data")
    stage("build", "building the fake model")
    w.emit(ModelInfo(time.time(), total_params=1000, trainable_params=100, non_trainable_params=900, num_classes=3))
    stage("train", f"training for {epochs - initial} epochs of {steps} steps")
    step_sleep = float(cfg["epoch_seconds"]) / steps
    (run_dir / "backup").mkdir(exist_ok=True)
    for epoch in range(initial + 1, epochs + 1):
        t0 = time.time()
        w.emit(EpochBegin(time.time(), epoch=epoch))
        for step in range(1, steps + 1):
            if stop["flag"]:
                w.emit(
                    Finished(
                        time.time(),
                        status="cancelled",
                        reason=f"cancelled after epoch {epoch - 1}",
                        epochs_done=epoch - 1,
                    )
                )
                return 0
            time.sleep(step_sleep)
            w.emit(Batch(time.time(), epoch=epoch, step=step, steps=steps, metrics=metrics(epoch, step / steps)))
            if cfg["crash_at"] == epoch:
                print(f"Traceback (most recent call last):\nRuntimeError: fake crash in epoch {epoch}", flush=True)
                os._exit(int(cfg["exit_code"]))
            if cfg["nan_at"] == epoch:
                w.emit(
                    Finished(
                        time.time(),
                        status="failed",
                        epochs_done=epoch - 1,
                        reason=f"loss became NaN in epoch {epoch}: lower train.learning_rate",
                    )
                )
                return 1
        score = float(cfg["score"])
        w.emit(
            EpochEnd(
                time.time(), epoch=epoch, metrics=metrics(epoch, score=score), lr=1e-3, epoch_seconds=time.time() - t0
            )
        )
        (run_dir / "backup" / "epoch.json").write_text(json.dumps({"epoch": epoch}))
        if pause is not None and epoch == pause[1]:
            reason = f"paused at rung {pause[0] + 1} (epoch {epoch})"
            w.emit(Finished(time.time(), status="paused", reason=reason, epochs_done=epoch))
            return 0
        if ckpt_every and epoch % ckpt_every == 0:
            ck = run_dir / "checkpoints"
            ck.mkdir(exist_ok=True)
            path = ck / f"epoch-{epoch:04d}.keras"
            path.write_bytes(b"fake checkpoint")
            w.emit(Checkpoint(time.time(), epoch=epoch, path=str(path)))
    w.emit(Log(time.time(), message="fake training done"))
    # the curves only rise: the best val_acc epoch is the last one, whatever train.restore_best says
    w.emit(
        Finished(
            time.time(),
            status="completed",
            epochs_done=epochs,
            model_epoch=epochs,
            model_rule="best" if tr.get("restore_best", True) else "last",
        )
    )
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="fake_worker")
    ap.add_argument("job", choices=["train"])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--events-fd", type=int)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    return train(args.run_dir, args.events_fd, args.resume)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
