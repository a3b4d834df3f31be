"""``tltui run PRESET``: train in the foreground, one run after another for a sweep.

Each run is recorded in the registry first, then trained by the real worker
subprocess (the only TensorFlow process). Its events arrive on a pipe and drive
a rich progress display; the worker also writes them to the run's
``events.jsonl``, so nothing is lost if this process dies. Ctrl-C asks the
worker to stop (SIGTERM, then SIGKILL after a grace period): the run ends
``cancelled`` with its checkpoints kept, the rest of the sweep is not started,
and the exit code is 130. Exit 0 when every run completed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tltui.commands import common
from tltui.core import runstate
from tltui.core.errors import CommandError
from tltui.core.protocol import (
    Batch,
    Checkpoint,
    EpochEnd,
    Event,
    Finished,
    Log,
    ModelInfo,
    Phase,
    Progress,
    Started,
    TrainPhase,
)
from tltui.core.status import RunStatus
from tltui.core.workspace import RunRecord, Workspace
from tltui.runner import supervisor

#: Seconds a worker gets to stop after SIGTERM before it is killed.
GRACE_SECONDS = 30.0
EXIT_INTERRUPTED = 130


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train a preset in the foreground (a sweep runs one run after another)")
    p.add_argument("preset", help="preset file, or the name of a shipped/workspace preset")
    common.add_set(p)
    p.add_argument("--plain", action="store_true", help="one line per epoch, no live progress bars")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tltui.core import preflight

    ws = common.workspace(args)
    path, preset = common.load_preset(args, ws)
    from tltui.core import presets

    report = preflight.require(preset, str(path), ws, presets.parse_set(getattr(args, "overrides", []) or []))
    if preset.sweep_space.budget is not None:  # its runs pause at rungs that only the queue runner decides on
        raise CommandError(
            f"{path}: a budgeted sweep ([sweep.budget]) runs through the queue: `tltui queue add {path}`"
        )
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return run_preset(ws, preset, plain=args.plain or not sys.stdout.isatty())


def run_preset(ws: Workspace, preset: Any, *, plain: bool = True, display: Display | None = None) -> int:
    """Record the preset's runs and train them in order; the exit code of ``tltui run``."""
    from tltui.core import presets

    specs = presets.expand(preset)
    recs = ws.create_runs(
        [(s.name, presets.dumps(s.preset), s.overrides) for s in specs],
        preset_name=preset.name,
        epochs=[s.preset.total_epochs for s in specs],
        queued=False,
    )
    display = display or (Display() if plain else LiveDisplay())
    statuses: list[str] = []
    with StopSignals() as stop:
        for i, rec in enumerate(recs):
            display.begin(rec, i + 1, len(recs))
            status = train_one(ws, rec, display, stop)
            statuses.append(status)
            if stop.requested:
                for left in recs[i + 1 :]:
                    ws.update(
                        left.id,
                        status=RunStatus.CANCELLED,
                        reason="not started: the sweep was stopped with Ctrl-C",
                        finished=time.time(),
                    )
                    statuses.append(RunStatus.CANCELLED)
                break
    display.summary(ws, recs)
    if stop.requested:
        return EXIT_INTERRUPTED
    return 0 if all(s == RunStatus.COMPLETED for s in statuses) else 1


class StopSignals:
    """Ctrl-C (and SIGTERM/SIGHUP to this process) become a flag instead of an exception,
    so the worker can be stopped cleanly. ``count`` tells a second Ctrl-C (kill now) apart."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.count = 0
        self._old: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.count > 0

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1

    def __enter__(self) -> StopSignals:
        for s in self.SIGNALS:
            self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def train_one(
    ws: Workspace,
    rec: RunRecord,
    display: Display,
    stop: StopSignals,
    *,
    spawn: Callable[..., supervisor.WorkerProc] = supervisor.spawn_worker,
    grace: float = GRACE_SECONDS,
) -> str:
    """Run one worker to its end; returns the run's final status."""
    since = supervisor.events_size(ws.run_paths(rec.id).events)  # what is there is an earlier worker's
    wp = spawn(ws, rec.id)
    supervisor.record_started(ws, rec.id, wp.pid)
    state = runstate.RunState()
    sent = 0  # stop signals forwarded to the worker
    kill_at: float | None = None
    try:
        while not wp.eof:
            if stop.count > sent:
                sent = stop.count
                if sent == 1:
                    display.note("stopping the worker (Ctrl-C again to kill it now)...")
                    wp.signal(signal.SIGTERM)
                    kill_at = time.monotonic() + grace
                else:
                    wp.signal(signal.SIGKILL)
            if kill_at is not None and time.monotonic() > kill_at:
                wp.signal(signal.SIGKILL)
                kill_at = None
            try:
                select.select([wp], [], [], 0.25)
            except InterruptedError:
                continue
            for ev in wp.read_events():
                state.apply(ev)
                supervisor.record_event(ws, rec.id, ev, state)
                display.event(rec, ev, state)
        returncode = wp.proc.wait()
    finally:
        wp.close()
    status = supervisor.record_exit(ws, rec.id, returncode, cancelled=stop.requested, since=since)
    display.end(ws.get(rec.id), state)
    return status


