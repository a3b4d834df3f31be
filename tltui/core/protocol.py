"""Worker events: typed records <-> JSON lines.

Shared by the worker (which writes them) and every reader (runner, CLI, TUI).
Stdlib only. One event per line; every line is a JSON object with ``"type"``
and ``"t"`` (Unix time). Decoding never raises on bad input: a torn or foreign
line yields ``None`` so readers can skip it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tltui.core.status import RunStatus

#: Metric keys as they appear in events and in run history (Keras ``logs`` names).
METRIC_KEYS = ("loss", "acc", "top5_acc", "val_loss", "val_acc", "val_top5_acc")
#: Keys of the held-out test evaluation (:class:`Evaluated`). ``top5`` keys are absent when the
#: data has 5 classes or fewer (top-5 accuracy would be 100 % by construction).
TEST_KEYS = ("test_loss", "test_acc", "test_top5_acc")
#: Top-5 accuracy is reported only with this many classes or more (:func:`top_k_na` with k = 5).
TOP5_MIN_CLASSES = 6
#: Why :func:`top_k_na` says n/a.
TOP_K_NA_WHY = "it would be 100% by construction"


def top_k_na(num_classes: int | None, k: int = 5, *, why: bool = True) -> str | None:
    """``"top-5 n/a with 3 classes (it would be 100% by construction)"`` when a top-k accuracy says
    nothing (``k >= num_classes``: every class is in every top-k), else ``None``. The one wording of
    every place that reports top-5 (the CLI, the app, ``--json`` notes); ``why=False`` drops the
    parenthesis where a line has no room for it."""
    if num_classes is None or k < num_classes:
        return None
    text = f"top-{k} n/a with {num_classes} classes"
    return f"{text} ({TOP_K_NA_WHY})" if why else text


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = ""
    t: float

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["type"] = self.type
        return d


@dataclass(frozen=True)
class Started(Event):
    """The worker is up; ``initial_epoch`` > 0 when resuming. ``restore_best``: ``model.keras`` will
    hold the best epoch by val_acc over the whole run (``train.restore_best``); ``False`` (and every
    run before that setting): the last epoch, or early stopping's best when it ended the last phase.
    ``precision``: the Keras dtype policy the run computes in (``float32``, ``mixed_float16``,
    ``mixed_bfloat16``) and ``precision_why`` why (``train.mixed_precision``, "auto" decided by the GPU);
    both ``""`` from older workers."""

    type: ClassVar[str] = "started"
    pid: int = 0
    host: str = ""
    devices: list[str] = field(default_factory=list)
    epochs: int = 0
    initial_epoch: int = 0
    steps_per_epoch: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    restore_best: bool = False
    precision: str = ""
    precision_why: str = ""


@dataclass(frozen=True)
class ModelInfo(Event):
    """A compiled phase's model. ``jit_compile``: XLA on or off (``train.jit_compile``, "auto" as Keras
    decides), ``jit_why`` why; ``None`` and ``""`` from older workers."""

    type: ClassVar[str] = "model"
    total_params: int = 0
    trainable_params: int = 0
    non_trainable_params: int = 0
    num_classes: int = 0
    feature_cache: bool = False
    jit_compile: bool | None = None
    jit_why: str = ""


@dataclass(frozen=True)
class Phase(Event):
    """A named step before training (``data``, ``build``, ``features``...)."""

    type: ClassVar[str] = "phase"
    name: str = ""
    message: str = ""


@dataclass(frozen=True)
class TrainPhase(Event):
    """A phase of a preset with ``[[phases]]`` starts training (again, after a resume): phase
    ``index`` of ``count`` (from 1), its first epoch is ``start_epoch + 1``; ``total_epochs`` is the
    run's length as now planned (an early-stopped phase shortens it)."""

    type: ClassVar[str] = "train_phase"
    index: int = 1
    count: int = 1
    name: str = ""
    start_epoch: int = 0
    epochs: int = 0
    total_epochs: int = 0
    freeze_depth: int | str = 0
    batchnorm: str = "frozen"
    optimizer: str = ""
    learning_rate: float = 0.0
    trainable_params: int = 0

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}" + (f" {self.name}" if self.name else "")


@dataclass(frozen=True)
class Progress(Event):
    """How far a long step before training is (``phase``: download, prepare, decode, weights,
    features): ``done`` of ``total`` ``unit`` (``bytes`` or ``items``; ``total`` ``None`` when
    unknown), ``eta`` seconds when the rate so far allows an estimate. Emitted at a bounded rate."""

    type: ClassVar[str] = "progress"
    phase: str = ""
    done: float = 0.0
    total: float | None = None
    unit: str = "items"
    eta: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done / self.total) if self.total else None


@dataclass(frozen=True)
class EpochBegin(Event):
    type: ClassVar[str] = "epoch_begin"
    epoch: int = 0  # 1-based


