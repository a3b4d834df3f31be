"""Workspace settings: ``WORKSPACE/settings.toml``, ``WORKSPACE/keymap.toml`` and every ``TLTUI_*``
environment variable tltui reads.

``settings.toml`` has one table per part of tltui, each a pydantic model that refuses unknown keys
(:class:`RunnerSettings` ``[runner]``, :class:`ExecutorSettings` ``[executor]``,
:class:`RaySettings` ``[ray]``, :class:`SlurmSettings` ``[slurm]``, :class:`CacheSettings`
``[cache]``, :class:`UiSettings` ``[ui]``, :class:`NotifySettings` ``[notify]``), gathered in :class:`Settings`. :meth:`Settings.load`
reads the file (a missing file: every default) and applies the environment overrides declared on
the fields (``json_schema_extra={"env": ...}``; the environment wins). Every problem is one
:class:`~tltui.core.errors.PresetIssue` naming the file, line and ``table.key``, or the variable::

    /home/me/.local/share/tltui/settings.toml:3: runner.tick: Input should be greater than 0 (got 0)
    TLTUI_RUNNER_CPU_SLOTS: runner.cpu_slots: Input should be a valid integer, unable to parse ... (got 'two')

and all of them are raised together as one :class:`~tltui.core.errors.PresetError` (a
:class:`~tltui.core.errors.TltuiError`: the CLI prints its lines once). ``strict=False`` never
raises: a bad key or variable keeps its default and its issue is kept in :attr:`Settings.issues`
(the queue runner logs them; a long-lived process must not die of a typo made while it runs), and
:meth:`Settings.check` raises those of the tables a caller needs (a Ray job needs ``[ray]``, not
``[ui]``). :func:`load_keymap` reads ``keymap.toml`` with the same errors.

An executor installed from another package (entry-point group
:data:`tltui.core.plugins.EXECUTOR_GROUP`) may have a ``[NAME]`` table of its own: :meth:`Settings.load`
accepts a table named after an installed executor and keeps it as read (the names come from the
packages' metadata: the core never imports the runner or a plugin), and the executor validates it
with its ``settings_model`` through :meth:`Settings.table`, with the same file:line errors. Every
executor gets its table that way, ``[ray]`` and ``[slurm]`` too (those two are tables of
:class:`Settings`, validated by :meth:`Settings.load` like the others).

Environment variables (an empty value counts as unset):

Settings overrides, applied by :meth:`Settings.load`:

- ``TLTUI_RUNNER_IDLE_TIMEOUT``, ``TLTUI_RUNNER_CANCEL_GRACE``, ``TLTUI_RUNNER_MAX_RUNS_PER_GPU``,
  ``TLTUI_RUNNER_CPU_SLOTS``, ``TLTUI_RUNNER_GPU_BUSY_UTIL``, ``TLTUI_RUNNER_GPU_BUSY_MEMORY``,
  ``TLTUI_RUNNER_TICK``: the ``[runner]`` key of the same name (the tests shorten
  ``TLTUI_RUNNER_IDLE_TIMEOUT`` and ``TLTUI_RUNNER_CANCEL_GRACE``).
- ``TLTUI_EXECUTOR``: ``[executor] default``, the executor ``queue add`` uses without ``--executor``.
- ``TLTUI_RAY_ADDRESS``: ``[ray] address``, the Ray cluster's job server.
- ``TLTUI_SLURM_CLUSTER``: ``[slurm] cluster`` (``local``: submitit's local stand-in, for tests).
- ``TLTUI_IMAGES``: ``[ui] images``, how the app draws images.

Read where they are used:

- ``TLTUI_HOME``: the workspace folder when ``--workspace`` is not given
  (:func:`tltui.core.workspace.default_home`).
- ``TLTUI_WORKER_CMD``: the worker's command line as a JSON list instead of
  ``python -m tltui.worker`` (:mod:`tltui.runner.supervisor`); the tests point it at
  ``tests/fake_worker.py``.
- ``TLTUI_RELAY_FILES``: internal: the small files of a run folder, which the Ray executor ships to
  a node without the workspace for :mod:`tltui.runner.executors.ray_relay`.
- ``TLTUI_RELAY_SHIPPED``: internal: ``1`` when a run's files were too large for ``TLTUI_RELAY_FILES``
  and came as the Ray job's working directory (:mod:`tltui.runner.executors.ray_relay`).
- ``TLTUI_RELAY_SCRATCH``: the node-local folder where ``ray_relay`` runs such a run (default
  ``$TMPDIR/tltui-relay-UID``).
- ``TLTUI_FAKE_GPUS``: test-only: a fake GPU inventory, a count or a JSON list (:mod:`tltui.core.gpus`).
- ``TLTUI_FAULT``: test-only: a fault the training worker injects (:mod:`tltui.worker.faults`,
  ``docs/reliability.md``).
- ``TLTUI_TEST_BACKBONES``: test-only: ``1`` enables the test backbones such as ``tiny_cnn``
  (:mod:`tltui.core.catalog`).
- ``TLTUI_TEST_CPU_DEVICES``: test-only: ``N`` splits the CPU into N logical devices the training
  worker uses as ``train.gpus`` GPUs (:mod:`tltui.worker.faults`, ``docs/guide/gpu.md``).

Read by the test suite only: ``TLTUI_FAKE_EPOCH_SECONDS``, ``TLTUI_FAKE_STEPS``,
``TLTUI_FAKE_CRASH_AT``, ``TLTUI_FAKE_EXIT_CODE``, ``TLTUI_FAKE_NAN_AT``, ``TLTUI_FAKE_IGNORE_TERM``,
``TLTUI_FAKE_STAGE_SECONDS``, ``TLTUI_FAKE_SCORE``, ``TLTUI_FAKE_HOLD_ON_RESUME``
(the scripted worker, ``tests/fake_worker.py``), ``TLTUI_FAKE_EXPORT`` and ``TLTUI_FAKE_EXPORT_ARGV`` (the
scripted export worker, ``tests/fake_export.py``) and ``TLTUI_REQUIRE_SLURM`` (``1``: a one-node Slurm
cluster that does not start fails the suite instead of skipping; set by ``.ci/run``).

``tests/core/test_settings.py`` fails when the code reads a ``TLTUI_*`` name this list leaves out.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from tltui.core import plugins, validation
from tltui.core.errors import PresetError, PresetIssue
from tltui.core.tomlpos import locate as _locate
from tltui.core.validation import shown as _shown
from tltui.core.workspace import SETTINGS_FILE

KEYMAP_FILE = "keymap.toml"
MAX_BYTES = 1_000_000
DEFAULT_RAY_ADDRESS = "http://127.0.0.1:8265"
M = TypeVar("M", bound=BaseModel)


def _env(name: str) -> dict[str, Any]:
    return {"env": name}


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @classmethod
    def env_overrides(cls) -> dict[str, str]:
        """``{key: the environment variable that overrides it}``."""
        out: dict[str, str] = {}
        for name, f in cls.model_fields.items():
            extra = f.json_schema_extra
            if isinstance(extra, dict) and isinstance(extra.get("env"), str):
                out[name] = str(extra["env"])
        return out


class RunnerSettings(_Table):
    """``[runner]``: the detached queue runner's slots and timings."""

    idle_timeout: float = Field(
        60.0,
        ge=0,
        description="seconds with nothing queued or running before the runner exits",
        json_schema_extra=_env("TLTUI_RUNNER_IDLE_TIMEOUT"),
    )
    cancel_grace: float = Field(
        30.0,
        ge=0,
        description="seconds from SIGTERM to SIGKILL when cancelling",
        json_schema_extra=_env("TLTUI_RUNNER_CANCEL_GRACE"),
    )
    max_runs_per_gpu: int = Field(
        1, ge=1, description="runs of ours sharing one GPU", json_schema_extra=_env("TLTUI_RUNNER_MAX_RUNS_PER_GPU")
    )
    cpu_slots: int = Field(
        1, ge=0, description="concurrent CPU-only runs", json_schema_extra=_env("TLTUI_RUNNER_CPU_SLOTS")
    )
    gpu_busy_util: float = Field(
        50.0,
        ge=0,
        description="percent: a GPU none of our runs use, busier than this, is skipped",
        json_schema_extra=_env("TLTUI_RUNNER_GPU_BUSY_UTIL"),
    )
    gpu_busy_memory: float = Field(
        0.5,
        ge=0,
        description="fraction of its memory used by others above which such a GPU is skipped",
        json_schema_extra=_env("TLTUI_RUNNER_GPU_BUSY_MEMORY"),
    )
    tick: float = Field(
        0.2,
        gt=0,
        description="longest sleep between the runner's checks, seconds",
        json_schema_extra=_env("TLTUI_RUNNER_TICK"),
    )


