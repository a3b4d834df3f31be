"""Target 1: steady-state epoch time of ``tltui run`` vs a bare ``model.fit`` script.

Side A is the real thing: ``tltui run PRESET --plain`` (the CLI, the supervisor, the
worker subprocess with all its callbacks: event streaming to events.jsonl and the
pipe, periodic atomic checkpoints, TensorBoard, the per-epoch backup). Side B is a bare
script (``python -m bench.harness --bare ...``, a separate process as well) that
loads the same data with the worker's own ``data.load``, builds the same model with
the worker's own builder/freeze/compile and calls ``model.fit(verbose=0)`` with no
callbacks but a clock.

An epoch's time is the gap between consecutive epoch starts (so it includes every
end-of-epoch callback); the first epoch (graph tracing) and the last (no next start)
are left out. Processes alternate A B B A ...

The estimate of a side's steady-state epoch counts the preset's periodic checkpoint at its real
rate and is robust to the host's own hiccups (on this VM an epoch now and then takes up to twice as
long with no more CPU time, on either side): with ``checkpoint_every = k``, the median epoch time at
each position of the k-epoch cycle (epoch number mod k), averaged over the k positions. The epoch
that ends with a checkpoint is one position; the next epoch, during which the archive is written in
the background, is another; so both costs count once per k epochs. Both sides are split the same
way. The plain mean is printed alongside, and ``--raw FILE`` keeps every epoch time.

``python -m bench.harness [--tiny] [--rounds N] [--epochs N]``; ``--hooks``: each worker callback's hooks timed
during one real fit (where the fixed per-epoch cost goes); ``--profile``: each callback alone, fit by fit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import DEMO, PYTHON, REPO, Result, emit, load_average, median, preset_file, run_env


def demo_data(root: Path) -> Path:
    """A private copy of the demo's shapes dataset (others may regenerate the shipped one)."""
    from tltui.core import demo

    shapes = root / "shapes"
    if not demo.is_complete(shapes):
        demo.generate(shapes, per_class=demo.DEFAULT_PER_CLASS, size=demo.DEFAULT_SIZE, seed=0)
    return shapes


def overrides(tiny: bool, epochs: int, data: Path | None = None) -> list[str]:
    sets = [f"train.epochs={epochs}"]
    if data is not None:
        sets.append(f'data.source="folder:{data}"')
    if tiny:
        sets += [
            'model.backbone="tiny_cnn"',
            "data.train_limit=64",
            "data.val_limit=32",
            "data.image_size=[32, 32]",
            "train.checkpoint_every=1",
        ]
    return sets


def gaps(starts: Sequence[float]) -> list[tuple[int, float]]:
    """``(epoch, seconds)`` from epoch start times (epoch 1 first), without the first (tracing) epoch."""
    return [(i + 2, b - a) for i, (a, b) in enumerate(zip(starts[1:], starts[2:], strict=False))]


def steady_epoch(epochs: Sequence[tuple[int, float]], every: int) -> float:
    """The expected epoch time with a checkpoint every ``every`` epochs: the median at each position of
    the checkpoint cycle (epoch mod ``every``), averaged over the positions (robust to outliers, honest
    about the checkpoint's cost on the epoch that takes it and on the next one)."""
    if every <= 1:
        return median([s for _, s in epochs])
    by_position: dict[int, list[float]] = {}
    for e, s in epochs:
        by_position.setdefault(e % every, []).append(s)
    if len(by_position) < every:
        raise ValueError(f"need epochs at all {every} positions of the checkpoint cycle, got {sorted(by_position)}")
    return sum(median(v) for v in by_position.values()) / every


def checkpoint_every(preset: Path, sets: list[str]) -> int:
    from tltui.core import presets

    return presets.load(preset, presets.parse_set(sets)).train.checkpoint_every


def run_tltui(home: Path, sets: list[str], env: dict[str, str], preset: Path = DEMO) -> list[tuple[int, float]]:
    import subprocess

    cmd = [PYTHON, "-m", "tltui", "--workspace", str(home), "run", str(preset), "--plain"]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"tltui run failed ({proc.returncode}): {proc.stderr[-2000:]}{proc.stdout[-2000:]}")
    runs = sorted((home / "runs").iterdir(), key=lambda p: p.name)
    starts = []
    for line in (runs[-1] / "events.jsonl").read_text().splitlines():
        ev = json.loads(line)
        if ev.get("type") == "epoch_begin":
            starts.append(float(ev["t"]))
    return gaps(starts)


