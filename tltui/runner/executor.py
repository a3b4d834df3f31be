"""How the queue runner launches workers: one small interface, a local default.

The scheduler (:mod:`tltui.runner.loop`) talks only to :class:`Executor` and
:class:`Job`, so a cluster backend slots in by adding its class to :data:`EXECUTORS`
(built-ins: Ray, Slurm), or from a separate package through the entry-point group
``tltui.executors``. What the scheduler needs to know about an executor is on its class, never
in its name: :attr:`Executor.places_devices` (does it place its own devices, as a cluster's
scheduler does, or does the runner give it this machine's GPU/CPU slots, as for ``local``?) and
:attr:`Executor.settings_model` (its ``[NAME]`` table of ``settings.toml``). A client that holds
only a run's executor name asks :data:`EXECUTORS` (:meth:`_Executors.places_devices`); the TUI
never launches executors (it reads the registry and the run's ``events.jsonl``).

A run's worker always appends its events to ``events.jsonl`` itself; a job's
:meth:`Job.events` is a live convenience, never the record.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, ClassVar

from tltui.core import plugins
from tltui.core.errors import PresetError
from tltui.core.protocol import Event
from tltui.core.workspace import RunRecord, Workspace, WorkspaceError
from tltui.runner import supervisor

if TYPE_CHECKING:  # pydantic: imported only by an executor that has settings
    from pydantic import BaseModel

    from tltui.core.settings import Settings


@dataclass(frozen=True)
class JobStatus:
    """``alive``; once not, ``returncode`` (negative: killed by that signal;
    ``None``: unknown, e.g. a worker this process did not start)."""

    alive: bool
    returncode: int | None = None
    lost: bool = False  # the job vanished with its node/cluster: the run is ``interrupted``, not failed
    #: While alive, what the scheduler says beyond "running" (:class:`tltui.core.status.SchedState`: waiting in
    #: its queue, or not answering), ``reason`` (its words: ``Resources``, ``BeginTime``...) and ``since`` (when,
    #: wall clock; ``None``: now). The runner records them on the run (``sched_*``); clients show them.
    sched_state: str | None = None
    reason: str | None = None
    since: float | None = None
    #: Where the job runs, once the scheduler says (a node name).
    node: str | None = None
    #: Once not alive, what happened in a few words when the executor knows better than the exit code
    #: ("cluster unreachable for 120 s", "never started: ..."): the failure reason starts with it.
    cause: str | None = None


class Job(ABC):
    """One launched worker as the scheduler sees it."""

    run_id: str
    pid: int | None

    def fileno(self) -> int | None:
        """A descriptor that turns readable when events arrive, for ``selectors``; ``None``: poll."""
        return None

    @abstractmethod
    def events(self) -> list[Event]:
        """Events that arrived since the last call (never blocks)."""

    @abstractmethod
    def status(self) -> JobStatus: ...

    @abstractmethod
    def cancel(self, *, force: bool = False) -> None:
        """Ask the worker to stop (it checkpoints and ends ``cancelled``); ``force``: kill it."""

    def close(self) -> None:
        """Release what the job holds in this process (never touches the worker)."""


class Executor(ABC):
    """Launches and re-attaches workers for one workspace.

    A subclass says what it is on the class (the registry refuses one that does not): its
    :attr:`name`, whether it :attr:`places_devices`, and, if it has settings, its
    :attr:`settings_model`, whose validated table the instance keeps in :attr:`settings`."""

    #: What ``--executor``, ``[executor] default`` and the registry call it, and its ``[NAME]`` table.
    name: ClassVar[str]
    #: ``True``: it places its own devices (a cluster's scheduler does): the runner submits its runs
    #: at once, with no devices, and they take none of this machine's slots. ``False``: its workers
    #: run on this machine's devices: the runner gives each run GPUs (or a CPU slot) from the slots
    #: it counts over every such executor's running runs, and ``submit`` gets them.
    places_devices: ClassVar[bool]
    #: The pydantic model of its ``[NAME]`` table in ``settings.toml`` (``None``: it has none);
    #: :meth:`tltui.core.settings.Settings.table` validates the table with it, unknown keys and all.
    settings_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        #: The validated ``[NAME]`` table (``None`` without a :attr:`settings_model`); a problem with
        #: it (or with the file as a whole) is a ``PresetError`` here, so it fails the run that
        #: needed this executor and no other.
        self.settings: BaseModel | None = None
        if self.settings_model is not None:
            from tltui.core.settings import Settings

            self.settings = Settings.load(ws, strict=False).table(self.name, self.settings_model)

    @abstractmethod
    def submit(self, run_id: str, *, gpus: Sequence[int], resume: bool) -> Job:
        """Start the worker of a run on these devices (``[]``: CPU)."""

    @abstractmethod
    def adopt(self, rec: RunRecord) -> Job | None:
        """Take over a running run whose supervisor is gone; ``None`` if its worker is gone too."""

    def logs(self, run_id: str, lines: int = supervisor.LOG_TAIL_LINES) -> str:
        """The tail of a run's worker log, one line."""
        return supervisor.log_tail(self.ws.run_paths(run_id).log, lines)

    def capacity_warnings(self, gpus: int | None) -> list[str]:
        """What this executor's cluster cannot give a run that asks ``gpus`` (``train.gpus``; ``None``: unset), one
        line each, asked of the cluster now (``check`` and ``queue add`` print them); ``[]`` when it can, or when
        the cluster cannot be asked (the submission says so). The runner checks this machine's own GPUs itself."""
        return []

    def array_key(self, rec: RunRecord) -> str | None:
        """For an executor that :attr:`places_devices`: the runs of one queue tick with the same key (not ``None``)
        go to :meth:`submit_array` together, as one job array; ``None`` (the default): the run goes alone."""
        return None

    def submit_array(self, run_ids: Sequence[str]) -> list[Job]:
        """Start new runs (none a resume) as one job array, a :class:`Job` per run in that order; only called for
        runs :meth:`array_key` grouped."""
        raise NotImplementedError(f"the {self.name} executor has no job arrays")