class ExecutorSettings(_Table):
    """``[executor]``: where ``queue add`` sends runs without ``--executor``. Any name here: the
    runner's package knows which executors exist and checks it
    (``tltui.runner.executors.default_executor``, with :meth:`Settings.error`)."""

    default: str = Field(
        "local",
        min_length=1,
        description='where `queue add` sends runs without `--executor`: `"local"`, `"ray"`, `"slurm"` or an '
        "installed executor's name",
        json_schema_extra=_env("TLTUI_EXECUTOR"),
    )


class RaySettings(_Table):
    """``[ray]``: the Ray cluster (``tltui.runner.executors.ray``)."""

    address: str = Field(
        DEFAULT_RAY_ADDRESS,
        min_length=1,
        description="the cluster's job server (dashboard)",
        json_schema_extra=_env("TLTUI_RAY_ADDRESS"),
    )
    num_cpus: float = Field(1.0, ge=0, description="CPUs per run (GPUs: the preset's `train.gpus`)")
    default_gpus: int = Field(0, ge=0, description="GPUs when a preset leaves train.gpus unset")
    shared_fs: Literal["auto"] | bool = Field(
        "auto", description='`true` / `false` / `"auto"`: do the nodes see the workspace at the same path?'
    )
    python: str | None = Field(
        None, min_length=1, description="the interpreter with tltui on the nodes (unset: this one)"
    )
    env_vars: dict[str, str] = Field(
        default_factory=dict, description="environment variables of the jobs (numbers and booleans become text)"
    )
    poll_interval: float = Field(0.5, gt=0, description="seconds between job status checks")
    lost_after: float = Field(
        120.0, ge=0, description="seconds of an unreachable cluster before its runs count as interrupted"
    )
    stop_wait: int = Field(30, ge=0, description="seconds from SIGTERM to SIGKILL on cancel")
    submit_retry: float = Field(15.0, ge=0, description="seconds a submission is retried while the cluster refuses it")

    @field_validator("shared_fs", mode="plain")
    @classmethod
    def _shared_fs(cls, v: object) -> Literal["auto"] | bool:
        if v == "auto" or isinstance(v, bool):
            return v  # type: ignore[return-value]
        raise ValueError(f'expected "auto", true or false, got {v!r}')

    @field_validator("env_vars", mode="before")
    @classmethod
    def _env_vars(cls, v: object) -> object:
        """Numbers and booleans become their text, as the job's environment holds only strings."""
        if isinstance(v, dict):
            return {k: str(x) if isinstance(x, int | float) else x for k, x in v.items()}
        return v