def run_bare(sets: list[str], env: dict[str, str], out: Path, preset: Path = DEMO) -> list[tuple[int, float]]:
    import subprocess

    cmd = [PYTHON, "-m", "bench.harness", "--bare", str(out), "--preset", str(preset)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"bare fit failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return gaps(json.loads(out.read_text()))


def setup(preset_path: Path, sets: list[str]) -> tuple[Any, Any, Any, Any]:
    """What the worker builds for one phase, with the worker's own code: the preset, its data, the
    frozen and compiled classifier, and the model ``fit`` trains (with ``data.augment``, the classifier
    augmenting its batches in its training step: :class:`tltui.worker.augment.AugmentInTraining` with
    the classifier's optimizer)."""
    import keras

    from tltui.core import presets
    from tltui.worker import data as data_mod
    from tltui.worker import model as model_mod
    from tltui.worker.compile import compile_model
    from tltui.worker.freeze import apply_freeze

    preset = presets.load(preset_path, presets.parse_set(sets))
    keras.utils.set_random_seed(preset.train.seed)
    ds = data_mod.load(preset)
    model, backbone = model_mod.build_classifier(preset, ds.num_classes)
    spec = model_mod.backbone_spec(preset)
    apply_freeze(model, backbone, spec.family, preset.freeze.depth, preset.freeze.batchnorm)
    compile_model(model, preset, ds.num_classes, ds.steps_per_epoch, lambda *a: None)
    fitted = model
    if ds.augment:
        from tltui.worker.augment import AugmentInTraining

        fitted = AugmentInTraining(model)
        compile_model(fitted, preset, ds.num_classes, ds.steps_per_epoch, lambda *a: None)
        fitted.optimizer = model.optimizer
    return preset, ds, model, fitted


def bare_main(out: Path, sets: list[str], preset_path: Path = DEMO) -> int:
    """The bare script: same data, model and batch size; plain ``model.fit``."""
    import keras

    preset, ds, model, fitted = setup(preset_path, sets)
    starts: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            starts.append(time.time())

    fitted.fit(
        ds.train_batches(),
        validation_data=ds.eval_batches(ds.val),
        epochs=preset.train.epochs,
        steps_per_epoch=ds.steps_per_epoch,
        callbacks=[Clock()],
        verbose=0,
    )
    out.write_text(json.dumps(starts))
    return 0


def profile_main(sets: list[str], rounds: int, preset_path: Path = DEMO) -> int:
    """Which callback costs what: one process, one model, ``fit(epochs=4)`` per variant, interleaved;
    a variant's figure is the mean of its epochs 2 and 3 (start to start, so end-of-epoch work counts,
    and so does background work an epoch end leaves to the next epoch)."""
    import keras

    from tltui.worker.backup import EpochBackup
    from tltui.worker.checkpoint import PeriodicCheckpoint
    from tltui.worker.event_stream import EventStream
    from tltui.worker.events import EventWriter
    from tltui.worker.scalars import EpochScalars

    preset, ds, model, fitted = setup(preset_path, sets)
    tmp = Path(tempfile.mkdtemp(prefix="tltui-bench-profile-"))

    class SyncCheckpoint(PeriodicCheckpoint):
        """The checkpoint as it was before the archive plan: ``model.save`` on the training thread."""

        def _plan_for(self, model: Any) -> None:
            return None

    counter = [0]

    def fresh(name: str) -> Path:
        counter[0] += 1
        d = tmp / f"{name}{counter[0]}"
        d.mkdir()
        return d

    def writer() -> EventWriter:
        return EventWriter(fresh("run"))

    variants: dict[str, Any] = {
        "bare (verbose=0)": lambda: ([], 0),
        "verbose=2": lambda: ([], 2),
        "EventStream": lambda: ([EventStream(writer(), ds.steps_per_epoch, lambda: False)], 0),
        "TensorBoard": lambda: ([keras.callbacks.TensorBoard(log_dir=str(fresh("tb")), write_graph=False)], 0),
        "EpochScalars (the worker's)": lambda: ([EpochScalars(fresh("tb"))], 0),
        "BackupAndRestore": lambda: (
            [keras.callbacks.BackupAndRestore(str(fresh("backup")), save_freq="epoch", delete_checkpoint=False)],
            0,
        ),
        "EpochBackup (the worker's)": lambda: ([EpochBackup(fresh("backup"))], 0),
        "EpochBackup + weights-moved record": lambda: ([moved_backup(fresh("backup"))], 0),
        "checkpoint every epoch (model.save)": lambda: (
            [SyncCheckpoint(fresh("ckpt"), 1, writer(), export_model=model)],
            0,
        ),
        "checkpoint every epoch (the worker's)": lambda: (
            [PeriodicCheckpoint(fresh("ckpt"), 1, writer(), export_model=model)],
            0,
        ),
    }

    def moved_backup(d: Path) -> EpochBackup:
        from tltui.worker.moved import MovedWeights

        return EpochBackup(d, moved=MovedWeights(model, d, d / "moved.json", fresh=True))

    train, val = ds.train_batches(), ds.eval_batches(ds.val)
    fitted.fit(train, epochs=1, steps_per_epoch=ds.steps_per_epoch, verbose=0)  # tracing
    results: dict[str, list[float]] = {k: [] for k in variants}
    cpu_results: dict[str, list[float]] = {k: [] for k in variants}  # process CPU time: robust to load
    for _ in range(rounds):
        for name, make in variants.items():
            cbs, verbose = make()
            starts: list[float] = []
            cpu: list[float] = []

            class Clock(keras.callbacks.Callback):  # starts/cpu: this iteration's lists, used within it
                def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                    starts.append(time.time())  # noqa: B023
                    cpu.append(time.process_time())  # noqa: B023

            fitted.fit(
                train,
                validation_data=val,
                epochs=4,
                steps_per_epoch=ds.steps_per_epoch,
                callbacks=[Clock(), *cbs],
                verbose=verbose,
            )
            # epochs 2 and 3: work a callback leaves to a background thread lands in the next epoch, measured too
            results[name].append((starts[3] - starts[1]) / 2)
            cpu_results[name].append((cpu[3] - cpu[1]) / 2)
    base = median(results["bare (verbose=0)"])
    base_cpu = median(cpu_results["bare (verbose=0)"])
    for name, times in results.items():
        m, c = median(times), median(cpu_results[name])
        print(
            f"profile: {name:<38} epoch {m:.3f} s wall ({m - base:+.3f} s, ratio {m / base:.3f}); "
            f"{c:.3f} s CPU ({c - base_cpu:+.3f} s, ratio {c / base_cpu:.3f})",
            flush=True,
        )
    return 0


HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_batch_end", "on_test_batch_end")


def hooks_main(sets: list[str], epochs: int, preset_path: Path = DEMO) -> int:
    """Where the worker's fixed per-epoch cost goes: one real fit of the demo model with the worker's epoch
    callbacks, wired as ``tltui/worker/train.py`` wires them (the backup, feeding the kept epoch and the
    movement record; the event stream; the periodic checkpoint; the TensorBoard scalars), each hook a
    callback overrides timed on the training thread, and each checkpoint's background write on its own
    thread. A direct measurement of what the side-by-side ratio cannot resolve on a loaded machine."""
    import keras

    from tltui.worker.backup import EpochBackup
    from tltui.worker.checkpoint import PeriodicCheckpoint
    from tltui.worker.event_stream import EventStream
    from tltui.worker.events import EventWriter
    from tltui.worker.kept import KeptWeights
    from tltui.worker.moved import MovedWeights
    from tltui.worker.scalars import EpochScalars

    preset, ds, model, fitted = setup(preset_path, sets)
    run = Path(tempfile.mkdtemp(prefix="tltui-bench-hooks-"))
    writer = EventWriter(run)
    backup = run / "backup"
    moved = MovedWeights(model, backup, run / "moved.json", fresh=True)
    ckpt = PeriodicCheckpoint(run / "checkpoints", preset.train.checkpoint_every, writer, export_model=model)
    callbacks = [
        EpochBackup(backup, moved=moved, kept=KeptWeights(backup, model)),
        EventStream(writer, ds.steps_per_epoch, lambda: False),
        ckpt,
        EpochScalars(run / "tensorboard"),
    ]
    took: dict[str, list[float]] = {}

    def timed(key: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                took.setdefault(key, []).append(time.perf_counter() - t0)

        return call

    for cb in callbacks:
        for hook in HOOKS:
            if getattr(type(cb), hook) is not getattr(keras.callbacks.Callback, hook):  # only what it overrides
                setattr(cb, hook, timed(f"{type(cb).__name__}.{hook}", getattr(cb, hook)))
    submit = ckpt._background.submit
    ckpt._background.submit = lambda job: submit(timed("PeriodicCheckpoint background write", job))
    starts: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            starts.append(time.perf_counter())

    fitted.fit(
        ds.train_batches(),
        validation_data=ds.eval_batches(ds.val),
        epochs=epochs,
        steps_per_epoch=ds.steps_per_epoch,
        callbacks=[Clock(), *callbacks],
        verbose=0,
    )
    writer.close()
    epoch = (starts[-1] - starts[1]) / max(1, len(starts) - 2)  # epochs 2 .. n-1, start to start
    on_thread = 0.0
    for key, times in sorted(took.items(), key=lambda kv: -sum(kv[1])):
        per_epoch = sum(times) / epochs
        if "background" not in key:
            on_thread += per_epoch
        print(
            f"hooks: {key:<40} {len(times):4d} calls, median {1000 * median(times):7.2f} ms, "
            f"max {1000 * max(times):7.1f} ms, {1000 * per_epoch:7.2f} ms/epoch",
            flush=True,
        )
    print(
        f"hooks: on the training thread {1000 * on_thread:.1f} ms/epoch = {100 * on_thread / epoch:.2f} % of a "
        f"{epoch:.2f} s epoch ({epochs} epochs, {ds.steps_per_epoch} steps each, load {load_average()})",
        flush=True,
    )
    return 0


def run(
    tiny: bool = False, rounds: int | None = None, epochs: int | None = None, raw: Path | None = None
) -> list[Result]:
    rounds = rounds or (1 if tiny else 3)
    # 10 epochs: the steady window is epochs 2-9 (8 gaps), of which two (4 and 8) end with the demo's
    # periodic checkpoint (checkpoint_every = 4).
    epochs = epochs or (3 if tiny else 10)
    a: list[tuple[int, float]] = []
    b: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="tltui-bench-harness-") as tmp:
        sets = overrides(tiny, epochs, demo_data(Path(tmp)))
        preset = preset_file(tiny, Path(tmp))
        every = checkpoint_every(preset, sets)
        env = run_env(Path(tmp) / "home")
        if tiny:
            env["TLTUI_TEST_BACKBONES"] = "1"
        for r in range(rounds):
            order = ("tltui", "bare") if r % 2 == 0 else ("bare", "tltui")
            for side in order:
                if side == "tltui":
                    a += run_tltui(Path(tmp) / f"ws{r}", sets, env, preset)
                else:
                    b += run_bare(sets, env, Path(tmp) / f"bare{r}.json", preset)
    if raw is not None:
        raw.write_text(json.dumps({"checkpoint_every": every, "tltui": a, "bare": b}))
    mean = lambda xs: sum(s for _, s in xs) / len(xs)  # noqa: E731
    note = (
        f"{len(a)} vs {len(b)} steady epochs, {rounds} alternating rounds, demo preset; checkpoint every "
        f"{every}: mean over the cycle of per-position medians (plain means {mean(a):.2f} vs {mean(b):.2f} s, "
        f"ratio {mean(a) / mean(b):.3f})"
    )
    if tiny:
        note = "tiny mode: not a measurement"
    return [
        Result(
            "harness",
            "steady-state epoch",
            "tltui run",
            steady_epoch(a, every),
            "bare model.fit",
            steady_epoch(b, every),
            "s",
            "<= 1.03",
            note=note,
        )
    ]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.harness")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--rounds", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--profile", action="store_true", help="the cost of each worker callback, in one process")
    p.add_argument("--hooks", action="store_true", help="each worker callback hook timed during one real fit")
    p.add_argument("--raw", type=Path, help="write every epoch time of both sides to this JSON file")
    p.add_argument("--train-limit", type=int, default=480, help="--profile: training images (fixed costs per epoch)")
    p.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--preset", type=Path, default=DEMO, help=argparse.SUPPRESS)
    p.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bare:
        return bare_main(args.bare, args.set, args.preset)
    if args.hooks:
        if args.tiny:
            os.environ.setdefault("TLTUI_TEST_BACKBONES", "1")
        with tempfile.TemporaryDirectory(prefix="tltui-bench-harness-") as tmp:
            epochs = args.epochs or (3 if args.tiny else 13)
            return hooks_main(
                overrides(args.tiny, epochs, demo_data(Path(tmp))), epochs, preset_file(args.tiny, Path(tmp))
            )
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="tltui-bench-harness-") as tmp:
            preset = preset_file(args.tiny, Path(tmp))
            sets = overrides(args.tiny, 3, demo_data(Path(tmp))) + [f"data.train_limit={args.train_limit}"]
            return profile_main(sets, args.rounds or 2, preset)
    emit(run(args.tiny, args.rounds, args.epochs, args.raw))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
