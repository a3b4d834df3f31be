"""``python -m tltui.worker train RUN_DIR --events-fd N [--resume]``: one training run.

Reads ``RUN_DIR/preset.toml``, trains, and reports through :class:`EventWriter`
only (``events.jsonl`` + the pipe). Everything else it prints (TensorFlow, Keras
progress, tracebacks) goes to stdout/stderr, which the parent sends to
``worker.log``. The last event is always ``finished``: ``completed``, ``failed``
(with a one-line reason) or ``cancelled`` (SIGTERM/SIGINT); exit code 1 on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tltui import __version__
from tltui.core import catalog, presets
from tltui.core.errors import PresetError, TltuiError
from tltui.core.protocol import (
    MODEL_RULES,
    TOP5_MIN_CLASSES,
    Evaluated,
    Finished,
    Log,
    ModelInfo,
    Phase,
    Started,
    TrainPhase,
)
from tltui.core.status import RunStatus
from tltui.core.workspace import RunPaths, write_json
from tltui.worker.errors import WorkerError
from tltui.worker.events import EventWriter, ignore_sigpipe

log = logging.getLogger("tltui.worker.train")


class TrainError(WorkerError):
    """A failure with a one-line reason the user can act on."""


@dataclass
class StopFlag:
    """Set by SIGTERM/SIGINT; training checks it at every batch end and between phases."""

    signal_name: str | None = None

    def __call__(self) -> bool:
        return self.signal_name is not None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal_name = signal.Signals(signum).name


@dataclass
class Outcome:
    status: str
    reason: str = ""
    epochs_done: int = 0
    model_path: str | None = None
    model_epoch: int | None = None
    model_rule: str = ""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tltui.worker train")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--events-fd", type=int, default=None, help="write events to this inherited fd too")
    p.add_argument("--resume", action="store_true", help="continue from the last completed epoch")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    ignore_sigpipe()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = RunPaths(args.run_dir.resolve())
    if not paths.preset.is_file():
        print(f"error: {paths.preset} does not exist", file=sys.stderr)
        return 2
    stop = StopFlag()
    stop.install()
    with EventWriter(paths.dir, args.events_fd) as writer:
        trainer = Trainer(paths, writer, stop, resume=args.resume)
        outcome = trainer.run()
        writer.emit(
            Finished(
                t=time.time(),
                status=outcome.status,
                reason=outcome.reason,
                epochs_done=outcome.epochs_done,
                model_path=outcome.model_path,
                model_epoch=outcome.model_epoch,
                model_rule=outcome.model_rule,
            ),
            sync=True,
        )
    return 1 if outcome.status == RunStatus.FAILED else 0


class Trainer:
    """One run from preset to ``model.keras``; :meth:`run` never raises."""

    def __init__(self, paths: RunPaths, writer: EventWriter, stop: StopFlag, *, resume: bool) -> None:
        self.paths = paths
        self.writer = writer
        self.stop = stop
        self.resume = resume
        self.preset: presets.Preset | None = None
        self.initial_epoch = 0
        self.stream: Any = None  # callbacks.EventStream once training starts
        self.dataset: Any = None  # data.Dataset once loaded
        self.strategy: Any = None
        self.cache_plan: Any = None  # feature_cache.Plan, decided per phase in _setup_phase
        self.resume_meta: dict[str, Any] = {}  # the backup's metadata a resume continues from
        self.kept: Any = None  # kept.KeptWeights with train.restore_best: the run's best epoch so far

    # ------------------------------------------------------------------ events

    def emit_log(self, level: str, message: str) -> None:
        getattr(log, "warning" if level == "warning" else "info")(message)
        self.writer.emit(Log(t=time.time(), level=level, message=message))

    def phase(self, name: str, message: str) -> None:
        log.info("phase %s: %s", name, message)
        self.writer.emit(Phase(t=time.time(), name=name, message=message))
        self.check_stop()

    def check_stop(self) -> None:
        if self.stop():
            from tltui.worker.callbacks import StopRequested

            raise StopRequested()

    @property
    def epochs_done(self) -> int:
        return max(self.initial_epoch, self.stream.epochs_done if self.stream else 0)

    # ------------------------------------------------------------------ run

    def run(self) -> Outcome:
        try:
            return self._run()
        except BaseException as e:  # noqa: BLE001 - every failure becomes a `finished` event
            return self._outcome_of(e)

    def _outcome_of(self, e: BaseException) -> Outcome:
        from tltui.worker.callbacks import DiskFull, NaNLoss, StopRequested, disk_full_reason
        from tltui.worker.tfds_fetch import Stopped

        if isinstance(e, StopRequested | KeyboardInterrupt | Stopped):
            how = self.stop.signal_name or "SIGINT"
            done = self.epochs_done
            return Outcome(RunStatus.CANCELLED, f"stopped by {how} after epoch {done}; checkpoints kept", done)
        traceback.print_exc()
        if isinstance(e, NaNLoss | TrainError | DiskFull):
            reason = str(e)
        elif isinstance(e, PresetError):
            reason = str(e.issues[0]) if e.issues else str(e)
        elif _is_user_error(e):
            reason = str(e)
        elif _is_oom(e):
            bs = self.preset.data.batch_size if self.preset else 0
            reason = (
                f"out of memory at batch size {bs}: try {max(1, bs // 2)} (data.batch_size) "
                "or a smaller data.image_size"
            )
        elif isinstance(e, OSError) and e.errno == errno.ENOSPC:
            reason = disk_full_reason(e.filename or self.paths.dir / "?")
        elif (op_reason := _op_error_reason(e, self.stream.epoch if self.stream else 0)) is not None:
            reason = op_reason
        else:
            first = (str(e).strip().splitlines() or [""])[0][:200]
            reason = f"{type(e).__name__}: {first} (traceback in worker.log)"
        return Outcome(RunStatus.FAILED, reason, self.epochs_done)

    def _run(self) -> Outcome:
        self.preset = presets.load(self.paths.preset)
        preset = self.preset
        self.initial_epoch = self._prepare_backup()
        devices, strategy = setup_devices(preset)
        self.strategy = strategy
        self.writer.emit(
            Started(
                t=time.time(),
                pid=os.getpid(),
                host=socket.gethostname(),
                devices=devices,
                epochs=preset.total_epochs,
                initial_epoch=self.initial_epoch,
                steps_per_epoch=preset.train.steps_per_epoch,
                versions=_versions(),
                restore_best=preset.train.restore_best,
            ),
            sync=True,
        )
        if self.resume:
            self.emit_log("info", f"resuming after epoch {self.initial_epoch}")
        self.check_stop()

        import keras

        from tltui.worker import data as data_mod

        keras.utils.set_random_seed(preset.train.seed)
        self.phase("data", f"loading {preset.data.source}")
        from tltui.core import decoded_store

        cache_root, cache_limit = decoded_store.cache_for(self.paths.dir)
        dataset = data_mod.load(
            preset,
            log=self.emit_log,
            emit=self.writer.emit,
            stop=self.stop,
            decoded_cache=cache_root,
            decoded_limit_bytes=cache_limit,
        )
        data_mod.write_info(dataset, self.paths, preset.data.image_size)
        test = f" / {dataset.test_examples} test" if dataset.test is not None else ""
        self.emit_log(
            "info",
            f"{dataset.num_classes} classes, {dataset.train_examples} training / "
            f"{dataset.val_examples or 0} validation{test} images "
            f"at {dataset.native_size[0]}x{dataset.native_size[1]}, {dataset.steps_per_epoch} steps per epoch",
        )
        if dataset.num_classes < TOP5_MIN_CLASSES:
            self.emit_log(
                "info",
                f"{dataset.num_classes} classes: top-5 accuracy is not reported (it would be 100% by construction)",
            )
        if self.initial_epoch and not dataset.exact_resume:
            self.emit_log(
                "warning",
                f"{preset.data.source} is read from disk through a shuffle buffer (too large for memory): the resumed "
                "epochs see another shuffle order than an uninterrupted run would (weights, optimizer, schedule and "
                "augmentation are restored exactly)",
            )

        self.phase("build", f"building {preset.model.backbone} (weights: {preset.model.weights})")
        set_precision(preset)
        self.dataset = dataset
        from tltui.worker import model as model_mod
        from tltui.worker import progress

        with strategy.scope(), progress.sending_to(self.writer.emit):
            model, backbone = model_mod.build_classifier(preset, dataset.num_classes, runs_dir=self.paths.dir.parent)
        self.check_stop()
        return self._train(model, backbone, dataset)

    def _prepare_backup(self) -> int:
        """The epoch a resume continues after (0 for a fresh start, which clears old backups)."""
        if not self.resume:
            shutil.rmtree(self.paths.backup, ignore_errors=True)
            return 0
        from tltui.core import runstate

        recorded = runstate.load(self.paths.events).epochs_done
        epoch = repair_backup(self.paths.backup, max_epoch=recorded)
        if epoch is None:
            self.emit_log("warning", f"no usable backup in {self.paths.backup}: starting from epoch 1")
            return 0
        self.resume_meta = json.loads((self.paths.backup / BACKUP_META).read_text())
        return epoch

    def _resume_point(self, count: int) -> tuple[int, int]:
        """The phase (from 0) training starts or continues in, and the epochs done before it began."""
        meta = self.resume_meta
        if not meta:
            return 0, 0
        k, start = int(meta.get("phase", 0)), int(meta.get("phase_start", 0))
        if meta.get("phase_complete"):
            k, start = k + 1, int(meta["epoch"])
        if k >= count:
            raise TrainError(
                f"the backup in {self.paths.backup} is from phase {k + 1} but the preset has {count}: "
                "start the run again without --resume"
            )
        return k, start

    def _train(self, model: Any, backbone: Any, dataset: Any) -> Outcome:
        """Every phase (one, for a preset without ``[[phases]]``), then ``model.keras`` and the test split."""
        from tltui.worker.callbacks import save_atomic
        from tltui.worker.kept import KeptWeights

        preset = self.preset
        assert preset is not None
        phases = preset.phase_presets()
        k, start = self._resume_point(len(phases))
        if preset.train.restore_best:
            self.kept = KeptWeights(self.paths.backup, model)
            self.kept.restore(self.resume_meta.get("kept"))
        reasons: list[str] = []
        while True:
            early, backup = self._fit_phase(model, backbone, dataset, phases, k, start)
            done = self.epochs_done
            holds = (early.kept_epoch if early is not None else None) or done  # the epoch the weights are now
            if early is not None and early.stopped_epoch > 0:
                where = f"phase {preset.phase_label(k)} " if preset.phases else ""
                reasons.append(
                    f"{where}stopped early after epoch {done}: val_acc did not improve for "
                    f"{phases[k].train.early_stopping_patience} epochs"
                )
                if k < len(phases) - 1:
                    self.emit_log("info", f"{reasons[-1]}; the next phase starts from its best epoch, {holds}")
            if k == len(phases) - 1:
                break
            # the next phase starts from these weights (early stopping's best, if it kept one)
            backup.save_boundary(model, done)
            k, start = k + 1, done
        kept, rule = self._final_weights(holds, "early_stopping" if holds != done else "last")
        self.phase("save", f"saving {self.paths.model} (the weights of epoch {kept}: {MODEL_RULES[rule]})")
        save_atomic(model, self.paths.model)
        if dataset.test is not None:
            self._evaluate_test(model, dataset, kept)
        return Outcome(RunStatus.COMPLETED, "; ".join(reasons), self.epochs_done, str(self.paths.model), kept, rule)

    def _final_weights(self, holds: int, rule: str) -> tuple[int, str]:
        """Put the weights ``model.keras`` gets in the model: the run's best epoch with ``train.restore_best``
        (when it kept one), else what the model holds now (epoch ``holds``, by ``rule``)."""
        kept = self.kept
        if kept is None or kept.epoch is None:
            return holds, rule
        if kept.epoch != holds:
            kept.load_into()
            self.emit_log(
                "info",
                f"model.keras gets the weights of epoch {kept.epoch}, the best val_acc of the run "
                f"({100 * (kept.value or 0):.1f}%), not those of epoch {holds}",
            )
        return kept.epoch, "best"

    def _setup_phase(
        self, model: Any, backbone: Any, p: presets.Preset, k: int, num_classes: int, steps: int | None
    ) -> int:
        """Freeze per ``p`` (phase ``k``, from 0), decide the feature cache, record the freeze map, compile
        (a new optimizer); returns the trainable parameter count."""
        from tltui.worker import feature_cache
        from tltui.worker import model as model_mod
        from tltui.worker.freeze import apply_freeze

        spec = model_mod.backbone_spec(p)
        freeze_map = apply_freeze(
            model,
            backbone,
            spec.family,
            p.freeze.depth,
            p.freeze.batchnorm,
            name=p.model.backbone,
            image_size=list(p.data.image_size),
        )
        if catalog.is_hub(p.model.backbone):
            from tltui.worker.hub import add_hub_details

            add_hub_details(freeze_map, backbone)
        ds = self.dataset
        if k > 0:  # its backup holds the whole model; the cache's head model is phase 1's
            self.cache_plan = feature_cache.Plan(False, "feature cache not used: it serves a run's first phase only")
        else:
            self.cache_plan = feature_cache.plan(
                p,
                model,
                backbone,
                spec.family,
                ds.train_examples if ds else None,
                ((ds.val_examples or 0) + (ds.test_examples or 0)) if ds else None,
            )
        freeze_map["feature_cache"] = self.cache_plan.use
        if self.preset is not None and self.preset.phases:
            freeze_map["phase"] = {"index": k + 1, "count": len(self.preset.phases), "name": self.preset.phases[k].name}
            self.paths.phase_dir(k + 1).mkdir(parents=True, exist_ok=True)
            write_json(self.paths.freeze_map_of(k + 1), freeze_map)  # each phase keeps its own
        write_json(self.paths.freeze_map, freeze_map)
        compile_model(model, p, num_classes, steps, self.emit_log)
        trainable = sum(_count(w.shape) for w in model.trainable_weights)
        non_trainable = sum(_count(w.shape) for w in model.non_trainable_weights)
        self.writer.emit(
            ModelInfo(
                t=time.time(),
                total_params=trainable + non_trainable,
                trainable_params=trainable,
                non_trainable_params=non_trainable,
                num_classes=num_classes,
                feature_cache=self.cache_plan.use,
            )
        )
        if self.cache_plan.use or not backbone.trainable_weights:
            self.emit_log("info", self.cache_plan.reason)
        return trainable

    def _fit_phase(
        self, model: Any, backbone: Any, dataset: Any, phases: list[presets.Preset], k: int, start: int
    ) -> tuple[Any, Any]:
        """Train phase ``k`` (from 0), which began after epoch ``start``; returns its early stopping
        (or ``None``) and its backup callback."""
        import keras

        from tltui.worker.callbacks import EarlyStop, EpochBackup, EpochScalars, EventStream, PeriodicCheckpoint

        preset = self.preset
        assert preset is not None
        p = phases[k]
        t = p.train
        meta = self.resume_meta
        within = bool(meta) and not meta.get("phase_complete") and int(meta.get("phase", 0)) == k
        self.initial_epoch = int(meta["epoch"]) if within else start
        end = start + t.epochs
        es_meta = meta.get("early_stopping") if within else None
        if isinstance(es_meta, dict) and es_meta.get("stopped_epoch"):
            end = self.initial_epoch  # early stopping had ended this phase: no epoch is trained again
        self.resume_meta = {}  # later phases start fresh
        steps = dataset.steps_per_epoch
        with (self.strategy or _default_strategy()).scope():
            trainable = self._setup_phase(model, backbone, p, k, dataset.num_classes, steps)
        if preset.phases:
            self.writer.emit(
                TrainPhase(
                    t=time.time(),
                    index=k + 1,
                    count=len(phases),
                    name=preset.phases[k].name,
                    start_epoch=start,
                    epochs=t.epochs,
                    total_epochs=start + sum(q.train.epochs for q in phases[k:]),
                    freeze_depth=p.freeze.depth,
                    batchnorm=p.freeze.batchnorm,
                    optimizer=t.optimizer,
                    learning_rate=t.learning_rate,
                    trainable_params=trainable,
                ),
                sync=True,
            )
        if meta.get("phase_complete"):
            # resumed at a phase boundary: the weights it ended with, now (the movement record counts from them)
            from tltui.worker.callbacks import load_backup

            load_backup(model, self.paths.backup / BACKUP_WEIGHTS, optimizer=False)
        self.check_stop()
        fit_model = model
        if self.cache_plan is not None and self.cache_plan.use:
            fit_model, train_ds, val_ds = self._cached_features(model, dataset, p)
        else:
            train_ds, val_ds = dataset.train_batches(self.initial_epoch), dataset.eval_batches(dataset.val)
        if t.label_smoothing > 0:
            train_ds, val_ds = one_hot(train_ds, dataset.num_classes), one_hot(val_ds, dataset.num_classes)
        self.stream = EventStream(self.writer, steps, self.stop)
        checkpoints = PeriodicCheckpoint(
            self.paths.checkpoints,
            t.checkpoint_every,
            self.writer,
            export_model=model,
            resumed_after=self.initial_epoch,
        )
        early = None
        if t.early_stopping_patience > 0 and val_ds is not None:
            early = EarlyStop(
                monitor="val_acc", mode="max", patience=t.early_stopping_patience, restore_best_weights=True
            )
        # Order: early stopping decides first; the backup (with that decision) next; then the epoch's
        # `epoch_end` event and checkpoint, so a kill in between never makes a resume train a recorded
        # epoch again (a backup ahead of the events, killed right after it, is rolled back by
        # _prepare_backup). EpochBackup is Keras's BackupAndRestore(save_freq="epoch",
        # double_checkpoint=True, delete_checkpoint=False), cheaper, plus seeds and early stopping.
        moved = self._moved(
            model, fit_model, fresh=self.initial_epoch == start, phase=k if preset.phases else None, start=start
        )
        backup = EpochBackup(
            self.paths.backup, early_stopping=early, moved=moved, phase=k, phase_start=start, kept=self.kept
        )
        callbacks: list[keras.callbacks.Callback] = [
            *([early] if early is not None else []),
            backup,
            self.stream,
            checkpoints,
            EpochScalars(self.paths.tensorboard),  # TensorBoard's epoch scalars, no per-batch hook
        ]
        from tltui.worker import faults  # test-only, inert unless TLTUI_FAULT or RUN_DIR/fault.json asks

        train_ds = faults.wrap_dataset(self.paths.dir, train_ds, steps, self.initial_epoch)
        callbacks = faults.callbacks(self.paths.dir) + callbacks
        what = f"phase {preset.phase_label(k)}: " if preset.phases else ""
        self.phase("train", f"{what}training for {t.epochs} epochs of {steps} steps")
        try:
            fit_model.fit(
                train_ds,
                validation_data=val_ds,
                initial_epoch=start,
                epochs=end,
                steps_per_epoch=steps,  # always given: one iterator over the endless stream, no extra step
                callbacks=callbacks,
                verbose=0,  # progress goes out as events (and one worker.log line per epoch, EventStream)
            )
        finally:
            # fit raised (stop, NaN, ...): the checkpoint being written in the background still lands (its
            # own error, if any, is second to fit's); after a normal end on_train_end has waited already
            checkpoints.drain()
        if moved is not None and moved.feature_cache:  # the backbone was not in the graph: measure it now
            moved.record_all(self.epochs_done)
        return early, backup

    def _moved(self, model: Any, fit_model: Any, *, fresh: bool, phase: int | None = None, start: int = 0) -> Any:
        """The per-layer movement record (``moved.json``, and the phase's own in a phased run) of the
        classifier, fed by the model that trains, or ``None``; a phase of a phased run counts from its own
        start."""
        from tltui.worker.moved import MovedWeights

        since = "the start of the run"
        outs = [self.paths.moved]
        if phase is not None and self.preset is not None:
            since = f"the start of phase {self.preset.phase_label(phase)} (after epoch {start})"
            outs.append(self.paths.moved_of(phase + 1))
        moved = MovedWeights(
            model,
            self.paths.backup,
            outs,
            fresh=fresh,
            since=since,
            phase=None if phase is None else phase + 1,
            fit_model=fit_model,
        )
        if not moved.active:
            self.emit_log("info", f"weights moved per layer: not recorded ({moved.why})")
            return None
        return moved

    def _evaluate_test(self, model: Any, dataset: Any, kept: int) -> None:
        """The test split, once, with the weights ``model.keras`` holds."""
        preset = self.preset
        assert preset is not None
        self.phase("test", f"evaluating {dataset.test_examples} test images with the weights of epoch {kept}")
        test_ds = dataset.eval_batches(dataset.test)
        if preset.train.label_smoothing > 0:
            test_ds = one_hot(test_ds, dataset.num_classes)
        results = model.evaluate(test_ds, return_dict=True, verbose=0)
        metrics = {f"test_{k}": float(v) for k, v in results.items() if k in ("loss", "acc", "top5_acc")}
        self.writer.emit(
            Evaluated(
                t=time.time(),
                split=preset.data.test_split,
                examples=dataset.test_examples,
                weights_epoch=kept,
                metrics=metrics,
            ),
            sync=True,
        )
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        self.emit_log("info", f"test split {preset.data.test_split!r}: {shown}")

    def _cached_features(self, model: Any, dataset: Any, preset: presets.Preset) -> tuple[Any, Any, Any]:
        """The head model (sharing the classifier's head layers) and the cached feature datasets."""
        from tltui.worker import feature_cache

        self.phase("features", "computing the frozen backbone's features once (feature cache)")
        with (self.strategy or _default_strategy()).scope():
            cached = feature_cache.build(
                model,
                dataset,
                lambda head: compile_model(head, preset, dataset.num_classes, dataset.steps_per_epoch, self.emit_log),
                start_epoch=self.initial_epoch,
                emit=self.writer.emit,
            )
        self.emit_log(
            "info",
            f"feature cache: {cached.train_examples} training / {cached.val_examples} validation feature vectors "
            f"({cached.feature_dim} each) computed in {cached.seconds:.1f} s; training the head only",
        )
        return cached.head, cached.train, cached.val


# --------------------------------------------------------------------------- setup helpers


#: BackupAndRestore's files (keras.callbacks.BackupAndRestore), and its ``double_checkpoint`` copies.
BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_META = "training_metadata.json"


def repair_backup(backup: Path, max_epoch: int | None = None) -> int | None:
    """Make ``backup`` loadable and return the epoch it holds, or ``None`` (and clear it).

    Keras writes the backup in place, so a kill -9 mid-write leaves a truncated
    weights file or metadata; then the previous copy (``double_checkpoint``) is used.
    ``max_epoch`` (the last epoch ``events.jsonl`` records): a backup saved after a
    later epoch, whose end event the kill prevented, is skipped for the previous copy,
    so the resumed history has no hole.
    """
    pairs = [(backup / BACKUP_WEIGHTS, backup / BACKUP_META)]
    pairs.append((backup / f"{BACKUP_WEIGHTS}.bkp", backup / f"{BACKUP_META}.bkp"))
    for i, (weights, meta) in enumerate(pairs):
        epoch = _meta_epoch(meta)
        if epoch is None or (max_epoch is not None and epoch > max_epoch) or not _h5_readable(weights):
            continue
        if _h5_epoch(weights) not in (None, epoch):  # killed between the weights and the metadata
            continue
        if not all(_h5_readable(backup / f) for f in _meta_files(meta)):  # early stopping's or the kept weights
            continue
        if i > 0:
            shutil.copyfile(weights, pairs[0][0])
            shutil.copyfile(meta, pairs[0][1])
        return epoch
    shutil.rmtree(backup, ignore_errors=True)
    return None


def _meta_epoch(path: Path) -> int | None:
    try:
        epoch = json.loads(path.read_text())["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epoch if isinstance(epoch, int) and epoch >= 0 else None


def _meta_files(path: Path) -> list[str]:
    """The weights files besides the pair that a backup's metadata names (they must be readable too)."""
    from tltui.worker.callbacks import referenced_files

    try:
        return referenced_files(json.loads(path.read_text()))
    except (OSError, ValueError):
        return []


def _h5_epoch(path: Path) -> int | None:
    """The epoch a backup weights file says it holds (tltui's backups have it; Keras's do not)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            e = f.attrs.get("epoch")
            return None if e is None else int(e)
    except Exception:  # noqa: BLE001
        return None


def _h5_readable(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r"):
            return True
    except Exception:  # noqa: BLE001 - truncated, missing or not HDF5: not usable
        return False


def setup_devices(preset: presets.Preset) -> tuple[list[str], Any]:
    """Visible devices as names, and the distribution strategy for ``train.gpus``."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    named = [g for g in visible.split(",") if g.strip()] if visible and visible != "-1" else []
    if named and len(gpus) < len(named):
        raise TrainError(
            f"CUDA_VISIBLE_DEVICES={visible} but TensorFlow sees {len(gpus)} GPU(s): check the driver "
            "(nvidia-smi) and install the CUDA build (pip install 'tltui[gpu]')"
        )
    want = preset.train.gpus
    if want is not None and want > len(gpus):
        raise TrainError(f"train.gpus = {want} but TensorFlow sees {len(gpus)} GPU(s)")
    if want == 0 and gpus:
        tf.config.set_visible_devices([], "GPU")
        gpus = []
    use = gpus[: want or 1] if gpus else []
    names = [g.name.replace("/physical_device:", "") for g in use] or ["CPU"]
    if len(use) > 1:
        strategy = tf.distribute.MirroredStrategy(devices=[f"/gpu:{i}" for i in range(len(use))])
    else:
        strategy = tf.distribute.get_strategy()
    return names, strategy


def _default_strategy() -> Any:
    import tensorflow as tf

    return tf.distribute.get_strategy()


def set_precision(preset: presets.Preset) -> None:
    import keras

    mp = preset.train.mixed_precision
    if mp:
        keras.mixed_precision.set_global_policy("mixed_float16" if mp is True else mp)


def make_optimizer(preset: presets.Preset, steps_per_epoch: int | None, log_fn: Any) -> Any:
    import keras

    t = preset.train
    lr: Any = t.learning_rate
    if t.lr_schedule == "cosine":
        if steps_per_epoch:
            lr = keras.optimizers.schedules.CosineDecay(t.learning_rate, decay_steps=t.epochs * steps_per_epoch)
        else:
            log_fn("warning", 'train.lr_schedule = "cosine" needs a known epoch length; using a constant rate')
    wd = t.weight_decay or None
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=wd)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(lr, weight_decay=wd)
    if t.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=t.weight_decay)
    return keras.optimizers.RMSprop(lr, momentum=t.momentum, weight_decay=wd)


def compile_model(
    model: Any, preset: presets.Preset, num_classes: int, steps_per_epoch: int | None, log_fn: Any
) -> None:
    """Loss and metrics whose log keys are exactly loss, acc, top5_acc (and val_ twins); no top5_acc
    with fewer than :data:`TOP5_MIN_CLASSES` classes."""
    import keras

    t = preset.train
    top5 = num_classes >= TOP5_MIN_CLASSES  # with 5 classes or fewer top-5 accuracy is 100% by construction
    if t.label_smoothing > 0:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="acc")]
        if top5:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_acc"))
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="acc")]
        if top5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_acc"))
    model.compile(
        optimizer=make_optimizer(preset, steps_per_epoch, log_fn),
        loss=loss,
        metrics=metrics,
        jit_compile=t.jit_compile,
    )


