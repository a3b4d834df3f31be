"""The workspace: its folder, the SQLite run registry (runs + queue), run-dir layout.

One source of truth per fact: the registry holds run status and the queue; the
run directory holds the resolved preset, events, logs, checkpoints and exports.
Every write that matters is atomic (:func:`atomic_write`). Several tltui
processes may open one workspace at once: SQLite in WAL mode, writes in
``BEGIN IMMEDIATE`` transactions with a generous busy timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from tltui.core.errors import TltuiError
from tltui.core.status import ACTIVE, FINAL, RESUMABLE, RunStatus  # noqa: F401 - ACTIVE/FINAL/RESUMABLE: part of this module's API

SCHEMA_VERSION = 1


class WorkspaceError(TltuiError):
    """A user-facing problem with the workspace or a run id (one line)."""


def default_home() -> Path:
    env = os.environ.get("TLTUI_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("tltui", appauthor=False))


SETTINGS_FILE = "settings.toml"
#: A run's summary file (``RunPaths.summary``); the Ray relay never ships it to a node.
SUMMARY_NAME = "events.summary.json"
#: The registry meta key that pauses the queue.
PAUSED_KEY = "queue_paused"
#: The registry meta key of the highest run number ever given: a deleted run's id is never given again (a
#: reader that saw the old run would take the new one's events for more of the old one's).
LAST_SEQ_KEY = "last_seq"


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o600) -> None:
    """Write a file so readers see the old or the new content, never a mix."""
    path = Path(path)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class RunPaths:
    """Where each file of a run lives. Pure path arithmetic; creates nothing."""

    dir: Path

    @property
    def preset(self) -> Path:
        return self.dir / "preset.toml"

    @property
    def events(self) -> Path:
        return self.dir / "events.jsonl"

    @property
    def summary(self) -> Path:
        """``events.jsonl`` folded up to an epoch's end (``tltui.core.run_summary``): what readers load."""
        return self.dir / SUMMARY_NAME

    @property
    def log(self) -> Path:
        return self.dir / "worker.log"

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def backup(self) -> Path:
        return self.dir / "backup"

    @property
    def tensorboard(self) -> Path:
        return self.dir / "tensorboard"

    @property
    def model(self) -> Path:
        return self.dir / "model.keras"

    @property
    def classes(self) -> Path:
        return self.dir / "classes.json"

    @property
    def freeze_map(self) -> Path:
        return self.dir / "freeze_map.json"

    @property
    def data_info(self) -> Path:
        return self.dir / "data.json"

    @property
    def moved(self) -> Path:
        """How far each layer's weights moved since the run (a phased run: its current or last phase)
        started (``tltui.worker.moved``)."""
        return self.dir / "moved.json"

    def phase_dir(self, phase: int) -> Path:
        """A phased run's records of phase ``phase`` (from 1): ``freeze_map.json``, ``moved.json``."""
        return self.dir / "phases" / str(phase)

    def freeze_map_of(self, phase: int | None = None) -> Path:
        return self.freeze_map if phase is None else self.phase_dir(phase) / "freeze_map.json"

    def moved_of(self, phase: int | None = None) -> Path:
        return self.moved if phase is None else self.phase_dir(phase) / "moved.json"

    def read_moved(self, phase: int | None = None) -> dict[str, Any] | None:
        """The weights-moved record (of phase ``phase`` of a phased run), or ``None`` (none yet,
        unreadable, or not a record)."""
        try:
            doc = json.loads(self.moved_of(phase).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("layers"), list) else None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A row of the registry. Immutable snapshot; read again to see changes."""

    id: str
    seq: int
    name: str
    status: str
    created: float
    preset_name: str = ""
    sweep: str | None = None
    started: float | None = None
    finished: float | None = None
    reason: str | None = None
    pid: int | None = None
    pid_start: float | None = None
    host: str | None = None
    gpus: list[int] | None = None
    queue_pos: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    executor: str = "local"
    epochs: int | None = None
    epoch: int = 0
    best_val_acc: float | None = None
    best_val_top5_acc: float | None = None
    best_epoch: int | None = None
    cancel_requested: bool = False
    updated: float | None = None
    resume: bool = False  # start the worker with --resume (continue from its backup)
    owner_pid: int | None = None  # the process supervising the worker (queue runner or `tltui run`)
    owner_start: float | None = None
    # a running cluster run as its scheduler sees it (tltui.core.status.SchedState; None: running), since when
    sched_state: str | None = None
    sched_reason: str | None = None
    sched_since: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _NAMES}


_COLUMNS = [
    ("id", "TEXT PRIMARY KEY"),
    ("seq", "INTEGER NOT NULL UNIQUE"),
    ("name", "TEXT NOT NULL"),
    ("status", "TEXT NOT NULL"),
    ("created", "REAL NOT NULL"),
    ("preset_name", "TEXT NOT NULL DEFAULT ''"),
    ("sweep", "TEXT"),
    ("started", "REAL"),
    ("finished", "REAL"),
    ("reason", "TEXT"),
    ("pid", "INTEGER"),
    ("pid_start", "REAL"),
    ("host", "TEXT"),
    ("gpus", "TEXT"),
    ("queue_pos", "REAL"),
    ("overrides", "TEXT NOT NULL DEFAULT '{}'"),
    ("executor", "TEXT NOT NULL DEFAULT 'local'"),
    ("epochs", "INTEGER"),
    ("epoch", "INTEGER NOT NULL DEFAULT 0"),
    ("best_val_acc", "REAL"),
    ("best_val_top5_acc", "REAL"),
    ("best_epoch", "INTEGER"),
    ("cancel_requested", "INTEGER NOT NULL DEFAULT 0"),
    ("updated", "REAL"),
    ("resume", "INTEGER NOT NULL DEFAULT 0"),
    ("owner_pid", "INTEGER"),
    ("owner_start", "REAL"),
    ("sched_state", "TEXT"),
    ("sched_reason", "TEXT"),
    ("sched_since", "REAL"),
]
_NAMES = [c for c, _ in _COLUMNS]
_JSON_COLS = {"gpus", "overrides"}


_GPUS_IDX = _NAMES.index("gpus")
_OVERRIDES_IDX = _NAMES.index("overrides")
_CANCEL_IDX = _NAMES.index("cancel_requested")
_RESUME_IDX = _NAMES.index("resume")


def _loads(text: str | None, fallback: Any) -> Any:
    if text is None or text == "{}":
        return fallback() if callable(fallback) else fallback
    try:
        return json.loads(text)
    except ValueError:
        return fallback() if callable(fallback) else fallback


def _row_to_record(row: Sequence[Any]) -> RunRecord:
    vals = list(row)
    vals[_GPUS_IDX] = _loads(vals[_GPUS_IDX], None)
    vals[_OVERRIDES_IDX] = _loads(vals[_OVERRIDES_IDX], dict)
    vals[_CANCEL_IDX] = bool(vals[_CANCEL_IDX])
    vals[_RESUME_IDX] = bool(vals[_RESUME_IDX])
    return RunRecord(*vals)


def distinct_sweep_names(names: Sequence[str], preset_name: str, taken: set[str]) -> list[str]:
    """The run names of a sweep, with the first ``-N`` (N = 2, 3, ...) after the preset's name that no
    run in ``taken`` has, when one of them is taken (the same sweep queued again, maybe with other
    ``--set`` values): ``photos[seed=1]`` becomes ``photos-2[seed=1]``."""
    if not taken.intersection(names):
        return list(names)
    n = 2
    while True:
        renamed = [
            f"{preset_name}-{n}{name[len(preset_name) :]}"
            if preset_name and name.startswith(preset_name)
            else f"{name}-{n}"
            for name in names
        ]
        if not taken.intersection(renamed):
            return renamed
        n += 1


class Workspace:
    """A workspace folder and its registry. Cheap to open; safe to share between processes."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, create: bool = True) -> None:
        # absolute: the queue runner and workers get this path but run in other directories
        self.root = (Path(root).expanduser() if root else default_home()).absolute()
        if create:
            try:
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                for sub in ("runs", "presets", "cache"):
                    (self.root / sub).mkdir(mode=0o700, exist_ok=True)
            except OSError as e:  # a file in the way, a folder it may not write to
                raise WorkspaceError(f"{self.root}: cannot be a workspace ({e.strerror or e})") from e
        elif not self.root.is_dir():
            raise WorkspaceError(f"{self.root}: no such workspace")
        self._conn: sqlite3.Connection | None = None

    # ---------------------------------------------------------------- locations

    @property
    def db_path(self) -> Path:
        return self.root / "registry.sqlite"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def presets_dir(self) -> Path:
        return self.root / "presets"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS_FILE

    # the queue runner's files: one runner per workspace holds the lock, says who it is in
    # runner.json and logs to runner.log (clients read them; only the runner writes them)
    @property
    def runner_lock(self) -> Path:
        return self.root / "runner.lock"

    @property
    def runner_info(self) -> Path:
        return self.root / "runner.json"

    @property
    def runner_log(self) -> Path:
        return self.root / "runner.log"

    def is_paused(self) -> bool:
        """The queue is paused: the runner starts no new run (running ones go on)."""
        return self.get_meta(PAUSED_KEY, "0") == "1"

    def requested_gpus(self, run_id: str) -> int | None:
        """``train.gpus`` of a run's resolved preset (``None``: not set or unreadable)."""
        import tomllib

        try:
            data = tomllib.loads(self.run_paths(run_id).preset.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None
        value = (data.get("train") or {}).get("gpus")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def run_paths(self, run_id: str) -> RunPaths:
        return RunPaths(self.runs_dir / run_id)

    # ---------------------------------------------------------------- connection

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            conn: sqlite3.Connection | None = None
            try:
                conn = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA busy_timeout = 60000")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
                self._migrate(conn)
            except sqlite3.DatabaseError as e:
                if conn is not None:
                    conn.close()
                if isinstance(e, sqlite3.OperationalError):  # e.g. a folder it may not write to
                    raise WorkspaceError(f"{self.db_path}: cannot open the registry ({e})") from e
                raise WorkspaceError(f"{self.db_path}: not a tltui registry ({e})") from e
            with contextlib.suppress(OSError):
                os.chmod(self.db_path, 0o600)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        cols = ", ".join(f"{n} {t}" for n, t in _COLUMNS)
        with _immediate(conn):
            conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
            for name, decl in _COLUMNS:
                if name not in have:  # a registry from an older tltui: add the new column
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")
            conn.execute("CREATE INDEX IF NOT EXISTS runs_status ON runs(status)")
            conn.execute("CREATE INDEX IF NOT EXISTS runs_queue ON runs(queue_pos)")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): all or nothing, one writer at a time."""
        with _immediate(self.conn) as c:
            yield c

    # ---------------------------------------------------------------- runs

    def create_runs(
        self,
        specs: Sequence[tuple[str, str, dict[str, Any]]],
        *,
        preset_name: str,
        epochs: Sequence[int | None] | None = None,
        queued: bool = True,
        executor: str = "local",
        write_files: Any = None,
    ) -> list[RunRecord]:
        """Record new runs in one transaction.

        ``specs`` holds ``(name, preset_toml, overrides)`` per run. Each run gets
        its folder with ``preset.toml`` before the transaction commits, so a
        recorded run always has its preset. ``queued=False`` records them as
        running-to-be (for ``tltui run`` in the foreground: status ``queued``
        but outside the queue order). A sweep queued again gets names no run has
        yet (``photos-2[seed=1]``: :func:`distinct_sweep_names`).
        """
        now = time.time()
        sweep = secrets.token_hex(4) if len(specs) > 1 else None
        out: list[RunRecord] = []
        with self.transaction() as c:
            seq = c.execute("SELECT COALESCE(MAX(seq), 0) FROM runs").fetchone()[0]
            seq = max(seq, int(self.get_meta(LAST_SEQ_KEY, "0") or 0))  # the same connection: inside this transaction
            pos = c.execute("SELECT COALESCE(MAX(queue_pos), 0) FROM runs").fetchone()[0]
            if sweep is not None:
                taken = {row[0] for row in c.execute("SELECT name FROM runs")}
                names = distinct_sweep_names([s[0] for s in specs], preset_name, taken)
                specs = [(n, *s[1:]) for n, s in zip(names, specs, strict=True)]
            for i, (name, toml_text, overrides) in enumerate(specs):
                seq += 1
                while self.run_paths(format_run_id(seq)).dir.exists():  # a folder no run owns (a delete under way,
                    seq += 1  # a create that failed before its commit): its files are not the new run's
                run_id = format_run_id(seq)
                paths = self.run_paths(run_id)
                paths.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                atomic_write(paths.preset, toml_text)
                qpos = (pos + i + 1) if queued else None
                c.execute(
                    "INSERT INTO runs(id, seq, name, status, created, preset_name, sweep, queue_pos,"
                    " overrides, executor, epochs, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        run_id,
                        seq,
                        name,
                        RunStatus.QUEUED,
                        now,
                        preset_name,
                        sweep,
                        qpos,
                        json.dumps(overrides, sort_keys=True),
                        executor,
                        epochs[i] if epochs else None,
                        now,
                    ),
                )
                out.append(self._get(c, run_id))
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (LAST_SEQ_KEY, str(seq)))
        return out

    def _get(self, c: sqlite3.Connection, run_id: str) -> RunRecord:
        row = c.execute(f"SELECT {', '.join(_NAMES)} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise WorkspaceError(f"{run_id}: no such run (see `tltui runs ls`)")
        return _row_to_record(row)

    def get(self, run_id: str) -> RunRecord:
        return self._get(self.conn, self.resolve_id(run_id))

    def resolve_id(self, text: str) -> str:
        """Accept ``r0012``, ``12`` or ``0012`` for run r0012."""
        t = text.strip()
        if t.isdigit():
            return format_run_id(int(t))
        if t[:1] == "r" and t[1:].isdigit():
            return format_run_id(int(t[1:]))
        raise WorkspaceError(f"{text!r}: not a run id (expected like r0012; see `tltui runs ls`)")

    def list_runs(self, statuses: Sequence[str] | None = None) -> list[RunRecord]:
        q = f"SELECT {', '.join(_NAMES)} FROM runs"
        args: tuple[Any, ...] = ()
        if statuses:
            q += f" WHERE status IN ({', '.join('?' * len(statuses))})"
            args = tuple(statuses)
        q += " ORDER BY seq"
        return [_row_to_record(r) for r in self.conn.execute(q, args)]

    def queue(self) -> list[RunRecord]:
        """Queued runs in start order."""
        rows = self.conn.execute(
            f"SELECT {', '.join(_NAMES)} FROM runs WHERE status = 'queued' AND queue_pos IS NOT NULL"
            " ORDER BY queue_pos, seq"
        )
        return [_row_to_record(r) for r in rows]

    def update(self, run_id: str, *, expect: Sequence[str] | None = None, **fields: Any) -> RunRecord | None:
        """Set fields of a run; with ``expect``, only if its status is one of those.

        Returns the new record, or ``None`` when ``expect`` did not match (another
        process changed the run first).
        """
        fields["updated"] = time.time()
        for col in _JSON_COLS & fields.keys():
            if fields[col] is not None:
                fields[col] = json.dumps(fields[col], sort_keys=True)
        for flag in ("cancel_requested", "resume"):
            if flag in fields:
                fields[flag] = int(bool(fields[flag]))
        bad = set(fields) - set(_NAMES)
        if bad:
            raise ValueError(f"unknown run fields: {sorted(bad)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction() as c:
            rec = self._get(c, run_id)
            if expect is not None and rec.status not in expect:
                return None
            c.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))
            return self._get(c, run_id)

    def delete(self, run_id: str) -> None:
        import shutil

        with self.transaction() as c:
            rec = self._get(c, run_id)
            if rec.status == RunStatus.RUNNING:
                raise WorkspaceError(f"{run_id}: is running; cancel it first")
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.run_paths(run_id).dir, ignore_errors=True)

    def move(self, run_id: str, to: int) -> None:
        """Put a queued run at 1-based position ``to`` of the queue."""
        with self.transaction() as c:
            rec = self._get(c, run_id)
            if rec.status != RunStatus.QUEUED or rec.queue_pos is None:
                raise WorkspaceError(f"{run_id}: is {rec.status}, not queued")
            ids = [
                r[0]
                for r in c.execute(
                    "SELECT id FROM runs WHERE status = 'queued' AND queue_pos IS NOT NULL ORDER BY queue_pos, seq"
                )
            ]
            ids.remove(run_id)
            ids.insert(max(0, min(len(ids), to - 1)), run_id)
            for i, rid in enumerate(ids, 1):
                c.execute("UPDATE runs SET queue_pos = ? WHERE id = ?", (float(i), rid))

    def requeue(
        self, run_id: str, *, expect: Sequence[str] | None = None, resume: bool | None = None
    ) -> RunRecord | None:
        """Put a run back at the end of the queue (for ``resume``).

        With ``expect``, only if its status is one of those (else ``None``, nothing
        changed); ``resume`` sets whether the worker starts with ``--resume``.
        """
        with self.transaction() as c:
            if expect is not None and self._get(c, run_id).status not in expect:
                return None
            pos = c.execute("SELECT COALESCE(MAX(queue_pos), 0) FROM runs").fetchone()[0]
            c.execute(
                "UPDATE runs SET status = 'queued', queue_pos = ?, reason = NULL, pid = NULL, pid_start = NULL,"
                " cancel_requested = 0, finished = NULL, owner_pid = NULL, owner_start = NULL, updated = ?"
                " WHERE id = ?",
                (pos + 1, time.time(), run_id),
            )
            if resume is not None:
                c.execute("UPDATE runs SET resume = ? WHERE id = ?", (int(resume), run_id))
            return self._get(c, run_id)

    # ---------------------------------------------------------------- meta

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


def format_run_id(seq: int) -> str:
    return f"r{seq:04d}"


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    for attempt in range(50):
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as e:
            # busy_timeout covers most contention; this covers the rest (e.g. WAL recovery)
            if "locked" not in str(e) and "busy" not in str(e) or attempt == 49:
                raise
            time.sleep(0.05 * (attempt + 1))
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")
