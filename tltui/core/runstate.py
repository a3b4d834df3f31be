"""What a run's events add up to: history, best epoch, live progress.

Pure folding over :mod:`tltui.core.protocol` events, shared by the CLI, the queue
runner and the TUI. ``events.jsonl`` is the durable record; this module is the
one place that interprets it. A resumed run may repeat an epoch that was cut
short; the last ``epoch_end`` for an epoch number wins, so the history holds
each epoch once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tltui.core import protocol
from tltui.core.protocol import (
    Batch,
    Checkpoint,
    EpochBegin,
    EpochEnd,
    Evaluated,
    Event,
    Finished,
    ModelInfo,
    Phase,
    Progress,
    Started,
    TrainPhase,
)
from tltui.core.status import RunStatus


@dataclass
class RunState:
    """Mutable accumulator; call :meth:`apply` per event in file order.

    Saved as is in run summaries (:mod:`tltui.core.run_summary`): a change to what :meth:`apply` keeps
    bumps ``run_summary.VERSION``, so summaries written before it are rebuilt from the log."""

    history: dict[int, dict[str, Any]] = field(default_factory=dict)
    epochs: int | None = None
    epoch: int | None = None  # epoch in progress (1-based)
    step: int = 0
    steps: int | None = None
    live: dict[str, float] = field(default_factory=dict)  # metrics of the latest batch
    batches: list[tuple[float, int, int, dict[str, float]]] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    started_at: float | None = None
    first_started_at: float | None = None
    last_event_at: float | None = None
    finished: Finished | None = None
    checkpoints: list[str] = field(default_factory=list)
    test: dict[str, Any] | None = None  # the Evaluated event: split, examples, weights_epoch, metrics
    preparing: Progress | None = None  # the latest progress of a step before training, until the next step
    stage: Phase | None = None  # the worker's latest step (Phase: data, build, train...) until a batch shows training
    phases: dict[int, TrainPhase] = field(default_factory=dict)  # a phased run's phases so far, by index
    phase_models: dict[int, dict[str, Any]] = field(default_factory=dict)  # each phase's model info (ModelInfo)
    phase: TrainPhase | None = None  # the phase training now (or last)
    devices: list[str] = field(default_factory=list)
    host: str = ""
    pid: int | None = None
    events_seen: int = 0
    history_version: int = 0  # bumped by every event but a batch: history-only views redraw on it
    skipped_lines: int = 0  # set by load(): unreadable lines (a torn write, foreign text), skipped
    restore_best: bool = False  # the worker keeps the best val_acc epoch (Started.restore_best)
    precision: str = ""  # the dtype policy of the latest worker, and why (Started); "" from older workers
    precision_why: str = ""
    jit_compile: bool | None = None  # XLA on or off in the latest compiled phase, and why (ModelInfo)
    jit_why: str = ""
    worked_before: float = 0.0  # seconds of the worker segments before the latest start (resumes)

    def apply(self, ev: Event) -> None:
        if isinstance(ev, Phase | EpochBegin | Finished):
            self.preparing = None  # a new step (or training, or the end): the previous one's progress is over
        self.events_seen += 1
        if isinstance(ev, Batch | EpochEnd | Finished | Started):
            self.stage = None  # training shows itself (or a new worker starts over)
        if isinstance(ev, Started) and self.started_at is not None and self.last_event_at is not None:
            # a resume: the previous worker's segment ended at its last event
            self.worked_before += max(0.0, self.last_event_at - self.started_at)
        self.last_event_at = ev.t
        if not isinstance(ev, Batch):
            self.history_version += 1
        if isinstance(ev, Started):
            self.started_at = ev.t
            self.first_started_at = self.first_started_at or ev.t
            self.epochs = ev.epochs
            self.steps = ev.steps_per_epoch
            self.devices = list(ev.devices)
            self.host = ev.host
            self.pid = ev.pid
            self.restore_best = ev.restore_best
            self.precision, self.precision_why = ev.precision, ev.precision_why
            self.finished = None
            self.test = None  # a resume evaluates again at its end
            # a resume drops epochs after the point it restarts from
            for e in [e for e in self.history if e > ev.initial_epoch]:
                del self.history[e]
        elif isinstance(ev, TrainPhase):
            for i in [i for i in self.phases if i >= ev.index]:
                del self.phases[i]  # a resume announces its phase again
            self.phases[ev.index] = ev
            self.phase = ev
            self.phase_models[ev.index] = dict(self.model)  # the ModelInfo of this phase came just before
            self.epochs = ev.total_epochs or self.epochs
        elif isinstance(ev, ModelInfo):
            self.model = {
                "total_params": ev.total_params,
                "trainable_params": ev.trainable_params,
                "non_trainable_params": ev.non_trainable_params,
                "num_classes": ev.num_classes,
                "feature_cache": ev.feature_cache,
            }
            self.jit_compile, self.jit_why = ev.jit_compile, ev.jit_why
        elif isinstance(ev, Progress):
            self.preparing = ev
        elif isinstance(ev, Phase):
            self.stage = ev
        elif isinstance(ev, EpochBegin):
            self.epoch = ev.epoch
            self.step = 0
            self.live = {}
        elif isinstance(ev, Batch):
            self.epoch = ev.epoch
            self.step = ev.step
            if ev.steps:
                self.steps = ev.steps
            self.live = dict(ev.metrics)
            self.batches.append((ev.t, ev.epoch, ev.step, dict(ev.metrics)))
            if len(self.batches) > 5000:
                del self.batches[: len(self.batches) - 4000]
        elif isinstance(ev, EpochEnd):
            entry: dict[str, Any] = {"epoch": ev.epoch, **ev.metrics}
            entry["lr"] = ev.lr
            entry["epoch_seconds"] = ev.epoch_seconds
            entry["t"] = ev.t
            if self.phase is not None:
                entry["phase"] = self.phase.index
            self.history[ev.epoch] = entry
            self.step = 0
        elif isinstance(ev, Evaluated):
            self.test = {
                "split": ev.split,
                "examples": ev.examples,
                "weights_epoch": ev.weights_epoch,
                **ev.metrics,
            }
        elif isinstance(ev, Checkpoint):
            self.checkpoints.append(ev.path)
        elif isinstance(ev, Finished):
            self.finished = ev

    # ------------------------------------------------------------ derived views

    @property
    def epochs_done(self) -> int:
        return max(self.history, default=0)

    def history_list(self) -> list[dict[str, Any]]:
        return [self.history[e] for e in sorted(self.history)]

    def elapsed(self, now: float | None = None, started: float | None = None) -> float | None:
        """Seconds the run's workers have been at it, every segment of a resumed run together (not the
        time between a cancel and its resume). ``now``: the run is still going, its segment ends now;
        else at its last event. ``started``: when the registry says the current worker started; later than
        every event, it is a resumed run's new worker that has not reported yet (importing TensorFlow,
        pending on a cluster): the segments before it, then its own time since it started."""
        if self.started_at is None:
            return None
        closed = self.last_event_at or self.started_at
        if now is not None and started is not None and started > closed:
            return self.worked_before + max(0.0, closed - self.started_at) + max(0.0, now - started)
        end = now if now is not None else closed
        return self.worked_before + max(0.0, end - self.started_at)

    def compute_short(self) -> str | None:
        """``mixed_bfloat16, XLA on`` (the run screen's header); ``None`` when the workers did not record it."""
        parts = [self.precision] if self.precision else []
        if self.jit_compile is not None:
            parts.append(f"XLA {'on' if self.jit_compile else 'off'}")
        return ", ".join(parts) or None

    def compute(self) -> dict[str, Any] | None:
        """How the latest worker computes: ``precision``, ``precision_why``, ``jit_compile``, ``jit_why``
        (``None`` for a run whose workers did not record them)."""
        if not self.precision and self.jit_compile is None:
            return None
        return {
            "precision": self.precision or None,
            "precision_why": self.precision_why,
            "jit_compile": self.jit_compile,
            "jit_why": self.jit_why,
        }

    def kept(self) -> dict[str, Any] | None:
        """The epoch whose weights ``model.keras`` holds, with that epoch's validation metrics: the run's
        result. For a completed run it is the epoch the worker saved (``Finished.model_epoch``); before
        that, the epoch it would save if the run ended now: the best val_acc so far with
        ``train.restore_best``, else the last epoch. ``rule`` says which (``best``, ``early_stopping``,
        ``last``); ``final`` whether ``model.keras`` exists with these weights."""
        hist = self.history_list()
        if not hist:
            return None
        fin = self.finished
        if fin is not None and fin.status == RunStatus.COMPLETED and fin.model_epoch in self.history:
            epoch = int(fin.model_epoch)  # type: ignore[arg-type]
            rule = fin.model_rule or ("last" if epoch == self.epochs_done else "early_stopping")
            final = True
        else:
            best = self.best() if self.restore_best else None
            epoch, rule = (best["epoch"], "best") if best is not None else (hist[-1]["epoch"], "last")
            final = False
        h = self.history[epoch]
        return {
            "epoch": epoch,
            "rule": rule,
            "final": final,
            "val_acc": h.get("val_acc"),
            "val_top5_acc": h.get("val_top5_acc"),
            "val_loss": h.get("val_loss"),
        }

    def kept_text(self) -> str | None:
        """The run's result in one line (:func:`kept_text`), ``None`` before its first epoch."""
        k = self.kept()
        return None if k is None else kept_text(k)

    def best(self) -> dict[str, Any] | None:
        """Best epoch by val_acc (ties: the earlier epoch, as Keras's EarlyStopping picks it), with
        that epoch's val_top5_acc; ``best_val_top5_acc`` is the highest val_top5_acc of any epoch,
        at ``best_val_top5_epoch``."""
        rows = [h for h in self.history_list() if h.get("val_acc") is not None]
        if not rows:
            return None
        b = max(rows, key=lambda h: (h["val_acc"], -h["epoch"]))
        top5 = [h for h in rows if h.get("val_top5_acc") is not None]
        b5 = max(top5, key=lambda h: (h["val_top5_acc"], -h["epoch"])) if top5 else None
        return {
            "epoch": b["epoch"],
            "val_acc": b["val_acc"],
            "val_top5_acc": b.get("val_top5_acc"),
            "best_val_top5_acc": b5["val_top5_acc"] if b5 else None,
            "best_val_top5_epoch": b5["epoch"] if b5 else None,
        }

    def phase_text(self) -> str | None:
        """``"phase 2/2 fine-tune"`` for a phased run, ``None`` for a run without phases."""
        return f"phase {self.phase.label}" if self.phase is not None else None

    def phases_list(self) -> list[dict[str, Any]]:
        """A phased run's phases so far: index, count, name, first and last epoch (planned; the last epoch
        trained once the phase is over), optimizer, learning rate, freeze depth and BatchNorm policy,
        trainable parameters and whether the feature cache served it. Empty for a run without phases."""
        out = []
        items = sorted(self.phases.items())
        for n, (i, p) in enumerate(items):
            nxt = items[n + 1][1].start_epoch if n + 1 < len(items) else None
            trained = [e for e in self.history if e > p.start_epoch and (nxt is None or e <= nxt)]
            model = self.phase_models.get(i, {})
            if nxt is not None:
                last = nxt
            else:  # the last phase so far: as planned, or where it ended
                last = max(trained) if self.finished is not None and trained else p.start_epoch + p.epochs
            out.append(
                {
                    "index": p.index,
                    "count": p.count,
                    "name": p.name,
                    "first_epoch": p.start_epoch + 1,
                    "last_epoch": last,
                    "epochs_trained": len(trained),
                    "epochs": p.epochs,
                    "optimizer": p.optimizer,
                    "learning_rate": p.learning_rate,
                    "freeze_depth": p.freeze_depth,
                    "batchnorm": p.batchnorm,
                    "trainable_params": p.trainable_params,
                    "feature_cache": bool(model.get("feature_cache")),
                }
            )
        return out

    def phase_starts(self) -> list[tuple[int, int, str]]:
        """``(index, first epoch, name)`` of each phase after the first: where charts mark a boundary."""
        return [(p.index, p.start_epoch + 1, p.name) for i, p in sorted(self.phases.items()) if i > 1]

    def preparing_detail(self, short: bool = False, started: float | None = None) -> str | None:
        """What a running run does when no batch shows it: ``download 43%`` (short, for a table cell)
        or ``downloading tfds:cifar100: 43% (70.1 / 162.2 MB, 0:12 left)``; the worker's step
        (``building``: ``building mobilenet_v2 (weights: imagenet)``); ``first step`` between the start
        of training and its first batch (graph tracing, a minute on a busy CPU); ``starting`` before
        the worker's first event (``started``: when the registry says the run's worker started; a
        resumed run's events up to then are the previous worker's). ``None`` once batches flow (or
        after the run)."""
        p = self.preparing
        if p is not None:
            return progress_text(p, short)
        resumed = self.finished is not None and started is not None and self.finished.t < started
        if self.events_seen == 0 or resumed:
            return "starting" if short else "starting the worker (loading TensorFlow)"
        stage = self.stage
        if stage is None:
            return None
        if stage.name == "train":
            return "first step" if short else f"{stage.message}: tracing the first step (the graph is built once)"
        return _STAGE_WORDS.get(stage.name, stage.name[:12]) if short else stage.message

    def progress(self) -> float:
        """0..1 over all configured epochs, including the epoch in progress."""
        if not self.epochs:
            return 0.0
        done = float(self.epochs_done)
        if self.epoch and self.epoch > self.epochs_done and self.steps:
            done += min(1.0, self.step / self.steps)
        return min(1.0, done / self.epochs)

    def eta_seconds(self) -> float | None:
        """Remaining time from the mean of the last epochs' durations."""
        if not self.epochs or self.finished is not None:
            return None
        secs = [h["epoch_seconds"] for h in self.history_list()[-5:] if h.get("epoch_seconds")]
        if not secs:
            return None
        per_epoch = sum(secs) / len(secs)
        return max(0.0, (self.epochs - self.progress() * self.epochs) * per_epoch)


def kept_text(kept: dict[str, Any]) -> str:
    """``model.keras = epoch 4 (the best val_acc of the run): val_acc 41.7%, val_top5 90.0%`` for a
    completed run (``final``), ``epoch 4 (the best val_acc of the run): val_acc 41.7%`` before."""
    rule = protocol.MODEL_RULES.get(kept.get("rule", ""), kept.get("rule", ""))
    what = f"epoch {kept['epoch']} ({rule})"
    metrics = f"val_acc {_pct(kept.get('val_acc'))}"
    if kept.get("val_top5_acc") is not None:
        metrics += f", val_top5 {_pct(kept['val_top5_acc'])}"
    return f"model.keras = {what}: {metrics}" if kept.get("final") else f"{what}: {metrics}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


#: The table's word for each step the worker announces (:class:`Phase` names, ``worker/train.py``).
_STAGE_WORDS = {
    "data": "loading data",
    "build": "building",
    "features": "features",
    "save": "saving",
    "test": "testing",
}

_SHORT = {
    "download": "download",
    "prepare": "prepare",
    "decode": "decode",
    "weights": "weights",
    "features": "features",
    "wait": "waiting",
}


def progress_text(p: Progress, short: bool = False) -> str:
    """One :class:`Progress` event as text (see :meth:`RunState.preparing_detail`)."""
    frac = p.fraction
    if short:
        word = _SHORT.get(p.phase, p.phase[:8])
        if p.phase == "wait":
            return word
        if frac is not None:
            return f"{word} {100 * frac:.0f}%"
        return f"{word} {p.done / 1e6:.0f}MB" if p.unit == "bytes" else f"{word} {p.done:.0f}"
    if p.unit == "bytes":
        amount = f"{p.done / 1e6:.1f}" + (f" / {p.total / 1e6:.1f} MB" if p.total else " MB")
    else:
        amount = f"{p.done:.0f}" + (f" / {p.total:.0f}" if p.total else "")
    pct = f"{100 * frac:.0f}% " if frac is not None else ""
    left = ""
    if p.eta is not None and frac is not None and frac < 1:
        s = int(p.eta)
        left = f", {s // 60}:{s % 60:02d} left"
    return f"{p.message}: {pct}({amount}{left})" if p.phase != "wait" else p.message


def load(path: str | Path) -> RunState:
    """The state of a run's ``events.jsonl`` (missing file: an empty state), from its summary plus
    what was appended after it (:mod:`tltui.core.run_summary`): equal to :func:`fold`, at the cost
    of the epochs rather than the batches."""
    from tltui.core import run_summary  # it builds on this module

    return run_summary.load(path)[0]


def fold(path: str | Path) -> RunState:
    """Fold a whole ``events.jsonl``, every line, whatever summary it has (the reference)."""
    st = RunState()
    tail = protocol.EventTail(path)
    for ev in tail.read_new():
        st.apply(ev)
    st.skipped_lines = tail.torn + (1 if tail.pending else 0)
    return st