class SlurmSettings(_Table):
    """``[slurm]``: Slurm jobs through submitit (``tltui.runner.executors.slurm``)."""

    cluster: Literal["slurm", "local", "debug"] = Field(
        "slurm",
        description='`"slurm"`: the scheduler; `"local"` / `"debug"`: submitit\'s stand-ins without one (tests)',
        json_schema_extra=_env("TLTUI_SLURM_CLUSTER"),
    )
    partition: str | None = Field(None, description="the `#SBATCH` option of that name")
    account: str | None = Field(None, description="the `#SBATCH` option of that name")
    qos: str | None = Field(None, description="the `#SBATCH` option of that name")
    constraint: str | None = Field(None, description="the `#SBATCH` option of that name")
    time_limit: int = Field(24 * 60, ge=1, description="minutes")
    gpus: int = Field(0, ge=0, description="GPUs when a preset leaves train.gpus unset")
    cpus_per_task: int = Field(4, ge=1, description="CPUs per job")
    mem_gb: float | None = Field(None, gt=0, description="memory per job, GB")
    additional: dict[str, Any] = Field(
        default_factory=dict, description="any extra `#SBATCH` option, e.g. `{ exclusive = true }`"
    )
    setup: list[str] = Field(
        default_factory=list, description='shell lines run before the worker, e.g. `["module load cuda/12"]`'
    )
    python: str | None = Field(
        None, min_length=1, description="the interpreter with tltui on the nodes (unset: this one)"
    )
    max_requeues: int = Field(3, ge=0, description="time limits that requeue the run with --resume before it fails")
    signal_delay: int = Field(90, ge=0, description="seconds before the time limit that Slurm signals the job (USR2)")
    poll_interval: float = Field(30.0, gt=0, description="seconds between scheduler status checks")
    scheduler_grace: float = Field(
        600.0, ge=0, description="seconds of no scheduler answer and no worker event before runs count as interrupted"
    )


