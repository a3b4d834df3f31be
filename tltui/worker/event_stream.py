"""The live record of a fit: protocol events (``epoch_begin``, ``batch``, ``epoch_end``), the stop
request (SIGTERM/SIGINT) and the NaN/Inf check, at every batch end."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable

import keras

from tltui.core.protocol import METRIC_KEYS, Batch, EpochBegin, EpochEnd
from tltui.worker.events import EventWriter

#: At most this many batch events per second (plus the last step of each epoch).
BATCH_EVENTS_PER_SECOND = 10.0


class StopRequested(Exception):
    """SIGTERM/SIGINT arrived; raised at the next batch end so no partial epoch is recorded."""


class NaNLoss(Exception):
    def __init__(self, epoch: int, step: int, value: float = math.nan) -> None:
        self.epoch, self.step = epoch, step
        what = "NaN" if math.isnan(value) else "infinite"
        super().__init__(
            f"loss became {what} at epoch {epoch} batch {step}: lower the learning rate "
            "(train.learning_rate) or check the data"
        )


def current_lr(model: keras.Model) -> float | None:
    """The learning rate of the optimizer's last step (what the epoch that just ended trained with
    at its end; ``optimizer.learning_rate`` is the rate of the *next* step under a schedule)."""
    try:
        opt = model.optimizer
        inner = getattr(opt, "inner_optimizer", opt)  # mixed_float16: the LossScaleOptimizer's is a dummy
        lr = getattr(inner, "_learning_rate", None)
        if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
            step = max(0, int(keras.ops.convert_to_numpy(inner.iterations)) - 1)
            return _scheduled_rate(lr, step)
        return float(keras.ops.convert_to_numpy(inner.learning_rate))
    except Exception:  # noqa: BLE001 - no optimizer or an exotic schedule: leave it out
        return None


#: The last rate a schedule gave: (schedule, step, rate). Every epoch end asks twice (the event, then
#: TensorBoard's scalar) and a schedule's value at a step is a few eager ops; it is a pure function of
#: the step, so the second answer is the first one.
_last_rate: tuple[keras.optimizers.schedules.LearningRateSchedule, int, float] | None = None


def _scheduled_rate(schedule: keras.optimizers.schedules.LearningRateSchedule, step: int) -> float:
    global _last_rate
    last = _last_rate
    if last is not None and last[0] is schedule and last[1] == step:
        return last[2]
    rate = float(keras.ops.convert_to_numpy(schedule(step)))
    _last_rate = (schedule, step, rate)
    return rate


class EventStream(keras.callbacks.Callback):
    """Turns fit's progress into protocol events; stops on request; fails on NaN loss.

    ``should_stop`` is polled at every batch end (train and validation); a stop
    raises :class:`StopRequested` instead of setting ``stop_training``, because
    Keras would still validate and end the cut-short epoch, and the backup would
    then count it as done.
    """

    def __init__(
        self,
        writer: EventWriter,
        steps: int | None,
        should_stop: Callable[[], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.writer = writer
        self.steps = steps
        self.should_stop = should_stop
        self.clock = clock
        self.epoch = 0
        self._epoch_start = 0.0
        self._last_batch_event = 0.0
        self._min_gap = 1.0 / BATCH_EVENTS_PER_SECOND
        self.epochs_done = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch + 1
        self._epoch_start = self.clock()
        self._last_batch_event = 0.0
        self.writer.emit(EpochBegin(t=self._epoch_start, epoch=self.epoch))

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # The per-batch path stays nearly free: a flag, one finiteness check, one clock read; the metrics
        # dict is built only for an emitted batch (the first, then <= BATCH_EVENTS_PER_SECOND, and the
        # last). fit has already made the logs Python floats (any per-batch hook makes it do so).
        if self.should_stop():
            raise StopRequested()
        step = batch + 1
        loss = logs.get("loss") if logs else None
        if loss is not None:
            with contextlib.suppress(TypeError, ValueError):
                loss = float(loss)
                if not math.isfinite(loss):
                    raise NaNLoss(self.epoch, step, loss)
        now = self.clock()
        if now - self._last_batch_event < self._min_gap and (self.steps is None or step < self.steps):
            return
        self._last_batch_event = now
        self.writer.emit(Batch(t=now, epoch=self.epoch, step=step, steps=self.steps, metrics=_metrics(logs or {})))

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.should_stop():
            raise StopRequested()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = self.clock()
        self.epochs_done = epoch + 1
        metrics = _metrics(logs or {})
        seconds = round(now - self._epoch_start, 3)
        self.writer.emit(
            EpochEnd(t=now, epoch=epoch + 1, metrics=metrics, lr=current_lr(self.model), epoch_seconds=seconds),
            sync=True,
        )
        # worker.log's line per epoch (fit runs with verbose=0)
        shown = " - ".join(f"{k}: {v:.4f}" for k, v in metrics.items())
        print(f"epoch {epoch + 1} - {seconds:.1f}s - {shown}", file=sys.stderr, flush=True)


def _metrics(logs: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in METRIC_KEYS:
        v = logs.get(k)
        if v is not None:
            with contextlib.suppress(TypeError, ValueError):
                out[k] = float(v)
    return out