def one_hot(ds: Any, num_classes: int) -> Any:
    if ds is None:
        return None
    import tensorflow as tf

    return ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)))


def _count(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _is_user_error(e: BaseException) -> bool:
    """A failure the user can fix: its message is the run's reason as it is."""
    return isinstance(e, TltuiError)


def _is_oom(e: BaseException) -> bool:
    if "tensorflow" not in sys.modules:
        return isinstance(e, MemoryError)
    import tensorflow as tf

    return isinstance(e, tf.errors.ResourceExhaustedError | MemoryError)


def _op_error_reason(e: BaseException, epoch: int) -> str | None:
    """A one-line reason for a TensorFlow runtime error while training: a lost GPU, a failing input pipeline."""
    if "tensorflow" not in sys.modules:
        return None
    import tensorflow as tf

    if not isinstance(e, tf.errors.OpError):
        return None
    msg = e.message or str(e)
    where = f" in epoch {epoch}" if epoch else ""
    detail = _error_detail(msg)
    if re.search(r"CUDA|cuDNN|cuBLAS|\bGPU\b|NCCL", msg):
        return f"the GPU failed{where} ({detail}): check it with nvidia-smi, then resume the run (checkpoints kept)"
    if "Iterator" in msg or "PyFunc" in msg or "EagerPyFunc" in msg:
        return (
            f"reading the training data failed{where} ({detail}): check the files of data.source, then resume the run"
        )
    return None


def _error_detail(msg: str) -> str:
    """The informative line of a TensorFlow error message (the Python exception, else the first real line)."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    noise = (
        "Graph execution error",
        "Detected at node",
        "Traceback",
        "File ",
        "[[{{",
        "Stack trace",
        "Error in user-defined",
    )
    useful = [ln for ln in lines if not ln.startswith(noise)]
    exc = [ln for ln in useful if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln)]
    return ((exc or useful or [msg.strip()])[-1 if exc else 0])[:200]


def _versions() -> dict[str, str]:
    out = {"tltui": __version__, "python": platform.python_version()}
    for mod in ("tensorflow", "keras"):
        with contextlib.suppress(Exception):  # a version we cannot read is left out of the record
            out[mod] = __import__(mod).__version__
    return out
