"""The TUI's data layer: registry rows, folded events and live tails. No Textual here.

The app owns one :class:`RunStore` and drives it from timers: :meth:`RunStore.refresh`
re-reads the registry (~1 Hz, for status changes), :meth:`RunStore.poll` reads what
running runs appended to their ``events.jsonl`` (~10 Hz; a ``stat`` per run when
nothing changed). Both return the ids whose view changed (``poll`` also says which
got more than batch events), so the UI redraws those at its own bounded rates.
Widgets receive immutable snapshots (:class:`RunRow`, :class:`RunSnapshot`), never
the store.

Loading is lazy: the table needs only registry rows; a run's events are folded
when it is running, opened, or summarised in the background
(:func:`load_summary`, safe to call from a thread). Time comes from an injected
``clock`` so tests and snapshots are stable.
"""

from __future__ import annotations

import csv
import io
import os
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tltui.client.queue_ops import places_devices
from tltui.core import cluster_jobs, run_summary
from tltui.core.protocol import EventTail
from tltui.core.runstate import RunState
from tltui.core.status import RunStatus, shown
from tltui.core.workspace import FINAL, RunRecord, Workspace, atomic_write

Clock = Callable[[], float]

#: Distinguishable RGB colours for runs; a run keeps its colour across sessions.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (23, 190, 207),
    (227, 119, 194),
    (188, 189, 34),
    (140, 86, 75),
    (127, 127, 127),
)

LOG_TAIL_BYTES = 64 * 1024


def run_color(run_id: str) -> tuple[int, int, int]:
    """A stable colour for a run (crc32 of its id; Python's ``hash`` is salted per process)."""
    return PALETTE[zlib.crc32(run_id.encode()) % len(PALETTE)]