# --------------------------------------------------------------------------- display


def test_summary(test: dict[str, Any]) -> str:
    """``test_acc 80.4%, test_top5 95.1% (split test, 10000 images, weights of epoch 7)``."""
    text = f"test_acc {_pct(test.get('test_acc')).strip()}"
    if test.get("test_top5_acc") is not None:
        text += f", test_top5 {_pct(test['test_top5_acc']).strip()}"
    return text + f" ({test.get('split')}, {test.get('examples')} images, weights of epoch {test.get('weights_epoch')})"


def _pct(x: float | None) -> str:
    return "  -  " if x is None else f"{100 * x:5.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def epoch_line(rec: RunRecord, ev: EpochEnd, state: runstate.RunState) -> str:
    m = ev.metrics
    return (
        f"{rec.id} epoch {ev.epoch}/{state.epochs or '?'}  loss {_num(m.get('loss'))} acc {_pct(m.get('acc'))} "
        f"top5 {_pct(m.get('top5_acc'))}  val_loss {_num(m.get('val_loss'))} val_acc {_pct(m.get('val_acc'))} "
        f"val_top5 {_pct(m.get('val_top5_acc'))}  {ev.epoch_seconds:.1f}s  ETA {_clock(state.eta_seconds())}"
    )


def end_line(rec: RunRecord, state: runstate.RunState | None = None) -> str:
    """``r0001 completed: model.keras = epoch 7 (the best val_acc of the run): val_acc 81.2%, val_top5
    97.0%; test_acc 80.4% ...``: the epoch ``model.keras`` holds and its validation metrics, the test
    split as evaluated with those same weights."""
    line = f"{rec.id} {rec.status}"
    kept = state.kept_text() if state is not None else None
    if kept is not None:
        line += f": {kept}"
    elif rec.best_val_acc is not None:
        line += f": val_acc {_pct(rec.best_val_acc).strip()} (epoch {rec.best_epoch})"
    test = state.test if state is not None else None
    if test:
        line += f"; {test_summary(test)}"
    if rec.reason:
        line += f"\n  reason: {rec.reason}"
    return line