def _signal_group(pid: int, sig: int) -> None:
    """Signal the worker's process group (it leads its own session), else the pid."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


class LocalJob(Job):
    """A worker this process started: a child with an event pipe."""

    def __init__(self, wp: supervisor.WorkerProc) -> None:
        self.wp = wp
        self.run_id = wp.run_id
        self.pid = wp.pid

    def fileno(self) -> int | None:
        return None if self.wp.eof else self.wp.fd

    def events(self) -> list[Event]:
        return [] if self.wp.eof else self.wp.read_events()

    def status(self) -> JobStatus:
        rc = self.wp.proc.poll()
        return JobStatus(alive=rc is None, returncode=rc)

    def cancel(self, *, force: bool = False) -> None:
        if self.wp.proc.poll() is None:
            _signal_group(self.wp.pid, signal.SIGKILL if force else signal.SIGTERM)

    def close(self) -> None:
        self.wp.close()


class AdoptedJob(Job):
    """A worker started by a supervisor that died: watched by pid + start time,
    its events tailed from ``events.jsonl``. :attr:`state` is the run's state when it was adopted,
    read from its summary plus what came after it (the epochs, not every batch event);
    :meth:`events` returns what the worker writes after that."""

    pid: int  # known: adoption found the worker by it

    def __init__(self, run_id: str, pid: int, pid_start: float | None, events_path: os.PathLike[str]) -> None:
        from tltui.core import run_summary

        self.run_id = run_id
        self.pid = pid
        self.pid_start = pid_start
        self.state, self.tail = run_summary.load(events_path, save=False)

    def events(self) -> list[Event]:
        return self.tail.read_new()

    def status(self) -> JobStatus:
        return JobStatus(alive=supervisor.is_alive(self.pid, self.pid_start))

    def cancel(self, *, force: bool = False) -> None:
        if supervisor.is_alive(self.pid, self.pid_start):
            _signal_group(self.pid, signal.SIGKILL if force else signal.SIGTERM)


class LocalExecutor(Executor):
    """Workers as child processes on this machine (``python -m tltui.worker train``), on the devices
    the runner gives them. Subclass it for any executor whose workers run here (under ``nice``,
    in a container): it keeps ``places_devices = False`` and the runner's slot accounting."""

    name = "local"
    places_devices = False

    def submit(self, run_id: str, *, gpus: Sequence[int], resume: bool) -> Job:
        return LocalJob(supervisor.spawn_worker(self.ws, run_id, resume=resume, gpus=list(gpus)))

    def adopt(self, rec: RunRecord) -> Job | None:
        if not supervisor.is_alive(rec.pid, rec.pid_start):
            return None
        assert rec.pid is not None
        return AdoptedJob(rec.id, rec.pid, rec.pid_start, self.ws.run_paths(rec.id).events)


#: The entry-point group through which an installed package adds an executor, e.g. in its pyproject.toml:
#: ``[project.entry-points."tltui.executors"]`` ``kube = "tltui_kube:KubeExecutor"``.
ENTRY_POINT_GROUP = plugins.EXECUTOR_GROUP


