"""The settings model: settings.toml and keymap.toml, their errors (file:line: table.key: message),
the environment overrides, and the list of every TLTUI_* variable the code reads."""

from __future__ import annotations

import ast
import re
from importlib import metadata
from pathlib import Path

import pytest
import tomli_w
from pydantic import BaseModel, ConfigDict, Field

import tltui
from tltui.core import decoded_store, plugins, settings
from tltui.core.errors import PresetError
from tltui.core.settings import RaySettings, RunnerSettings, Settings, load_keymap
from tltui.core.workspace import Workspace

REPO = Path(tltui.__file__).resolve().parents[1]


def write(ws: Workspace, text: str) -> Path:
    ws.settings_file.write_text(text)
    return ws.settings_file


def lines_of(e: pytest.ExceptionInfo[PresetError]) -> list[str]:
    return e.value.lines()


def test_defaults_when_the_file_is_missing(ws: Workspace) -> None:
    s = Settings.load(ws, {})
    assert s == Settings.load(ws.root, {}) and s.issues == []
    assert s.runner == RunnerSettings() and s.runner.idle_timeout == 60.0 and s.runner.tick == 0.2
    assert (s.executor.default, s.ray.address, s.slurm.cluster, s.ui.images) == (
        "local",
        "http://127.0.0.1:8265",
        "slurm",
        "auto",
    )
    assert s.cache.decoded_gb == decoded_store.DEFAULT_LIMIT_GB
    assert s.slurm.time_limit == 24 * 60 and s.ray.shared_fs == "auto" and s.ray.env_vars == {}


def test_unknown_key_and_table_name_their_line(ws: Workspace) -> None:
    path = write(ws, '# mine\n[runner]\nidle_timeout = 5\ncpu_slot = 2\n\n[tui]\ntheme = "dark"\n')
    with pytest.raises(PresetError) as e:
        Settings.load(ws, {})
    assert lines_of(e) == [
        f"{path}:4: runner.cpu_slot: unknown key; did you mean 'cpu_slots'? (known keys: idle_timeout, cancel_grace, "
        "max_runs_per_gpu, cpu_slots, gpu_busy_util, gpu_busy_memory, tick)",
        f"{path}:6: tui: unknown table; did you mean 'ui'? (known tables: runner, executor, ray, slurm, cache, ui, notify)",
    ]


def test_bad_types_and_ranges(ws: Workspace) -> None:
    path = write(
        ws,
        "\n".join(
            [
                "[runner]",
                "tick = 0",
                "cpu_slots = true",
                "idle_timeout = '5'",
                "[ray]",
                'shared_fs = "maybe"',
                "env_vars = { A = 1, B = [2] }",
                "[slurm]",
                'cluster = "pbs"',
                'setup = ["module load cuda", 3]',
                "[slurm.additional]",
                "exclusive = true",
            ]
        )
        + "\n",
    )
    with pytest.raises(PresetError) as e:
        Settings.load(ws, {})
    assert lines_of(e) == [
        f"{path}:2: runner.tick: Input should be greater than 0 (got 0)",
        f"{path}:3: runner.cpu_slots: Input should be a valid integer (got True)",
        f"{path}:4: runner.idle_timeout: Input should be a valid number (got '5')",  # TOML has numbers
        f"{path}:6: ray.shared_fs: expected \"auto\", true or false, got 'maybe'",
        f"{path}:7: ray.env_vars.B: Input should be a valid string (got [2])",
        f"{path}:9: slurm.cluster: Input should be 'slurm', 'local' or 'debug' (got 'pbs')",
        f"{path}:10: slurm.setup[1]: Input should be a valid string (got 3)",
    ]


def test_a_table_that_is_not_a_table_and_toml_errors(ws: Workspace) -> None:
    path = write(ws, "runner = 5\n")
    with pytest.raises(PresetError) as e:
        Settings.load(ws, {})
    assert lines_of(e) == [f"{path}:1: runner: expected a table [runner], got 5"]
    write(ws, "[runner]\ntick = \n")
    with pytest.raises(PresetError) as e:
        Settings.load(ws, {})
    assert len(lines_of(e)) == 1 and lines_of(e)[0].startswith(f"{path}:2: TOML syntax error: ")
    ws.settings_file.write_bytes(b"[ui]\nimages = '\xff'\n")
    with pytest.raises(PresetError, match=r"settings.toml:2: not UTF-8 text"):
        Settings.load(ws, {})