@dataclass
class Display:
    """Plain text: one line per epoch and per notable event (logs, CI, pipes)."""

    out: Any = field(default_factory=lambda: sys.stdout)
    _shown: tuple[str, str, int] | None = None  # (run, step, quarter) of the last progress line printed

    def print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        self.print(text)

    def begin(self, rec: RunRecord, index: int, total: int) -> None:
        where = f" ({index}/{total})" if total > 1 else ""
        self.print(f"== {rec.id} {rec.name}{where}")

    def event(self, rec: RunRecord, ev: Event, state: runstate.RunState) -> None:
        if isinstance(ev, EpochEnd):
            self.print(epoch_line(rec, ev, state))
        elif isinstance(ev, Log) and ev.level != "info":
            self.print(f"{rec.id} {ev.level}: {ev.message}")
        elif isinstance(ev, Started) and ev.initial_epoch:
            self.print(f"{rec.id} resuming after epoch {ev.initial_epoch}")
        elif isinstance(ev, Progress):
            self.progress_line(rec, ev)
        elif isinstance(ev, TrainPhase):
            self.print(phase_line(rec, ev))
        elif isinstance(ev, ModelInfo):
            self.print(
                f"{rec.id} model: {ev.trainable_params:,} trainable / {ev.non_trainable_params:,} frozen parameters, "
                f"{ev.num_classes} classes"
            )

    def progress_line(self, rec: RunRecord, ev: Progress) -> None:
        """Plain output: a step's first line and one per quarter done (logs stay short); a step
        of unknown size, its first line and every 100 MB or 1000 items."""
        frac = ev.fraction
        if frac is not None:
            mark = int(4 * frac)
        else:
            mark = int(ev.done // (100e6 if ev.unit == "bytes" else 1000))
        key = (rec.id, f"{ev.phase}:{ev.message}")
        if self._shown is None or self._shown[:2] != key or mark > self._shown[2]:
            self._shown = (*key, mark)
            self.print(f"{rec.id} {runstate.progress_text(ev)}")

    def end(self, rec: RunRecord, state: runstate.RunState | None = None) -> None:
        self.print(end_line(rec, state))

    def summary(self, ws: Workspace, recs: list[RunRecord]) -> None:
        if len(recs) < 2:
            return
        self.print("== summary")
        for r in recs:
            r = ws.get(r.id)
            self.print(f"  {r.id} {r.status:<10} val_acc {_pct(r.best_val_acc)}  {r.name}")


def phase_line(rec: RunRecord, ev: TrainPhase) -> str:
    """``r0001 phase 2/2 fine-tune: epochs 4-7, freeze 3 (BatchNorm frozen), adam lr 0.0001``."""
    first, last = ev.start_epoch + 1, ev.start_epoch + ev.epochs
    return (
        f"{rec.id} phase {ev.label}: epochs {first}-{last}, freeze {ev.freeze_depth} (BatchNorm {ev.batchnorm}), "
        f"{ev.optimizer} lr {ev.learning_rate:g}, {ev.trainable_params:,} trainable parameters"
    )


class LiveDisplay(Display):
    """Rich progress bars (epochs, batches, live metrics, ETA) above which epoch lines scroll."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        super().__init__()
        self.console = console or Console()
        self.progress: Any = None
        self._epochs: Any = None
        self._batches: Any = None

    def print(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

    def begin(self, rec: RunRecord, index: int, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        super().begin(rec, index, total)
        self.progress = Progress(
            TextColumn("{task.description:<14}", markup=False),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}", markup=False),
            console=self.console,
            refresh_per_second=4,
        )
        self.progress.start()
        self._epochs = self.progress.add_task(f"{rec.id} epochs", total=rec.epochs or 1, info="starting the worker")
        self._batches = self.progress.add_task("  batches", total=None, info="")

    def event(self, rec: RunRecord, ev: Event, state: runstate.RunState) -> None:
        if not isinstance(ev, Progress):  # live: the bar below shows it, no scrolling lines
            super().event(rec, ev, state)
        if self.progress is None:
            return
        if isinstance(ev, Progress):
            self.progress.update(self._batches, total=ev.total, completed=ev.done, info=runstate.progress_text(ev))
            return
        eta = f"ETA {_clock(state.eta_seconds())}"
        if isinstance(ev, Phase):
            self.progress.update(self._epochs, info=ev.message)
        elif isinstance(ev, Started):
            self.progress.update(self._epochs, total=ev.epochs, completed=ev.initial_epoch, info="starting")
        elif isinstance(ev, TrainPhase):
            self.progress.update(self._epochs, total=ev.total_epochs, info=f"phase {ev.label}")
        elif isinstance(ev, Batch):
            m = ev.metrics
            self.progress.update(
                self._batches,
                total=ev.steps,
                completed=ev.step,
                info=f"loss {_num(m.get('loss'))} acc {_pct(m.get('acc'))} top5 {_pct(m.get('top5_acc'))}",
            )
            self.progress.update(self._epochs, info=f"epoch {ev.epoch}  {eta}")
        elif isinstance(ev, EpochEnd):
            kept = state.kept() or {}
            word = "best" if kept.get("rule") == "best" else "last"
            self.progress.update(
                self._epochs,
                completed=state.epochs_done,
                info=f"{word} val_acc {_pct(kept.get('val_acc')).strip()}  {eta}",
            )
            self.progress.reset(self._batches, total=state.steps, info="")
        elif isinstance(ev, Checkpoint):
            self.progress.update(self._epochs, info=f"checkpoint at epoch {ev.epoch}")
        elif isinstance(ev, Finished):
            self.progress.update(self._epochs, info=ev.status)

    def end(self, rec: RunRecord, state: runstate.RunState | None = None) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        super().end(rec, state)
