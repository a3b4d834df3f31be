"""``python -m tltui.worker train RUN_DIR --events-fd N [--resume]``: one training run.

Reads ``RUN_DIR/preset.toml``, trains, and reports through :class:`EventWriter`
only (``events.jsonl`` + the pipe). Everything else it prints (TensorFlow, Keras
progress, tracebacks) goes to stdout/stderr, which the parent sends to
``worker.log``. The last event is always ``finished``: ``completed``, ``failed``
(with a one-line reason) or ``cancelled`` (SIGTERM/SIGINT); exit code 1 on failure.

The run's story is :class:`Trainer`, in the order it happens: start (the preset, the backup a
resume continues from, the devices), the data, the model, then each phase (freeze, compile, fit
with the epoch callbacks), then ``model.keras`` and the test split. Its parts live in modules
named for their job: :mod:`~tltui.worker.devices`, :mod:`~tltui.worker.compile`,
:mod:`~tltui.worker.backup` (resume), the callbacks (:mod:`~tltui.worker.event_stream`,
:mod:`~tltui.worker.checkpoint`, :mod:`~tltui.worker.early_stop`, :mod:`~tltui.worker.scalars`,
:mod:`~tltui.worker.kept`, :mod:`~tltui.worker.moved`) and :mod:`~tltui.worker.reasons` (how a
failure reads).

Modules that load TensorFlow are imported inside the methods that first need them: ``main``
installs the stop flag before TensorFlow's few seconds of import, so a SIGTERM during it is
still a clean ``cancelled``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tltui import __version__
from tltui.core import accel, catalog, presets, runstate
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
from tltui.worker import hparams, reasons, replicas
from tltui.worker.compile import compile_model, one_hot
from tltui.worker.devices import default_strategy, gpu_descriptions, set_precision, setup_devices
from tltui.worker.errors import TrainError
from tltui.worker.events import EventWriter, ignore_sigpipe

if TYPE_CHECKING:
    import keras

    from tltui.worker.backup import EpochBackup
    from tltui.worker.checkpoint import PeriodicCheckpoint
    from tltui.worker.data import Dataset, Split
    from tltui.worker.early_stop import EarlyStop
    from tltui.worker.event_stream import EventStream
    from tltui.worker.feature_cache import Plan
    from tltui.worker.kept import KeptWeights
    from tltui.worker.moved import MovedWeights

log = logging.getLogger("tltui.worker.train")


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


@dataclass
class PhaseCallbacks:
    """One phase's epoch callbacks, in the order fit calls them (:attr:`ordered`; see
    :meth:`Trainer._callbacks` for why that order)."""

    early: EarlyStop | None
    backup: EpochBackup
    checkpoints: PeriodicCheckpoint
    moved: MovedWeights | None
    ordered: list[keras.callbacks.Callback]


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
        self.stream: EventStream | None = None  # once training starts
        self.dataset: Dataset | None = None  # once loaded
        self.strategy: Any = None
        self.replicas = 1  # the strategy's replicas in sync (train.gpus > 1: one per GPU)
        self.gpus: list[accel.Gpu] = []  # the GPUs the run uses, as TensorFlow describes them
        self.cache_plan: Plan | None = None  # decided per phase in _setup_phase
        self.resume_meta: dict[str, Any] = {}  # the backup's metadata a resume continues from
        self.kept: KeptWeights | None = None  # with train.restore_best: the run's best epoch so far
        self.notes: list[str] = []  # how each phase that stopped early ended (the backup keeps them)

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
            from tltui.worker.event_stream import StopRequested

            raise StopRequested()

    @property
    def epochs_done(self) -> int:
        return max(self.initial_epoch, self.stream.epochs_done if self.stream else 0)

    # ------------------------------------------------------------------ the run

    def run(self) -> Outcome:
        try:
            return self._run()
        except BaseException as e:  # noqa: BLE001 - every failure becomes a `finished` event
            return self._outcome_of(e)

    def _outcome_of(self, e: BaseException) -> Outcome:
        from tltui.worker.rung_pause import RungReached

        if isinstance(e, RungReached):  # a budgeted sweep's rung: the runner decides whether it goes on
            return Outcome(RunStatus.PAUSED, str(e), self.epochs_done)
        if reasons.is_stop(e):
            how = self.stop.signal_name or "SIGINT"
            done = self.epochs_done
            return Outcome(RunStatus.CANCELLED, f"stopped by {how} after epoch {done}; checkpoints kept", done)
        traceback.print_exc()
        reason = reasons.failure_reason(
            e,
            batch_size=self.preset.data.batch_size if self.preset else 0,
            epoch=self.stream.epoch if self.stream else 0,
            run_dir=self.paths.dir,
        )
        return Outcome(RunStatus.FAILED, reason, self.epochs_done)

    def _run(self) -> Outcome:
        preset = self._start()
        dataset = self._load_data(preset)
        model, backbone = self._build(preset, dataset)
        return self._train(model, backbone, dataset)

    def _start(self) -> presets.Preset:
        """The preset, the epoch a resume continues after, the devices: the ``started`` event."""
        self.preset = presets.load(self.paths.preset)
        preset = self.preset
        self.initial_epoch = self._prepare_backup()
        devices, self.strategy = setup_devices(preset)
        self.replicas = int(self.strategy.num_replicas_in_sync)
        problem = accel.replica_problem(
            batch_size=preset.data.batch_size, gpus=self.replicas, jit_compile=preset.train.jit_compile
        )
        if problem is not None:
            raise TrainError(f"{problem[0]} = {problem[1]}")
        self.gpus = gpu_descriptions(devices)
        precision = accel.choose_precision(preset.train.mixed_precision, self.gpus)
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
                precision=precision.value,
                precision_why=precision.why,
            ),
            sync=True,
        )
        if self.resume:
            self.emit_log("info", f"resuming after epoch {self.initial_epoch}")
        self.check_stop()
        return preset

    def _load_data(self, preset: presets.Preset) -> Dataset:
        import keras

        from tltui.core import decoded_store, memory
        from tltui.worker import data as data_mod

        keras.utils.set_random_seed(preset.train.seed)
        self.phase("data", f"loading {preset.data.source}")
        cache_root, cache_limit = decoded_store.cache_for(self.paths.dir)
        dataset = data_mod.load(
            preset,
            log=self.emit_log,
            emit=self.writer.emit,
            stop=self.stop,
            decoded_cache=cache_root,
            decoded_limit_bytes=cache_limit,
            budget=memory.budget_for(self.paths.dir),
        )
        data_mod.write_info(dataset, self.paths, preset.data.image_size)
        self._describe_data(preset, dataset)
        return dataset

    def _describe_data(self, preset: presets.Preset, dataset: Dataset) -> None:
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
        was, now = self.resume_meta.get("split"), dataset.report.get("split_digest")
        if self.initial_epoch and was and now and was != now:
            self.emit_log(
                "warning",
                f"{preset.data.source} changed since this run's last backup (files added, removed or renamed): its "
                "train/validation split is not the one the earlier epochs used, so the validation figures before "
                "and after this resume are on other images (a new run gives a clean split)",
            )
        if self.initial_epoch and not dataset.exact_resume:
            partial = " (the pass it resumed in may repeat some images and miss others)" if dataset.fixed_steps else ""
            self.emit_log(
                "warning",
                f"{preset.data.source} is read from disk through a shuffle buffer (too large for memory): the resumed "
                f"epochs see another shuffle order than an uninterrupted run would{partial}; weights, optimizer, "
                "schedule and augmentation are restored exactly (data.shuffle_buffer = 0 resumes exactly, unshuffled)",
            )

    def _build(self, preset: presets.Preset, dataset: Dataset) -> tuple[Any, Any]:
        """The classifier and its backbone, with the preset's weights, under the run's strategy."""
        from tltui.worker import model as model_mod
        from tltui.worker import progress

        self.phase("build", f"building {preset.model.backbone} (weights: {preset.model.weights})")
        set_precision(preset, self.gpus)
        self.dataset = dataset
        with self.strategy.scope(), progress.sending_to(self.writer.emit):
            model, backbone = model_mod.build_classifier(preset, dataset.num_classes, runs_dir=self.paths.dir.parent)
        self.check_stop()
        return model, backbone

    # ------------------------------------------------------------------ resume

    def _prepare_backup(self) -> int:
        """The epoch a resume continues after (0 for a fresh start, which clears old backups)."""
        if not self.resume:
            shutil.rmtree(self.paths.backup, ignore_errors=True)
            return 0
        from tltui.core import runstate
        from tltui.worker.backup import BACKUP_META, repair_backup

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

    def _phase_window(self, k: int, start: int, epochs: int) -> tuple[int, dict[str, Any]]:
        """The epoch phase ``k`` (begun after epoch ``start``) trains up to, with :attr:`initial_epoch` set to
        where it resumes; and the backup metadata it resumes from (later phases start fresh)."""
        meta = self.resume_meta
        within = bool(meta) and not meta.get("phase_complete") and int(meta.get("phase", 0)) == k
        self.initial_epoch = int(meta["epoch"]) if within else start
        end = start + epochs
        es_meta = meta.get("early_stopping") if within else None
        if isinstance(es_meta, dict) and es_meta.get("stopped_epoch"):
            end = self.initial_epoch  # early stopping had ended this phase: no epoch is trained again
        self.resume_meta = {}
        return end, meta

    # ------------------------------------------------------------------ the phases

    def _train(self, model: Any, backbone: Any, dataset: Dataset) -> Outcome:
        """Every phase (one, for a preset without ``[[phases]]``), then ``model.keras`` and the test split."""
        from tltui.worker.checkpoint import save_atomic
        from tltui.worker.kept import KeptWeights

        preset = self.preset
        assert preset is not None
        phases = preset.phase_presets()
        k, start = self._resume_point(len(phases))
        hparams.write_hparams(self.paths.tensorboard, preset)  # TensorBoard's HParams dashboard
        if preset.train.restore_best:
            self.kept = KeptWeights(self.paths.backup, model)
            self.kept.restore(self.resume_meta.get("kept"))
        saved = self.resume_meta.get("notes")
        # how each phase that stopped early ended; a resume continues the backup's list (the finished reason)
        self.notes = notes = [n for n in saved if isinstance(n, str)] if isinstance(saved, list) else []
        while True:
            early, backup = self._fit_phase(model, backbone, dataset, phases, k, start)
            done = self.epochs_done
            holds = (early.kept_epoch if early is not None else None) or done  # the epoch the weights are now
            if early is not None and early.stopped_epoch > 0:
                where = f"phase {preset.phase_label(k)} " if preset.phases else ""
                notes.append(
                    f"{where}stopped early after epoch {done}: val_acc did not improve for "
                    f"{phases[k].train.early_stopping_patience} epochs"
                )
                if k < len(phases) - 1:
                    self.emit_log("info", f"{notes[-1]}; the next phase starts from its best epoch, {holds}")
            if k == len(phases) - 1:
                break
            # the next phase starts from these weights (early stopping's best, if it kept one)
            backup.save_boundary(model, done)
            k, start = k + 1, done
        kept, rule = self._final_weights(holds, "early_stopping" if holds != done else "last")
        self.phase("save", f"saving {self.paths.model} (the weights of epoch {kept}: {MODEL_RULES[rule]})")
        save_atomic(model, self.paths.model)
        if dataset.test is not None:
            self._evaluate_test(model, dataset, dataset.test, kept)
        state = runstate.load(self.paths.events)
        test = {k: v for k, v in (state.test or {}).items() if k not in ("split", "examples", "weights_epoch")}
        hparams.write_final(self.paths.tensorboard, hparams.final_metrics(state.history.get(kept, {}), test), kept)
        return Outcome(RunStatus.COMPLETED, "; ".join(notes), self.epochs_done, str(self.paths.model), kept, rule)

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

    def _fit_phase(
        self, model: Any, backbone: Any, dataset: Dataset, phases: list[presets.Preset], k: int, start: int
    ) -> tuple[EarlyStop | None, EpochBackup]:
        """Train phase ``k`` (from 0), which began after epoch ``start``; returns its early stopping
        (or ``None``) and its backup callback."""
        from tltui.worker import faults  # test-only, inert unless TLTUI_FAULT or RUN_DIR/fault.json asks
        from tltui.worker.backup import BACKUP_WEIGHTS, load_backup

        preset = self.preset
        assert preset is not None
        p, steps = phases[k], dataset.steps_per_epoch
        end, meta = self._phase_window(k, start, p.train.epochs)
        with (self.strategy or default_strategy()).scope():
            trainable = self._setup_phase(model, backbone, p, k, dataset.num_classes, steps)
        if preset.phases:
            self._announce_phase(phases, k, start, trainable)
        if meta.get("phase_complete"):
            # resumed at a phase boundary: the weights it ended with, now (the movement record counts from them)
            load_backup(model, self.paths.backup / BACKUP_WEIGHTS, optimizer=False)
        self.check_stop()
        fit_model, train_ds, val_ds = self._phase_data(model, dataset, p)
        cbs = self._callbacks(model, fit_model, p, k, start, steps, has_val=val_ds is not None)
        train_ds = faults.wrap_dataset(self.paths.dir, train_ds, steps, self.initial_epoch)
        train_ds, val_ds = self._even_batches(train_ds, val_ds)
        callbacks = faults.callbacks(self.paths.dir) + cbs.ordered
        what = f"phase {preset.phase_label(k)}: " if preset.phases else ""
        self.phase("train", f"{what}training for {p.train.epochs} epochs of {steps} steps")
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
            cbs.checkpoints.drain()
        if cbs.moved is not None and cbs.moved.feature_cache:  # the backbone was not in the graph: measure it now
            cbs.moved.record_all(self.epochs_done)
        return cbs.early, cbs.backup

    def _setup_phase(
        self, model: Any, backbone: Any, p: presets.Preset, k: int, num_classes: int, steps: int | None
    ) -> int:
        """Freeze per ``p`` (phase ``k``, from 0), decide the feature cache, record the freeze map, compile
        (a new optimizer); returns the trainable parameter count."""
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
        self.cache_plan = self._cache_plan(model, backbone, p, k, spec.family)
        freeze_map["feature_cache"] = self.cache_plan.use
        self._write_freeze_map(freeze_map, k)
        jit = compile_model(model, p, num_classes, steps, self.emit_log)
        return self._model_info(model, backbone, num_classes, self.cache_plan, jit)

    def _cache_plan(self, model: Any, backbone: Any, p: presets.Preset, k: int, family: str) -> Plan:
        """Whether phase ``k`` trains the head on cached features."""
        from tltui.worker import feature_cache

        ds = self.dataset
        if k > 0:  # its backup holds the whole model; the cache's head model is phase 1's
            return feature_cache.Plan(False, "feature cache not used: it serves a run's first phase only")
        return feature_cache.plan(
            p,
            model,
            backbone,
            family,
            ds.train_examples if ds else None,
            ((ds.val_examples or 0) + (ds.test_examples or 0)) if ds else None,
        )

    def _write_freeze_map(self, freeze_map: dict[str, Any], k: int) -> None:
        """``freeze_map.json``; a phased run's phase keeps its own too (``phases/N/``)."""
        if self.preset is not None and self.preset.phases:
            freeze_map["phase"] = {"index": k + 1, "count": len(self.preset.phases), "name": self.preset.phases[k].name}
            self.paths.phase_dir(k + 1).mkdir(parents=True, exist_ok=True)
            write_json(self.paths.freeze_map_of(k + 1), freeze_map)
        write_json(self.paths.freeze_map, freeze_map)

    def _model_info(self, model: Any, backbone: Any, num_classes: int, cache_plan: Plan, jit: accel.Decision) -> int:
        """The ``model_info`` event of a compiled phase; returns the trainable parameter count."""
        trainable = sum(_count(w.shape) for w in model.trainable_weights)
        non_trainable = sum(_count(w.shape) for w in model.non_trainable_weights)
        self.writer.emit(
            ModelInfo(
                t=time.time(),
                total_params=trainable + non_trainable,
                trainable_params=trainable,
                non_trainable_params=non_trainable,
                num_classes=num_classes,
                feature_cache=cache_plan.use,
                jit_compile=bool(jit.value),
                jit_why=jit.why,
            )
        )
        if cache_plan.use or not backbone.trainable_weights:
            self.emit_log("info", cache_plan.reason)
        return trainable

    def _announce_phase(self, phases: list[presets.Preset], k: int, start: int, trainable: int) -> None:
        """The ``train_phase`` event of a phased run's phase ``k``."""
        preset = self.preset
        assert preset is not None
        p, t = phases[k], phases[k].train
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

    def _phase_data(self, model: Any, dataset: Dataset, p: presets.Preset) -> tuple[Any, Any, Any]:
        """The model fit trains (the classifier, the classifier augmenting its batches in its training
        step, or the head on cached features) and its datasets."""
        fit_model = model
        if self.cache_plan is not None and self.cache_plan.use:
            fit_model, train_ds, val_ds = self._cached_features(model, dataset, p)
        else:
            train_ds, val_ds = dataset.train_batches(self.initial_epoch), dataset.eval_batches(dataset.val)
            if dataset.augment:  # on the device, in the training step (tltui.worker.augment); never saved
                from tltui.worker.augment import AugmentInTraining

                with (self.strategy or default_strategy()).scope():
                    fit_model = AugmentInTraining(model)
                    compile_model(fit_model, p, dataset.num_classes, dataset.steps_per_epoch, self.emit_log)
                    fit_model.optimizer = model.optimizer  # one optimizer: model.keras keeps its trained state
        if p.train.label_smoothing > 0:
            train_ds, val_ds = one_hot(train_ds, dataset.num_classes), one_hot(val_ds, dataset.num_classes)
        return fit_model, train_ds, val_ds

    def _even_batches(self, train_ds: Any, val_ds: Any) -> tuple[Any, Any]:
        """With several replicas, batches that split evenly over them (:mod:`tltui.worker.replicas`)."""
        ds = self.dataset
        if self.replicas <= 1 or ds is None:
            return train_ds, val_ds
        n_val = ds.val_examples or 0
        last = ds.train_examples % ds.batch_size
        if (
            ds.fixed_steps is None
            and last
            and (pad := accel.eval_padding(ds.train_examples, ds.batch_size, self.replicas))
        ):
            self.emit_log(
                "info",
                f"{self.replicas} replicas: each epoch's last training batch ({last} images) is padded to {last + pad} "
                "with weight-0 copies; gradients and validation metrics are one device's, the epoch's training "
                f"loss and accuracy count it as {last + pad} images",
            )
        return (
            replicas.train_batches(train_ds, self.replicas),
            replicas.eval_batches(val_ds, self.replicas, n_val, ds.batch_size),
        )

    def _callbacks(
        self, model: Any, fit_model: Any, p: presets.Preset, k: int, start: int, steps: int, *, has_val: bool
    ) -> PhaseCallbacks:
        """Phase ``k``'s epoch callbacks. Order: early stopping decides first; the backup (with that
        decision) next; then the epoch's ``epoch_end`` event and checkpoint, so a kill in between never
        makes a resume train a recorded epoch again (a backup ahead of the events, killed right after it,
        is rolled back by :meth:`_prepare_backup`). EpochBackup is Keras's BackupAndRestore(save_freq="epoch",
        double_checkpoint=True, delete_checkpoint=False), cheaper, plus seeds and early stopping."""
        from tltui.worker import rung_pause
        from tltui.worker.backup import EpochBackup
        from tltui.worker.checkpoint import PeriodicCheckpoint
        from tltui.worker.early_stop import EarlyStop
        from tltui.worker.event_stream import EventStream
        from tltui.worker.scalars import EpochScalars

        preset = self.preset
        assert preset is not None
        t = p.train
        self.stream = EventStream(self.writer, steps, self.stop)
        checkpoints = PeriodicCheckpoint(
            self.paths.checkpoints,
            t.checkpoint_every,
            self.writer,
            export_model=model,
            resumed_after=self.initial_epoch,
        )
        early = None
        if t.early_stopping_patience > 0 and has_val:
            early = EarlyStop(
                monitor="val_acc", mode="max", patience=t.early_stopping_patience, restore_best_weights=True
            )
        moved = self._moved(
            model, fit_model, fresh=self.initial_epoch == start, phase=k if preset.phases else None, start=start
        )
        backup = EpochBackup(
            self.paths.backup,
            early_stopping=early,
            moved=moved,
            phase=k,
            phase_start=start,
            kept=self.kept,
            notes=self.notes,
            split=self.dataset.report.get("split_digest") if self.dataset is not None else None,
        )
        ordered: list[keras.callbacks.Callback] = [
            *([early] if early is not None else []),
            backup,
            self.stream,
            checkpoints,
            EpochScalars(self.paths.tensorboard),  # TensorBoard's epoch scalars, no per-batch hook
            *rung_pause.callbacks(preset, self.paths.dir, self.initial_epoch),  # last: the epoch is all written
        ]
        return PhaseCallbacks(early, backup, checkpoints, moved, ordered)

    def _moved(
        self, model: Any, fit_model: Any, *, fresh: bool, phase: int | None = None, start: int = 0
    ) -> MovedWeights | None:
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

    def _evaluate_test(self, model: Any, dataset: Dataset, test: Split, kept: int) -> None:
        """The test split (``dataset.test``), once, with the weights ``model.keras`` holds."""
        preset = self.preset
        assert preset is not None
        self.phase("test", f"evaluating {test.n} test images with the weights of epoch {kept}")
        test_ds = dataset.eval_batches(test)
        if preset.train.label_smoothing > 0:
            test_ds = one_hot(test_ds, dataset.num_classes)
        test_ds = replicas.eval_batches(test_ds, self.replicas, test.n, dataset.batch_size)
        results = model.evaluate(test_ds, return_dict=True, verbose=0)
        metrics = {f"test_{k}": float(v) for k, v in results.items() if k in ("loss", "acc", "top5_acc")}
        self.writer.emit(
            Evaluated(
                t=time.time(),
                split=preset.data.test_split,
                examples=test.n,
                weights_epoch=kept,
                metrics=metrics,
            ),
            sync=True,
        )
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        self.emit_log("info", f"test split {preset.data.test_split!r}: {shown}")

    def _cached_features(self, model: Any, dataset: Dataset, preset: presets.Preset) -> tuple[Any, Any, Any]:
        """The head model (sharing the classifier's head layers) and the cached feature datasets."""
        from tltui.worker import feature_cache

        self.phase("features", "computing the frozen backbone's features once (feature cache)")
        with (self.strategy or default_strategy()).scope():
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


# --------------------------------------------------------------------------- helpers


def _count(shape: Any) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _versions() -> dict[str, str]:
    out = {"tltui": __version__, "python": platform.python_version()}
    for mod in ("tensorflow", "keras"):
        with contextlib.suppress(Exception):  # a version we cannot read is left out of the record
            out[mod] = __import__(mod).__version__
    return out