def test_the_environment_wins_and_a_bad_value_names_the_variable(ws: Workspace) -> None:
    write(ws, '[runner]\ncpu_slots = 2\ntick = 0.5\n[executor]\ndefault = "slurm"\n[ui]\nimages = "sixel"\n')
    env = {
        "TLTUI_RUNNER_CPU_SLOTS": "3",
        "TLTUI_RUNNER_IDLE_TIMEOUT": "1.5",
        "TLTUI_EXECUTOR": "ray",
        "TLTUI_RAY_ADDRESS": "http://head:8265",
        "TLTUI_SLURM_CLUSTER": "local",
        "TLTUI_IMAGES": "kitty",
        "TLTUI_RUNNER_TICK": "",
    }  # empty: unset
    s = Settings.load(ws, env)
    assert (s.runner.cpu_slots, s.runner.idle_timeout, s.runner.tick) == (3, 1.5, 0.5)
    assert isinstance(s.runner.cpu_slots, int)
    assert (s.executor.default, s.ray.address, s.slurm.cluster, s.ui.images) == (
        "ray",
        "http://head:8265",
        "local",
        "kitty",
    )
    bad = {"TLTUI_RUNNER_CPU_SLOTS": "two", "TLTUI_RUNNER_CANCEL_GRACE": "-1", "TLTUI_IMAGES": "ascii"}
    with pytest.raises(PresetError) as e:
        Settings.load(ws, bad)
    assert lines_of(e) == [
        "TLTUI_RUNNER_CANCEL_GRACE: runner.cancel_grace: Input should be greater than or equal to 0 (got '-1')",
        "TLTUI_RUNNER_CPU_SLOTS: runner.cpu_slots: Input should be a valid integer, unable to parse string as an "
        "integer (got 'two')",
        "TLTUI_IMAGES: ui.images: Input should be 'auto', 'halfblock', 'kitty' or 'sixel' (got 'ascii')",
    ]
    lenient = Settings.load(ws, bad, strict=False)  # a bad variable: the file's value stays
    assert (lenient.runner.cpu_slots, lenient.runner.cancel_grace, lenient.ui.images) == (2, 30.0, "sixel")
    assert [i.file for i in lenient.issues] == ["TLTUI_RUNNER_CANCEL_GRACE", "TLTUI_RUNNER_CPU_SLOTS", "TLTUI_IMAGES"]


def test_every_declared_override_is_a_tltui_variable() -> None:
    declared = {var for model in Settings.TABLES.values() for var in model.env_overrides().values()}
    assert declared == {
        "TLTUI_RUNNER_IDLE_TIMEOUT",
        "TLTUI_RUNNER_CANCEL_GRACE",
        "TLTUI_RUNNER_MAX_RUNS_PER_GPU",
        "TLTUI_RUNNER_CPU_SLOTS",
        "TLTUI_RUNNER_GPU_BUSY_UTIL",
        "TLTUI_RUNNER_GPU_BUSY_MEMORY",
        "TLTUI_RUNNER_TICK",
        "TLTUI_EXECUTOR",
        "TLTUI_RAY_ADDRESS",
        "TLTUI_SLURM_CLUSTER",
        "TLTUI_IMAGES",
    }
    assert all(var == f"TLTUI_RUNNER_{key.upper()}" for key, var in RunnerSettings.env_overrides().items())


def test_lenient_load_keeps_defaults_and_check_raises_one_tables_issues(ws: Workspace) -> None:
    path = write(
        ws,
        '[runner]\ntick = -1\nidle_timeout = 7\n[ray]\nnum_cpus = "x"\naddress = "http://h:1"\n'
        '[ui]\nimages = "ascii"\n',
    )
    s = Settings.load(ws, {}, strict=False)
    assert (s.runner.tick, s.runner.idle_timeout, s.ray.num_cpus, s.ray.address, s.ui.images) == (
        0.2,
        7.0,
        1.0,
        "http://h:1",
        "auto",
    )
    assert [i.field for i in s.issues] == ["runner.tick", "ray.num_cpus", "ui.images"]
    assert s.check("cache", "slurm") is s
    with pytest.raises(PresetError) as e:
        s.check("ray")
    assert lines_of(e) == [f"{path}:5: ray.num_cpus: Input should be a valid number (got 'x')"]
    write(ws, "[ray\n")  # the file as a whole: every table's problem
    with pytest.raises(PresetError, match="TOML syntax error"):
        Settings.load(ws, {}, strict=False).check("cache")


