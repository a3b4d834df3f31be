"""``tltui.runner.executor.EXECUTORS`` is the one list of executors: built-ins plus the entry-point
group ``tltui.executors``; ``[executor] default``, ``queue add --executor`` and the client read it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tltui.client import queue_ops
from tltui.commands import queue as queue_cmd
from tltui.core.errors import PresetError
from tltui.core.workspace import Workspace, WorkspaceError
from tltui.runner import executor as executor_mod
from tltui.runner.executor import ENTRY_POINT_GROUP, EXECUTORS, LocalExecutor
from tltui.runner.executors import default_executor

PLUGIN = '''
from tltui.runner.executor import Executor, LocalExecutor


class FakeExecutor(LocalExecutor):
    """What a separate package's cluster backend looks like to tltui."""

    name = "fake"


class NotAnExecutor:
    pass


class Undeclared(Executor):
    """Says nothing about its devices."""

    name = "undeclared"

    def submit(self, run_id, *, gpus, resume):
        raise NotImplementedError

    def adopt(self, rec):
        return None


class Misnamed(LocalExecutor):
    name = "other"
'''


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *names: tuple[str, str]) -> None:
    """An installed package declaring executors ``(name, "module:Class")`` in the entry-point group
    (a fake ``entry_points``)."""
    (tmp_path / "tltui_fake_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [metadata.EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in names]
    real = metadata.entry_points

    def entry_points(**kw: object) -> object:
        if kw.get("group") == ENTRY_POINT_GROUP:
            return metadata.EntryPoints(eps)
        return real(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    EXECUTORS.refresh()


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    install(
        tmp_path,
        monkeypatch,
        ("fake", "tltui_fake_plugin:FakeExecutor"),
        ("local", "tltui_fake_plugin:FakeExecutor"),  # cannot shadow
        ("broken", "tltui_no_such_module:X"),
        ("odd", "tltui_fake_plugin:NotAnExecutor"),
    )
    yield
    monkeypatch.undo()
    EXECUTORS.refresh()


def write_preset(root: Path) -> Path:
    for c in ("cats", "dogs"):
        (root / "data" / c).mkdir(parents=True, exist_ok=True)
        (root / "data" / c / "0.png").touch()  # preflight checks the names only
    p = root / "q.toml"
    p.write_text(
        'name = "q"\n[data]\nsource = "folder:data"\nimage_size = [32, 32]\n'
        '[model]\nbackbone = "tiny_cnn"\nweights = "none"\n[train]\nepochs = 1\n'
    )
    return p


def executor_choices() -> object:
    parser = argparse.ArgumentParser()
    queue_cmd.register(parser.add_subparsers())
    queue = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["queue"]
    add = next(a for a in queue._actions if isinstance(a, argparse._SubParsersAction)).choices["add"]
    return next(a for a in add._actions if a.dest == "executor").choices


def test_the_builtins_and_every_reader_share_one_list(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    assert list(EXECUTORS) == ["local", "ray", "slurm"]
    assert EXECUTORS["local"] is LocalExecutor
    assert executor_choices() is EXECUTORS
    monkeypatch.setenv("TLTUI_EXECUTOR", "kubernetes")
    with pytest.raises(PresetError, match="is not one of local, ray, slurm"):
        default_executor(ws)


def test_naming_the_executors_imports_none_of_them() -> None:
    code = (
        "import sys, tltui.runner.executor as e\n"
        "assert 'ray' in e.EXECUTORS and list(e.EXECUTORS)\n"
        "assert not [m for m in sys.modules if m.startswith('tltui.runner.executors.')], sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_an_entry_point_adds_an_executor_everywhere(
    plugin: None, ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert list(EXECUTORS) == ["local", "ray", "slurm", "fake", "broken", "odd"]
    cls = EXECUTORS["fake"]
    assert cls.__name__ == "FakeExecutor" and issubclass(cls, executor_mod.Executor)
    assert EXECUTORS["local"] is LocalExecutor  # a plugin cannot replace a built-in
    assert "fake" in executor_choices()  # type: ignore[operator]
    monkeypatch.setenv("TLTUI_EXECUTOR", "fake")
    assert default_executor(ws) == "fake"
    (rec,) = queue_ops.add(ws, write_preset(tmp_path), start_runner=False)
    assert rec.executor == "fake"


def test_a_broken_entry_point_is_one_line_when_used(plugin: None) -> None:
    with pytest.raises(
        WorkspaceError,
        match=r"executor 'broken' \(tltui_no_such_module:X\) does not load: "
        "ModuleNotFoundError",
    ):
        EXECUTORS["broken"]
    with pytest.raises(WorkspaceError, match="'odd' .* is not a tltui.runner.executor.Executor subclass"):
        EXECUTORS["odd"]


def test_what_the_scheduler_needs_is_on_the_class_not_in_the_name() -> None:
    from tltui.core.settings import RaySettings, SlurmSettings

    assert [(n, EXECUTORS[n].places_devices, EXECUTORS[n].settings_model) for n in EXECUTORS] == [
        ("local", False, None),  # the runner gives it this machine's GPU and CPU slots
        ("ray", True, RaySettings),  # clusters place their own devices
        ("slurm", True, SlurmSettings),
    ]
    assert [EXECUTORS.places_devices(n) for n in ("local", "ray", "slurm")] == [False, True, True]
    assert EXECUTORS.places_devices("kubernetes") is True  # not installed here: not on this machine's slots


def test_a_plugin_must_say_whether_it_places_its_devices_and_answer_to_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(
        tmp_path,
        monkeypatch,
        ("undeclared", "tltui_fake_plugin:Undeclared"),
        ("misnamed", "tltui_fake_plugin:Misnamed"),
        ("broken", "tltui_no_such_module:X"),
    )
    try:
        with pytest.raises(WorkspaceError, match=r"'undeclared' .* does not say whether it places its own devices"):
            EXECUTORS["undeclared"]
        with pytest.raises(WorkspaceError, match=r"'misnamed' .* is named 'other', not 'misnamed'"):
            EXECUTORS["misnamed"]
        assert EXECUTORS.places_devices("broken") is True  # shown like a cluster's runs, and asked once
        with pytest.raises(WorkspaceError, match="does not load"):
            EXECUTORS["broken"]
    finally:
        monkeypatch.undo()
        EXECUTORS.refresh()


def test_an_installed_executors_table_is_checked_by_its_executor(plugin: None, ws: Workspace) -> None:
    """A table named after an installed executor: the core keeps it, the executor's model checks it.
    An executor without settings, or one that does not load, has no business with a table."""
    from tltui.core.settings import Settings

    ws.settings_file.write_text("[fake]\nx = 1\n\n[broken]\ny = 2\n[local]\n")
    settings = Settings.load(ws)  # no unknown table: these name installed executors
    assert settings.executor_tables == ["fake", "broken", "local"]
    with pytest.raises(PresetError) as e:
        EXECUTORS.check_settings(settings)
    assert e.value.lines() == [
        f"{ws.settings_file}:1: fake: the 'fake' executor has no settings",
        f"{ws.settings_file}:4: broken: executor 'broken' (tltui_no_such_module:X) does not load: "
        "ModuleNotFoundError: No module named 'tltui_no_such_module'",
        f"{ws.settings_file}:6: local: the 'local' executor has no settings",
    ]
    p = write_preset(ws.root)
    with pytest.raises(PresetError, match="the 'fake' executor has no settings"):
        queue_ops.add(ws, p, start_runner=False, executor="local")