class CacheSettings(_Table):
    """``[cache]``: the decoded-image cache (``tltui.core.decoded_store``)."""

    decoded_gb: float = Field(
        20.0,
        ge=0,
        description="size of the decoded-image cache, GB; the oldest-used entries go first (never one a running run reads)",
    )
    in_memory_fraction: float = Field(
        0.1,
        ge=0,
        le=1,
        description="a run copies its decoded images into its own memory when they take at most this fraction of "
        "the memory available as it loads them (the OS's, or its cgroup's if less); otherwise it reads them "
        "memory-mapped from the decoded cache, as fast per epoch and shared by the runs on one folder. 0: always "
        "mapped",
    )


NotifyEvent = Literal["run_failed", "sweep_done", "queue_empty"]


def _every_event() -> list[NotifyEvent]:
    return ["run_failed", "sweep_done", "queue_empty"]


class NotifySettings(_Table):
    """``[notify]``: what the queue runner sends when a run fails, a sweep ends and the queue empties
    (``tltui.runner.notify``): a command, a webhook, and the bell in an open app."""

    command: list[str] = Field(
        default_factory=list,
        description='a command and its arguments, run without a shell, e.g. `["notify-send", "tltui"]`: the '
        "message is its last argument, the digest (JSON) its standard input",
    )
    webhook: str | None = Field(
        None,
        description="an `http://` or `https://` URL the notification is POSTed to as JSON (`text`: the message, "
        "as Slack and Mattermost incoming webhooks read it; `event`, `digest`)",
    )
    on: list[NotifyEvent] = Field(
        default_factory=_every_event,
        description="the events that notify: a run failed, every run of a sweep ended, nothing is queued or "
        "running any more",
    )
    timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="seconds a command or a webhook may take; it runs beside the runner, which never waits for it",
    )
    bell: bool = Field(True, description="an open app rings the terminal bell and shows the message")

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"expected an http:// or https:// URL, got {v!r}")
        return v


class UiSettings(_Table):
    """``[ui]``: the app."""

    images: Literal["auto", "halfblock", "kitty", "sixel"] = Field(
        "auto",
        description='how images are drawn: `"auto"` (ask the terminal), `"halfblock"`, `"kitty"` or `"sixel"`',
        json_schema_extra=_env("TLTUI_IMAGES"),
    )