def test_error_beyond_the_schema_names_the_line_or_the_variable(ws: Workspace) -> None:
    path = write(ws, '[executor]\n\ndefault = "kubernetes"\n')
    s = Settings.load(ws, {})
    assert str(s.error("executor.default", "no such executor")) == f"{path}:3: executor.default: no such executor"
    s = Settings.load(ws, {"TLTUI_EXECUTOR": "nomad"})
    assert s.executor.default == "nomad"
    assert str(s.error("executor.default", "x")) == "TLTUI_EXECUTOR: executor.default: x"


class KubeSettings(BaseModel):
    """A plugin executor's table (it does not forbid extra keys: the core refuses them anyway)."""

    model_config = ConfigDict(frozen=True)

    namespace: str = "default"
    replicas: int = Field(1, ge=1)


@pytest.fixture
def kube(monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package declares the executor ``kube`` (its entry point: the core imports nothing)."""
    ep = metadata.EntryPoint("kube", "tltui_kube:KubeExecutor", plugins.EXECUTOR_GROUP)
    real = metadata.entry_points

    def entry_points(**kw: object) -> object:
        return metadata.EntryPoints([ep]) if kw.get("group") == plugins.EXECUTOR_GROUP else real(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(metadata, "entry_points", entry_points)


def test_an_installed_executors_table_is_kept_for_it_and_checked_by_its_model(ws: Workspace, kube: None) -> None:
    path = write(ws, '[runner]\ntick = 0.5\n\n[kube]\nnamespace = "ml"\nreplicas = 0\nnamspace = "x"\n')
    s = Settings.load(ws, {})
    assert s.executor_tables == ["kube"] and s.issues == [] and s.runner.tick == 0.5
    with pytest.raises(PresetError) as e:
        s.table("kube", KubeSettings)
    assert lines_of(e) == [
        f"{path}:6: kube.replicas: Input should be greater than or equal to 1 (got 0)",
        f"{path}:7: kube.namspace: unknown key; did you mean 'namespace'? (known keys: namespace, replicas)",
    ]
    write(ws, '[kube]\nnamespace = "ml"\nreplicas = "2"\n')  # TOML has numbers
    with pytest.raises(PresetError, match=r"settings.toml:3: kube.replicas: Input should be a valid integer"):
        Settings.load(ws, {}).table("kube", KubeSettings)
    write(ws, '[kube]\nnamespace = "ml"\n')
    assert Settings.load(ws, {}).table("kube", KubeSettings) == KubeSettings(namespace="ml")
    write(ws, "[runner]\n")
    assert Settings.load(ws, {}).table("kube", KubeSettings) == KubeSettings()  # no table: the defaults
    write(ws, "kube = 3\n[kub]\n")
    with pytest.raises(PresetError) as e:
        Settings.load(ws, {})
    assert lines_of(e) == [
        f"{path}:1: kube: expected a table [kube], got 3",
        f"{path}:2: kub: unknown table; did you mean 'kube'? (known tables: runner, executor, ray, slurm, cache, ui, notify, "
        "kube)",
    ]


def test_tltuis_own_executor_tables_come_the_same_way(ws: Workspace) -> None:
    path = write(ws, '[ray]\naddress = "http://head:8265"\n[ui]\nimages = "kitty"\n')
    s = Settings.load(ws, {})
    assert s.table("ray", RaySettings) is s.ray and s.ray.address == "http://head:8265"
    with pytest.raises(PresetError, match=rf"^{re.escape(str(path))}:3: ui: \[ui\] is tltui's own table, not a "):
        s.table("ui", RaySettings)
    write(ws, "[ray]\nnum_cpus = -1\n[kube]\n")  # no executor kube installed: an unknown table, as ever
    s = Settings.load(ws, {}, strict=False)
    assert [i.field for i in s.issues] == ["ray.num_cpus", "kube"] and s.executor_tables == []
    with pytest.raises(PresetError, match=r"settings.toml:2: ray.num_cpus: "):
        s.table("ray", RaySettings)


FULL = {
    "runner": {
        "idle_timeout": 5.0,
        "cancel_grace": 3.0,
        "max_runs_per_gpu": 2,
        "cpu_slots": 4,
        "gpu_busy_util": 90.0,
        "gpu_busy_memory": 0.25,
        "tick": 0.1,
    },
    "executor": {"default": "ray"},
    "ray": {
        "address": "http://head:8265",
        "num_cpus": 2.0,
        "default_gpus": 1,
        "shared_fs": False,
        "python": "/opt/venv/bin/python",
        "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"},
        "poll_interval": 0.3,
        "lost_after": 60.0,
        "stop_wait": 10,
        "submit_retry": 5.0,
    },
    "slurm": {
        "cluster": "local",
        "partition": "gpu",
        "account": "lab",
        "qos": "high",
        "constraint": "a100",
        "time_limit": 240,
        "gpus": 1,
        "cpus_per_task": 8,
        "mem_gb": 32.0,
        "additional": {"exclusive": True},
        "setup": ["module load cuda/12"],
        "python": "/opt/venv/bin/python",
        "max_requeues": 1,
        "signal_delay": 50,
        "poll_interval": 10.0,
        "scheduler_grace": 300.0,
    },
    "cache": {"decoded_gb": 2.5, "in_memory_fraction": 0.3},
    "ui": {"images": "halfblock"},
    "notify": {
        "command": ["notify-send", "tltui"],
        "webhook": "https://hooks.example.org/T0/B0/x",
        "on": ["run_failed"],
        "timeout": 5.0,
        "bell": False,
    },
}


def test_every_table_round_trips(ws: Workspace) -> None:
    assert set(FULL) == set(Settings.TABLES)
    for name, model in Settings.TABLES.items():
        assert set(FULL[name]) == set(model.model_fields), f"FULL[{name!r}] must set every key"
    write(ws, tomli_w.dumps(FULL))
    s = Settings.load(ws, {})
    assert s.model_dump() == FULL
    write(ws, tomli_w.dumps(s.model_dump()))
    assert Settings.load(ws, {}) == s
    # what the readers make of it
    assert decoded_store.workspace_cache(ws.root) == (ws.root / "cache" / "decoded", 2.5e9)


def test_env_vars_numbers_become_text(ws: Workspace) -> None:
    write(ws, "[ray]\nenv_vars = { A = 1, B = 0.5, C = true, D = 'x' }\n")
    assert Settings.load(ws, {}).ray.env_vars == {"A": "1", "B": "0.5", "C": "True", "D": "x"}


# ---------------------------------------------------------------------------- keymap


def test_keymap(ws: Workspace) -> None:
    assert load_keymap(ws) == {}
    path = ws.root / "keymap.toml"
    path.write_text('"runs.compare" = "k"\napp.help = "f1,question_mark"\n[run]\nback = "escape"\n')
    assert load_keymap(ws) == {"runs.compare": "k", "app.help": "f1,question_mark", "run.back": "escape"}
    assert load_keymap(ws.root) == load_keymap(ws)


def test_keymap_errors_name_file_line_and_binding(ws: Workspace) -> None:
    path = ws.root / "keymap.toml"
    path.write_text('"runs.compare" = "k"\n"runs.delete" = 3\n[run]\nback = ""\nhelp = "ctrl k"\n')
    with pytest.raises(PresetError) as e:
        load_keymap(ws)
    assert lines_of(e) == [
        f'{path}:2: runs.delete: expected the key(s) to bind, like "k" or "ctrl+k,f2" (got 3)',
        f'{path}:4: run.back: expected the key(s) to bind, like "k" or "ctrl+k,f2" (got \'\')',
        f'{path}:5: run.help: expected the key(s) to bind, like "k" or "ctrl+k,f2" (got \'ctrl k\')',
    ]
    path.write_text('"runs.compare" = \n')
    with pytest.raises(PresetError, match=r"keymap.toml:1: TOML syntax error"):
        load_keymap(ws)


# ---------------------------------------------------------------------------- TLTUI_* variables


def _names(text: str) -> set[str]:
    return set(re.findall(r"TLTUI_[A-Z_]+", text))


def test_every_tltui_environment_variable_is_listed_in_the_settings_docstring() -> None:
    """A new ``TLTUI_*`` variable must be declared (with what it does) in tltui/core/settings.py's docstring."""
    documented = _names(settings.__doc__ or "")
    used: dict[str, set[str]] = {}
    files = [*sorted((REPO / "tltui").rglob("*.py")), *sorted((REPO / "tests").rglob("*.py")), REPO / ".ci" / "run"]
    for path in files:
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        if path == Path(settings.__file__).resolve():  # the docstring itself does not count
            doc = ast.get_docstring(ast.parse(text), clean=False) or ""
            text = text.replace(doc, "", 1)
        for name in _names(text):
            used.setdefault(name, set()).add(str(path.relative_to(REPO)))
    missing = {
        name: sorted(where)
        for name, where in used.items()
        if not (any(d.startswith(name) for d in documented) if name.endswith("_") else name in documented)
    }
    assert not missing, f"TLTUI_* variables read but not listed in tltui/core/settings.py's docstring: {missing}"
    stale = {d for d in documented if d not in used and not any(d.startswith(u) for u in used if u.endswith("_"))}
    assert not stale, f"listed in tltui/core/settings.py's docstring but read nowhere: {sorted(stale)}"