class _Executors(Mapping[str, type[Executor]]):
    """Executor classes by name: the built-ins, then the entry points of :data:`ENTRY_POINT_GROUP`
    (a built-in name wins). Entries are ``"module:Class"`` strings (or entry points) imported on first
    use, so neither the core nor the local executor imports ray or submitit, and asking which names
    exist imports no executor at all. A class that does not load, or breaks the :class:`Executor`
    contract, is a one-line ``WorkspaceError`` when used."""

    def __init__(self, builtin: dict[str, type[Executor] | str]) -> None:
        self._builtin = builtin
        self._entries: dict[str, type[Executor] | str | metadata.EntryPoint] | None = None
        self._broken: dict[str, WorkspaceError] = {}

    def _all(self) -> dict[str, type[Executor] | str | metadata.EntryPoint]:
        if self._entries is None:
            entries: dict[str, type[Executor] | str | metadata.EntryPoint] = dict(self._builtin)
            for name, ep in plugins.entry_points(ENTRY_POINT_GROUP).items():
                entries.setdefault(name, ep)
            self._entries = entries
        return self._entries

    def refresh(self) -> None:
        """Read the installed entry points again (after installing a plugin in this process; tests)."""
        self._entries = None
        self._broken = {}

    def __getitem__(self, name: str) -> type[Executor]:
        entries = self._all()
        entry = entries[name]
        if isinstance(entry, type):
            return entry
        if name in self._broken:  # asked again (a runs table row): no second import
            raise self._broken[name]
        try:
            cls = self._load(name, entry)
        except WorkspaceError as e:
            self._broken[name] = e
            raise
        entries[name] = cls
        return cls

    @staticmethod
    def _load(name: str, entry: str | metadata.EntryPoint) -> type[Executor]:
        where = entry if isinstance(entry, str) else entry.value
        try:
            if isinstance(entry, str):
                module, _, attr = entry.partition(":")
                cls = getattr(importlib.import_module(module), attr)
            else:
                cls = entry.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin: one line, where it came from
            raise WorkspaceError(f"executor {name!r} ({where}) does not load: {type(e).__name__}: {e}") from e
        if not (isinstance(cls, type) and issubclass(cls, Executor)):
            raise WorkspaceError(f"executor {name!r} ({where}) is not a tltui.runner.executor.Executor subclass")
        if getattr(cls, "name", None) != name:
            raise WorkspaceError(f"executor {name!r} ({where}) is named {getattr(cls, 'name', None)!r}, not {name!r}")
        if not isinstance(getattr(cls, "places_devices", None), bool):
            raise WorkspaceError(
                f"executor {name!r} ({where}) does not say whether it places its own devices "
                "(places_devices = True for a cluster, False for workers on this machine)"
            )
        return cls

    def places_devices(self, name: str) -> bool:
        """:attr:`Executor.places_devices` of the executor called ``name``, for a caller that holds only a
        run's executor name (the app's runs table, ``queue ls``, the runner's slot count). A name that is not
        registered here, or whose class does not load, counts as placing its own: the runner starts no run
        of an executor it cannot load, so none holds this machine's slots, and where it ran is the better
        thing to show."""
        try:
            return self[name].places_devices
        except (KeyError, WorkspaceError):
            return True

    def check_settings(self, settings: Settings) -> None:
        """Validate every executor plugin's ``[NAME]`` table in ``settings`` with the executor's
        :attr:`Executor.settings_model`: one ``PresetError`` with every problem, each naming the file
        and line (a table whose executor has no settings, or does not load, is one too). Tltui's own
        tables, ``[ray]`` and ``[slurm]`` among them, were checked by ``Settings.load``."""
        issues = []
        for name in settings.executor_tables:
            try:
                model = self[name].settings_model
            except KeyError:  # installed after this registry read the entry points
                issues += settings.error(name, f"executor {name!r} is not registered in this process").issues
                continue
            except WorkspaceError as e:
                issues += settings.error(name, str(e)).issues
                continue
            if model is None:
                issues += settings.error(name, f"the {name!r} executor has no settings").issues
                continue
            try:
                settings.table(name, model)
            except PresetError as e:
                issues += e.issues
        if issues:
            raise PresetError(issues)

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


#: The one list of executors: ``[executor] default``, ``tltui queue add --executor`` and the runner read it.
EXECUTORS = _Executors(
    {
        LocalExecutor.name: LocalExecutor,
        "ray": "tltui.runner.executors.ray:RayExecutor",
        "slurm": "tltui.runner.executors.slurm:SlurmExecutor",
    }
)


def capacity_warnings(ws: Workspace, executor: str, gpus: Iterable[int | None]) -> list[str]:
    """:meth:`Executor.capacity_warnings` of a cluster executor for each GPU count its runs ask (a sweep may ask
    several), without duplicates; ``[]`` for an executor that does not place its own devices or does not load."""
    if not EXECUTORS.places_devices(executor):
        return []
    try:
        ex = EXECUTORS[executor](ws)
    except Exception:  # noqa: BLE001 - a broken [NAME] table or plugin fails its runs with the reason; not here
        return []
    out: list[str] = []
    for n in dict.fromkeys(gpus):
        for w in ex.capacity_warnings(n):
            if w not in out:
                out.append(w)
    return out


def signal_worker(rec: RunRecord, sig: int = signal.SIGTERM) -> bool:
    """Signal a run's worker if it is still the process the registry names. Returns whether it was."""
    if not supervisor.is_alive(rec.pid, rec.pid_start):
        return False
    assert rec.pid is not None
    _signal_group(rec.pid, sig)
    return True