@dataclass(frozen=True)
class Batch(Event):
    """Progress inside an epoch; emitted at a bounded rate, not every step."""

    type: ClassVar[str] = "batch"
    epoch: int = 0
    step: int = 0  # 1-based count of steps done in this epoch
    steps: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochEnd(Event):
    type: ClassVar[str] = "epoch_end"
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    lr: float | None = None
    epoch_seconds: float = 0.0


@dataclass(frozen=True)
class Evaluated(Event):
    """The held-out test split, evaluated once after training with the weights the run kept
    (``weights_epoch``: the best epoch when early stopping restored it, else the last one)."""

    type: ClassVar[str] = "evaluated"
    split: str = "test"
    examples: int = 0
    weights_epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # TEST_KEYS


@dataclass(frozen=True)
class Checkpoint(Event):
    type: ClassVar[str] = "checkpoint"
    epoch: int = 0
    path: str = ""


@dataclass(frozen=True)
class Log(Event):
    type: ClassVar[str] = "log"
    level: str = "info"
    message: str = ""


@dataclass(frozen=True)
class Finished(Event):
    """Last event of a worker. ``status``: completed | failed | cancelled."""

    type: ClassVar[str] = "finished"
    status: str = RunStatus.COMPLETED
    reason: str = ""
    epochs_done: int = 0
    model_path: str | None = None
    model_epoch: int | None = None  # the epoch whose weights model.keras holds
    #: why model.keras holds that epoch: "best" (best val_acc of the run, train.restore_best), "early_stopping"
    #: (the last phase's early stopping restored its best), "last" (the last epoch); "" from older workers
    model_rule: str = ""


#: What each :attr:`Finished.model_rule` (and :meth:`tltui.core.runstate.RunState.kept`'s ``rule``) means.
MODEL_RULES = {
    "best": "the best val_acc of the run",
    "early_stopping": "early stopping's best epoch",
    "last": "the last epoch",
}


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        Started,
        ModelInfo,
        Phase,
        TrainPhase,
        Progress,
        EpochBegin,
        Batch,
        EpochEnd,
        Evaluated,
        Checkpoint,
        Log,
        Finished,
    )
}
#: the fields each event type takes (unknown keys of a newer writer are dropped)
_FIELDS: dict[type[Event], frozenset[str]] = {
    cls: frozenset(f.name for f in dataclasses.fields(cls)) for cls in EVENT_TYPES.values()
}


def encode(event: Event) -> str:
    """One JSON line (with trailing newline)."""
    return json.dumps(event.to_dict(), separators=(",", ":"), allow_nan=True) + "\n"


def decode(line: str | bytes) -> Event | None:
    """Parse one line; ``None`` for anything that is not a known, well-formed event."""
    try:
        if isinstance(line, bytes):
            line = line.decode("utf-8")
        obj = json.loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return from_dict(obj)


def from_dict(obj: Any) -> Event | None:
    """The event a decoded JSON object describes (:func:`decode` after ``json.loads``); ``None`` for
    anything that is not a known, well-formed event."""
    if not isinstance(obj, dict):
        return None
    cls = EVENT_TYPES.get(obj.get("type"))  # type: ignore[arg-type]
    if cls is None:
        return None
    names = _FIELDS[cls]
    kwargs = {k: v for k, v in obj.items() if k in names}
    if not isinstance(kwargs.get("t"), (int, float)):
        return None
    try:
        return cls(**kwargs)
    except TypeError:
        return None


class EventTail:
    """Incrementally reads an ``events.jsonl`` that another process appends to.

    Keeps a byte offset; a trailing partial line (a write in progress or a torn
    write after a crash) is held back until its newline arrives. ``torn`` counts
    complete lines that did not decode.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.offset = 0
        self.torn = 0
        self._partial = b""

    def read_new(self, limit: int = -1) -> list[Event]:
        """The events of the lines completed since the last call; ``limit``: read at most that many
        bytes (a long file folds in bounded memory, chunk by chunk)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(limit)
        except FileNotFoundError:
            return []
        if not data:
            return []
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        out: list[Event] = []
        for raw in lines:
            if not raw.strip():
                continue
            ev = decode(raw)
            if ev is None:
                self.torn += 1
            else:
                out.append(ev)
        return out

    @property
    def complete_offset(self) -> int:
        """The byte offset just after the last complete line read (a held-back partial line excluded)."""
        return self.offset - len(self._partial)

    @property
    def pending(self) -> bool:
        """A trailing line without its newline is held back (still being written, or torn)."""
        return bool(self._partial.strip())


def read_events(path: str | os.PathLike[str]) -> list[Event]:
    """All well-formed events of a file (a torn last line is ignored)."""
    return EventTail(path).read_new()