def hex_color(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


@dataclass(frozen=True)
class RunRow:
    """What the runs table shows for one run."""

    id: str
    name: str
    status: str
    preset_name: str
    epoch: int
    epochs: int | None
    progress: float
    val_acc: float | None
    val_top5_acc: float | None
    best_val_acc: float | None  # the kept epoch's (what model.keras holds or would hold now: RunState.kept)
    best_val_top5_acc: float | None  # ... and its val_top5_acc
    elapsed: float | None
    eta: float | None
    gpus: str
    reason: str | None
    created: float
    loaded: bool
    detail: str | None = None  # a running run's step before training: "download 43%"


@dataclass(frozen=True)
class RunSnapshot:
    """Everything the Run and Compare screens draw for one run, frozen at one moment."""

    row: RunRow
    history: tuple[dict[str, Any], ...]
    batches: tuple[tuple[float, int, int, dict[str, float]], ...]
    epoch_in_progress: int | None
    steps: int | None
    started_at: float | None
    model: dict[str, Any]
    best: dict[str, Any] | None  # the best val_acc epoch (RunState.best)
    test: dict[str, Any] | None  # the held-out test evaluation (RunState.test), once training ended
    preparing: str | None  # the step before training in progress, in words (RunState.preparing_detail)
    devices: tuple[str, ...]
    overrides: dict[str, Any]
    sweep: str | None
    version: int  # events folded so far: equal versions mean equal curves
    history_version: int  # equal: equal epoch history and model; only batches (or nothing) arrived
    phase: str | None = None  # a phased run's phase now ("phase 2/2 fine-tune"; RunState.phase_text)
    phase_starts: tuple[tuple[int, int, str], ...] = ()  # (index, first epoch, name) of phases 2.. (boundaries)
    kept: dict[str, Any] | None = None  # the epoch model.keras holds, or would hold now (RunState.kept)
    cluster: str | None = None  # a cluster run's scheduler job: "slurm 42 on node3 (2 jobs)", the dashboard
    compute: str | None = None  # precision and XLA of the latest worker (RunState.compute_short)


def _running_detail(rec: RunRecord, st: RunState | None, now: float) -> str | None:
    """What the status cell of a running run shows instead of "running": what is true of it beyond that
    (``cancelling``, ``pending (Resources)``, ``cluster unreachable (12 s)``: :func:`tltui.core.status.shown`),
    else the step before training (``download 43%``), else a phased run's phase (``phase 2/2``). A budgeted
    sweep's paused run: where it waits or that it stopped (``paused at rung 2``, ``stopped early at rung 1``)."""
    if rec.status not in (RunStatus.RUNNING, RunStatus.PAUSED):
        return None
    said = shown(rec, now)
    if said != rec.status:
        return said
    if rec.status == RunStatus.PAUSED:
        return None
    if st is None:
        return None
    detail = st.preparing_detail(short=True, started=rec.started)  # started: a resumed run's new worker
    if detail is None and st.phase is not None:
        detail = f"phase {st.phase.index}/{st.phase.count}"
    return detail


@dataclass(frozen=True)
class ResultRow:
    """One line of the Compare results table (the notebook's summary)."""

    id: str
    name: str
    epochs: int
    acc: float | None
    top5_acc: float | None
    val_acc: float | None
    val_top5_acc: float | None
    kept_epoch: int | None  # the epoch model.keras holds; the metrics above are that epoch's
    seconds: float | None
    trainable_params: int | None
    test_acc: float | None = None  # the test split, evaluated once with the kept weights
    test_top5_acc: float | None = None

    CSV_FIELDS = (
        "id",
        "name",
        "epochs",
        "acc",
        "top5_acc",
        "val_acc",
        "val_top5_acc",
        "kept_epoch",
        "test_acc",
        "test_top5_acc",
        "seconds",
        "trainable_params",
    )


def load_summary(events_path: str | os.PathLike[str]) -> tuple[RunState, EventTail]:
    """A finished run's state, from its summary (:mod:`tltui.core.run_summary`; per-batch points
    dropped: only epochs matter then).

    Pure and thread-safe: hand the result to :meth:`RunStore.install`.
    """
    st, tail = run_summary.load(events_path)
    st.batches.clear()
    return st, tail


@dataclass
class RunStore:
    """The app's view of the workspace. Single-threaded: call it from the UI thread."""

    ws: Workspace
    clock: Clock = time.time
    _records: dict[str, RunRecord] = field(default_factory=dict)
    _states: dict[str, RunState] = field(default_factory=dict)
    _tails: dict[str, EventTail] = field(default_factory=dict)
    _watched: set[str] = field(default_factory=set)
    _data_version: int | None = None

    # ------------------------------------------------------------ registry

    def refresh(self, force: bool = False) -> set[str]:
        """Re-read the registry if another connection committed since the last read
        (or ``force``); the ids that were added, removed or changed."""
        version = self.ws.conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version and not force:
            return set()
        self._data_version = version
        fresh = {r.id: r for r in self.ws.list_runs()}
        changed = {rid for rid in fresh.keys() ^ self._records.keys()}
        changed |= {rid for rid, r in fresh.items() if rid in self._records and self._records[rid] != r}
        for rid in self._records.keys() - fresh.keys():
            self._states.pop(rid, None)
            self._tails.pop(rid, None)
            self._watched.discard(rid)
        self._records = fresh
        # A run that left RUNNING between two polls (its last epoch and its status both arrived since):
        # poll() no longer reads it, so its tail is read to the end now, with the status that ended it.
        for rid in changed & self._states.keys():
            self._read_tail(rid)
        return changed

    @property
    def ids(self) -> list[str]:
        return list(self._records)

    def record(self, run_id: str) -> RunRecord | None:
        return self._records.get(run_id)

    # ------------------------------------------------------------ events

    def watch(self, run_id: str) -> None:
        """Keep tailing a run while a screen shows it (whatever its status)."""
        self._watched.add(run_id)
        self.load(run_id)

    def unwatch(self, run_id: str) -> None:
        self._watched.discard(run_id)

    def load(self, run_id: str) -> RunState:
        """The run's folded events, reading the file the first time."""
        st = self._states.get(run_id)
        if st is None:
            st, tail = run_summary.load(self.ws.run_paths(run_id).events)
            self._states[run_id], self._tails[run_id] = st, tail
        return st

    def install(self, run_id: str, state: RunState, tail: EventTail) -> bool:
        """Adopt a state folded elsewhere (a background thread); ``False`` if already loaded."""
        if run_id in self._states or run_id not in self._records:
            return False
        self._states[run_id], self._tails[run_id] = state, tail
        return True

    def unloaded_final(self) -> list[str]:
        """Finished runs whose events were not folded yet (for background summaries)."""
        return [rid for rid, r in self._records.items() if r.status in FINAL and rid not in self._states]

    def poll(self) -> tuple[set[str], set[str]]:
        """Read new events of running and watched runs: (the ids that got any, the ids
        that got more than batch events). Batch events move only a step counter and live
        metrics, which the UI may show at a lower rate than an epoch or status change."""
        changed: set[str] = set()
        urgent: set[str] = set()
        for rid, rec in self._records.items():
            if rec.status != RunStatus.RUNNING and rid not in self._watched:
                continue
            if rid not in self._states:
                self.load(rid)
                changed.add(rid)
                urgent.add(rid)
                continue
            got, more = self._read_tail(rid)
            if got:
                changed.add(rid)
            if more:
                urgent.add(rid)
        return changed, urgent

    def _read_tail(self, run_id: str) -> tuple[bool, bool]:
        """Fold a loaded run's new events: (any arrived, more than batch events arrived)."""
        tail = self._tails[run_id]
        try:
            size = os.stat(tail.path).st_size
        except OSError:
            return False, False
        if size <= tail.offset:
            return False, False
        events = tail.read_new()
        st = self._states[run_id]
        history_before = st.history_version
        for ev in events:
            st.apply(ev)
        return bool(events), st.history_version != history_before  # RunState's own "more than a batch"

    # ------------------------------------------------------------ views

    def row(self, run_id: str) -> RunRow:
        rec = self._records[run_id]
        st = self._states.get(run_id)
        now = self.clock()
        started = rec.started
        if st is not None and st.started_at is not None:  # every worker segment of a resumed run
            elapsed = st.elapsed(now, started) if rec.status == RunStatus.RUNNING else st.elapsed()
        elif rec.resume:  # the registry has only its latest worker's start: its events tell (loaded soon)
            elapsed = None
        elif rec.status == RunStatus.RUNNING:
            elapsed = now - started if started else None
        elif started and rec.finished:
            elapsed = rec.finished - started
        else:
            elapsed = None
        epoch, epochs, progress = rec.epoch, rec.epochs, 0.0
        val_acc = val_top5 = eta = None
        best_acc, best_top5 = rec.best_val_acc, rec.best_val_top5_acc
        if st is not None:
            epochs = st.epochs or epochs
            epoch = st.epoch if (rec.status == RunStatus.RUNNING and st.epoch) else st.epochs_done
            progress = st.progress()
            hist = st.history_list()
            if hist:
                val_acc, val_top5 = hist[-1].get("val_acc"), hist[-1].get("val_top5_acc")
            kept = st.kept()
            if kept is not None:
                best_acc, best_top5 = kept["val_acc"], kept.get("val_top5_acc")
            if rec.status == RunStatus.RUNNING:
                eta = st.eta_seconds()
        elif epochs:
            progress = min(1.0, epoch / epochs)
        if rec.status == RunStatus.COMPLETED:
            progress = 1.0
        if rec.gpus:
            gpus = ",".join(str(g) for g in rec.gpus)
        elif rec.status == RunStatus.RUNNING:
            gpus = "cpu"
        else:
            gpus = "-"
        if places_devices(rec.executor) and rec.status in (
            RunStatus.RUNNING,
            RunStatus.COMPLETED,
            RunStatus.FAILED,
            RunStatus.INTERRUPTED,
            RunStatus.CANCELLED,
        ):
            # where a cluster run executes: "ray:node7/0" (executor, host, devices)
            where = f"{rec.executor}:{rec.host or '?'}"
            gpus = where if gpus in ("-", "cpu") else f"{where}/{gpus}"
        return RunRow(
            id=rec.id,
            name=rec.name,
            status=rec.status,
            preset_name=rec.preset_name,
            epoch=epoch or 0,
            epochs=epochs,
            progress=progress,
            val_acc=val_acc,
            val_top5_acc=val_top5,
            best_val_acc=best_acc,
            best_val_top5_acc=best_top5,
            elapsed=elapsed,
            eta=eta,
            gpus=gpus,
            reason=rec.reason,
            created=rec.created,
            loaded=st is not None,
            detail=_running_detail(rec, st, now),
        )

    def rows(self) -> list[RunRow]:
        return [self.row(rid) for rid in self._records]

    def snapshot(self, run_id: str) -> RunSnapshot:
        st = self.load(run_id)
        rec = self._records[run_id]
        in_progress = st.epoch if st.epoch and st.epoch > st.epochs_done and st.finished is None else None
        return RunSnapshot(
            row=self.row(run_id),
            history=tuple(dict(h) for h in st.history_list()),
            batches=tuple(st.batches),
            epoch_in_progress=in_progress,
            steps=st.steps,
            started_at=st.first_started_at,
            model=dict(st.model),
            best=st.best(),
            test=dict(st.test) if st.test else None,
            preparing=st.preparing_detail(started=rec.started) if rec.status == RunStatus.RUNNING else None,
            devices=tuple(st.devices),
            overrides=dict(rec.overrides),
            sweep=rec.sweep,
            version=st.events_seen,
            history_version=st.history_version,
            phase=st.phase_text(),
            phase_starts=tuple(st.phase_starts()),
            kept=st.kept(),
            cluster=self._cluster(rec) if places_devices(rec.executor) else None,
            compute=st.compute_short(),
        )

    def _cluster(self, rec: RunRecord) -> str | None:
        jobs = cluster_jobs.history(self.ws.run_paths(rec.id).dir)
        if not jobs:
            return None
        last = jobs[-1]
        text = f"{last.executor} job {last.job_id}" + (f" on {rec.host}" if rec.host else "")
        if len(jobs) > 1:
            text += f" ({len(jobs)} jobs)"
        return text + (f" · {last.dashboard}" if last.dashboard else "")

    # ------------------------------------------------------------ files

    def preset_text(self, run_id: str) -> str:
        try:
            return self.ws.run_paths(run_id).preset.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            return f"# cannot read the preset: {e.strerror}"

    def log_tail(self, run_id: str, lines: int = 200) -> str:
        """The last ``lines`` lines of the run's worker log ('' when there is none)."""
        path = self.ws.run_paths(run_id).log
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - LOG_TAIL_BYTES))
                blob = f.read()
        except OSError:
            return ""
        text = blob.decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def freeze_map(self, run_id: str) -> dict[str, Any] | None:
        import json

        try:
            data = json.loads(self.ws.run_paths(run_id).freeze_map.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        data["moved"] = self.ws.run_paths(run_id).read_moved()  # what did train, per layer
        return data


# ---------------------------------------------------------------- compare


def results(snaps: Iterable[RunSnapshot]) -> list[ResultRow]:
    """The notebook's table: metrics at the epoch ``model.keras`` holds (the best by default)."""
    out = []
    for s in snaps:
        hist = s.history
        kept_epoch = s.kept["epoch"] if s.kept else None
        at = next((h for h in hist if h["epoch"] == kept_epoch), hist[-1] if hist else {})
        secs = sum(h.get("epoch_seconds") or 0.0 for h in hist) if hist else None
        out.append(
            ResultRow(
                id=s.row.id,
                name=s.row.name,
                epochs=len(hist),
                acc=at.get("acc"),
                top5_acc=at.get("top5_acc"),
                val_acc=at.get("val_acc"),
                val_top5_acc=at.get("val_top5_acc"),
                kept_epoch=kept_epoch,
                seconds=secs,
                trainable_params=s.model.get("trainable_params"),
                test_acc=(s.test or {}).get("test_acc"),
                test_top5_acc=(s.test or {}).get("test_top5_acc"),
            )
        )
    return out


def sweep_bars(snaps: Sequence[RunSnapshot]) -> tuple[str, list[tuple[str, float]]]:
    """The kept epoch's val_acc per swept value: ``(label of the swept keys, [(value, val_acc)])``.

    Empty unless the runs are one preset's sweep: the same preset, and keys every run sets with
    values that differ (two unrelated runs are not compared "by" a key only one of them sets).
    """
    if len({s.row.preset_name for s in snaps}) > 1:
        return "", []
    keys = sorted(set.intersection(*(set(s.overrides) for s in snaps))) if snaps else []
    varying = [k for k in keys if len({repr(s.overrides.get(k)) for s in snaps}) > 1]
    if not varying:
        return "", []
    bars = []
    for s in snaps:
        label = ",".join(str(s.overrides.get(k)) for k in varying)
        bars.append((label, (s.kept or {}).get("val_acc") or 0.0))
    return ", ".join(varying), bars


def results_csv(rows: Sequence[ResultRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ResultRow.CSV_FIELDS)
    for r in rows:
        w.writerow(["" if getattr(r, f) is None else getattr(r, f) for f in ResultRow.CSV_FIELDS])
    return buf.getvalue()


def export_results(ws: Workspace, rows: Sequence[ResultRow], now: float) -> Path:
    """Write the table atomically to ``WORKSPACE/exports/compare-YYYYmmdd-HHMMSS.csv``."""
    out_dir = ws.root / "exports"
    out_dir.mkdir(mode=0o700, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    path = out_dir / f"compare-{stamp}.csv"
    atomic_write(path, results_csv(rows))
    return path