class Settings(_Table):
    """The whole ``settings.toml``; read it with :meth:`load`."""

    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    ray: RaySettings = Field(default_factory=RaySettings)
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)

    TABLES: ClassVar[dict[str, type[_Table]]] = {
        "runner": RunnerSettings,
        "executor": ExecutorSettings,
        "ray": RaySettings,
        "slurm": SlurmSettings,
        "cache": CacheSettings,
        "ui": UiSettings,
        "notify": NotifySettings,
    }

    _file: Path | None = PrivateAttr(None)
    _text: str | None = PrivateAttr(None)
    _issues: tuple[PresetIssue, ...] = PrivateAttr(())
    _from_env: dict[str, str] = PrivateAttr(default_factory=dict)
    _executor_tables: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)

    @classmethod
    def load(cls, where: Any, env: Mapping[str, str] | None = None, *, strict: bool = True) -> Settings:
        """The settings of a workspace (a :class:`~tltui.core.workspace.Workspace` or its folder) and
        the environment (default ``os.environ``). ``strict``: any problem raises one
        :class:`PresetError` listing them all; else each bad value keeps its default and the
        problems are in :attr:`issues`."""
        path = _root(where) / SETTINGS_FILE
        env = os.environ if env is None else env
        file = str(path)
        issues: list[PresetIssue] = []
        text, data = _read_toml(path, issues)
        executor_tables = _executor_tables(data, list(cls.TABLES), file, text, issues)
        tables: dict[str, _Table] = {}
        from_env: dict[str, str] = {}
        for name, model in cls.TABLES.items():
            raw = data.get(name, {})
            if not isinstance(raw, dict):
                issues.append(
                    PresetIssue(file, _locate(text, name), name, f"expected a table [{name}], got {_shown(raw)}")
                )
                raw = {}
            table, errors = _validate(model, raw, strict=True)
            issues += _issues(errors, model, name, file=file, text=text)
            variables = model.env_overrides()
            overrides = {key: env[var] for key, var in variables.items() if env.get(var)}
            if overrides:  # strings, parsed as pydantic's lax mode does ("5" is a number there)
                _, errors = _validate(model, {**table.model_dump(), **overrides}, strict=False)
                issues += _issues(errors, model, name, variables=variables)
                bad = {str(e["loc"][0]) for e in errors if e["loc"]}
                good = {key: value for key, value in overrides.items() if key not in bad}
                table, _ = _validate(model, {**table.model_dump(), **good}, strict=False)  # a bad one: the file's
                from_env.update({f"{name}.{key}": variables[key] for key in good})
            tables[name] = table
        issues.sort(key=lambda i: (i.file != file, i.line or 0))  # the file's in line order, then the variables
        settings = cls.model_validate(tables)
        settings._file, settings._text, settings._issues, settings._from_env = path, text, tuple(issues), from_env
        settings._executor_tables = executor_tables
        if strict and issues:
            raise PresetError(issues)
        return settings

    @property
    def file(self) -> Path | None:
        """The ``settings.toml`` these were read from (``None``: not read from a file)."""
        return self._file

    @property
    def issues(self) -> list[PresetIssue]:
        """What :meth:`load` with ``strict=False`` ignored (each bad value kept its default)."""
        return list(self._issues)

    def check(self, *tables: str) -> Settings:
        """Raise the issues of these tables (and of the file as a whole: unreadable, not TOML) as
        one :class:`PresetError`; ``self`` when there are none."""
        mine = [i for i in self._issues if i.field is None or i.field.split(".")[0] in tables]
        if mine:
            raise PresetError(mine)
        return self

    @property
    def executor_tables(self) -> list[str]:
        """The ``[NAME]`` tables of installed executor plugins found in the file, as yet unvalidated
        (:meth:`table` validates one)."""
        return list(self._executor_tables)

    def table(self, name: str, model: type[M]) -> M:
        """The ``[name]`` table validated by ``model`` (an executor's ``settings_model``): one of
        :attr:`TABLES` as :meth:`load` validated it, else a plugin executor's table as read (missing:
        ``model``'s defaults). Raises one :class:`PresetError` with every problem of the table and of
        the file as a whole, each naming the file and line like the rest (an unknown key is one,
        whatever ``model`` says about extra keys)."""
        self.check(name)
        if name in self.TABLES:
            own = getattr(self, name)
            if not isinstance(own, model):
                raise self.error(name, f"[{name}] is tltui's own table, not a {model.__name__}")
            return own
        raw = self._executor_tables.get(name, {})
        errors: list[dict[str, Any]] = [
            {"type": "extra_forbidden", "loc": (key,), "msg": "", "input": v}
            for key, v in raw.items()
            if key not in model.model_fields
        ]
        table = None
        try:
            table = model.model_validate({k: v for k, v in raw.items() if k in model.model_fields}, strict=True)
        except ValidationError as e:
            errors += [dict(err) for err in e.errors(include_url=False)]
        if errors or table is None:
            file = str(self._file) if self._file is not None else SETTINGS_FILE
            issues = _issues(errors, model, name, file=file, text=self._text)
            raise PresetError(sorted(issues, key=lambda i: i.line or 0))
        return table

    def error(self, field: str, message: str) -> PresetError:
        """A problem with a value found beyond the schema (``executor.default`` names no executor
        the runner knows), located like the schema's: the variable it came from, else its line."""
        var = self._from_env.get(field)
        if var is not None:
            return PresetError([PresetIssue(var, None, field, message)])
        file = str(self._file) if self._file is not None else SETTINGS_FILE
        return PresetError([PresetIssue(file, _locate(self._text, field), field, message)])


def load_keymap(where: Any) -> dict[str, str]:
    """``keymap.toml`` of a workspace (a :class:`~tltui.core.workspace.Workspace` or its folder):
    ``"binding.id" = "key"`` lines (the ids the help screen shows; a bare dotted key or a
    ``[runs]`` table reads the same), ``{}`` when the file is missing. Raises one
    :class:`PresetError` naming the file, line and binding of every bad entry."""
    path = _root(where) / KEYMAP_FILE
    file = str(path)
    issues: list[PresetIssue] = []
    text, data = _read_toml(path, issues)
    out: dict[str, str] = {}
    for binding, value in _flatten(data):
        if isinstance(value, str) and value.strip() and not any(c.isspace() for c in value):
            out[binding] = value
        else:
            issues.append(
                PresetIssue(
                    file,
                    _locate(text, binding),
                    binding,
                    f'expected the key(s) to bind, like "k" or "ctrl+k,f2" (got {_shown(value)})',
                )
            )
    if issues:
        raise PresetError(issues)
    return out


# ---------------------------------------------------------------------------- reading and errors


def _root(where: Any) -> Path:
    """A workspace folder, given it or a ``Workspace`` (a path's own ``.root`` is ``/``)."""
    return Path(where) if isinstance(where, str | os.PathLike) else Path(where.root)


def _read_toml(path: Path, issues: list[PresetIssue]) -> tuple[str | None, dict[str, Any]]:
    """The text and the data of a TOML file (``(None, {})``: missing); a problem with the file as a
    whole is appended to ``issues`` (and reads as ``{}``)."""
    file = str(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None, {}
    except IsADirectoryError:
        issues.append(PresetIssue(file, None, None, "is a directory, expected a TOML file"))
        return None, {}
    except OSError as e:
        issues.append(PresetIssue(file, None, None, f"cannot read it ({e.strerror or e})"))
        return None, {}
    if len(blob) > MAX_BYTES:
        issues.append(PresetIssue(file, None, None, f"file is larger than {MAX_BYTES} bytes"))
        return None, {}
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as e:
        issues.append(PresetIssue(file, blob[: e.start].count(b"\n") + 1, None, "not UTF-8 text"))
        return None, {}
    try:
        return text, tomllib.loads(text)
    except RecursionError:
        issues.append(PresetIssue(file, None, None, "TOML syntax error: nested too deeply"))
        return text, {}
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line = int(m.group(1)) if m else (text.count("\n") + 1 if "end of document" in str(e) else None)
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e)) or "invalid TOML"
        issues.append(PresetIssue(file, line, None, f"TOML syntax error: {msg}"))
        return text, {}


def _executor_tables(
    data: Mapping[str, Any], known: list[str], file: str, text: str | None, issues: list[PresetIssue]
) -> dict[str, dict[str, Any]]:
    """The tables of ``data`` beyond ``known`` that are an installed executor plugin's, as read (its
    executor validates it: :meth:`Settings.table`); any other name is appended to ``issues``."""
    others = [name for name in data if name not in known]
    executors = list(plugins.entry_points(plugins.EXECUTOR_GROUP)) if others else []  # names: nothing imported
    found: dict[str, dict[str, Any]] = {}
    for name in others:
        value = data[name]
        if name in executors and isinstance(value, dict):
            found[name] = value
        elif name in executors:
            issues.append(
                PresetIssue(file, _locate(text, name), name, f"expected a table [{name}], got {_shown(value)}")
            )
        else:
            what = "table" if isinstance(value, dict) else "key"
            hint = _unknown(what, name, [*known, *executors], "tables")
            issues.append(PresetIssue(file, _locate(text, name), name, hint))
    return found


def _validate(model: type[_Table], raw: Mapping[str, Any], *, strict: bool) -> tuple[_Table, list[dict[str, Any]]]:
    """The table, each key that does not validate left at its default, and the errors of those."""
    data = dict(raw)
    errors: list[dict[str, Any]] = []
    for _ in range(len(data) + 1):
        try:
            return model.model_validate(data, strict=strict), errors
        except ValidationError as e:
            found: list[dict[str, Any]] = [dict(err) for err in e.errors(include_url=False)]
            errors += found
            bad = {str(err["loc"][0]) for err in found if err["loc"]} & data.keys()
            if not bad:
                break
            for key in bad:
                del data[key]
    return model(), errors


def _issues(
    errors: list[dict[str, Any]],
    model: type[BaseModel],
    table: str,
    *,
    file: str = SETTINGS_FILE,
    text: str | None = None,
    variables: Mapping[str, str] | None = None,
) -> list[PresetIssue]:
    """Pydantic errors of one table as issues, one per field: at their line of ``file``, or, for
    values from the environment (``variables``: key -> variable), naming the variable."""
    env = variables is not None
    return validation.issues(
        errors,
        file="environment" if env else file,
        text=None if env else text,
        field=lambda loc: table + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc),
        unknown=lambda loc: _unknown("key", str(loc[0]) if loc else "", list(model.model_fields), "keys"),
        origins={f"{table}.{key}": var for key, var in (variables or {}).items()},
    )


def _unknown(what: str, name: str, known: list[str], plural: str) -> str:
    return validation.unknown(name, known, what, plural)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, f"{name}.")
        else:
            out.append((name, v))
    return out
