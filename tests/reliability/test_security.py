"""Security: presets are data, subprocesses never go through a shell, paths are argv items,
and the workspace is readable by its owner only.

(``.keras`` files with a Lambda layer are refused by the predict worker:
``tests/worker/test_predict_e2e.py::test_model_with_a_lambda_layer_is_refused``.)
"""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tltui.client.predict import PredictJob
from tltui.core import presets
from tltui.core.workspace import Workspace
from tltui.runner import supervisor

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "tltui"
HOSTILE = "x; touch PWNED $(touch PWNED2) `touch PWNED3` 'q\" | rm -rf ~ &"


def _sources() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _name(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


FORBIDDEN = {
    "os.system",
    "os.popen",
    "os.execl",
    "os.execlp",
    "os.execle",
    "os.execv",
    "os.execvp",
    "os.execvpe",
    "os.spawnl",
    "os.spawnlp",
    "os.spawnv",
    "os.spawnvp",
    "eval",
    "exec",
    "compile",
    "pickle.load",
    "pickle.loads",
    "marshal.loads",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "asyncio.create_subprocess_shell",
}
SPAWNERS = {
    "subprocess.Popen",
    "subprocess.run",
    "subprocess.call",
    "subprocess.check_call",
    "subprocess.check_output",
    "popen",
    "self._popen",
    "run",
}


def test_no_shell_no_eval_no_pickle_anywhere_in_tltui() -> None:
    bad = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(m.split(".")[0] in ("pickle", "marshal", "shelve", "dill", "cloudpickle") for m in mods):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {mods}")
        for call in _calls(tree):
            name = _name(call.func)
            rel = f"{path.relative_to(ROOT)}:{call.lineno}"
            if name in FORBIDDEN:
                bad.append(f"{rel}: {name}()")
            for kw in call.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    bad.append(f"{rel}: shell= in {name}()")
            if name in SPAWNERS and call.args:
                first = call.args[0]
                # a command is a list built from parts, never one string to be split by a shell
                if isinstance(first, ast.JoinedStr | ast.BinOp) or (
                    isinstance(first, ast.Constant) and isinstance(first.value, str)
                ):
                    bad.append(f"{rel}: {name}() with a string command")
    assert not bad, "\n".join(bad)


def test_the_scan_catches_what_it_looks_for(tmp_path: Path) -> None:
    """The scanner above is not vacuous: it flags each kind of offence."""
    src = "import os, subprocess, pickle\nos.system('ls')\nsubprocess.run(f'ls {x}', shell=True)\neval('1')\n"
    tree = ast.parse(src)
    names = {_name(c.func) for c in _calls(tree)}
    assert {"os.system", "subprocess.run", "eval"} <= names
    assert any(kw.arg == "shell" for c in _calls(tree) for kw in c.keywords)
    assert any(isinstance(c.args[0], ast.JoinedStr) for c in _calls(tree) if _name(c.func) == "subprocess.run")


@pytest.mark.parametrize(
    "value",
    [
        "__import__('os').system('touch PWNED')",
        "{{ config.__class__.__init__.__globals__ }}",
        "!!python/object/apply:os.system ['touch PWNED']",
        "${HOME}/$(touch PWNED)",
        "cos\nsystem\n(S'touch PWNED'\ntR.",  # a pickle opcode stream
    ],
)
def test_code_looking_preset_strings_stay_strings(tmp_path: Path, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    text = (
        f'name = "evil"\ndescription = {json.dumps(value)}\n'
        f'[data]\nsource = "folder:data"\n[model]\nbackbone = "tiny_cnn"\nweights = "none"\n'
    )
    p = tmp_path / "evil.toml"
    p.write_text(text)
    preset = presets.load(p)
    assert preset.description == value
    # as a name or a data source the same text is rejected as a value, never run
    for key in ("name", "data.source"):
        with pytest.raises(presets.PresetError) as err:
            presets.load(p, overrides={key: value})
        assert len(err.value.issues) == 1
    assert not list(tmp_path.glob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))


def test_hostile_paths_are_single_argv_items(tmp_path: Path, fake_worker_env: list[str]) -> None:
    """A workspace and an inference folder named like shell code: the worker gets each path as one
    argv item (a list, no shell), so nothing in the name runs."""
    ws = Workspace(tmp_path / HOSTILE.replace("/", "_"))
    seen: list[list[str]] = []

    def record(argv, **kw):  # type: ignore[no-untyped-def]
        assert "shell" not in kw
        seen.append(list(argv))
        return subprocess.Popen(argv, **kw)

    (rec,) = ws.create_runs([("n", "[train]\nepochs = 1\ncheckpoint_every = 0\n", {})], preset_name="n", queued=False)
    wp = supervisor.spawn_worker(ws, rec.id, popen=record)
    assert wp.proc.wait(timeout=60) == 0
    wp.close()
    assert str(ws.run_paths(rec.id).dir) in seen[0]
    assert [e.type for e in __import__("tltui.core.protocol").core.protocol.read_events(ws.run_paths(rec.id).events)][
        -1
    ] == "finished"

    folder = tmp_path / HOSTILE.replace("/", "_")
    client = PredictJob(
        ws.run_paths(rec.id).dir, folder, worker_cmd=[sys.executable, "-c", "import sys; sys.exit(0)"], popen=record
    )
    list(client)
    client.close()
    assert str(folder.absolute()) in seen[1]
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    ws.close()


def _loose(root: Path) -> list[str]:
    out = []
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if p.is_symlink():
            continue
        if mode & 0o077:
            out.append(f"{p.relative_to(root)}: {oct(mode)}")
    return out


def test_workspace_is_owner_only_after_a_run(tmp_path: Path, fake_worker_env: list[str]) -> None:
    data = tmp_path / "data"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        (data / c / "0.png").touch()  # preflight checks the names only (the fake worker reads none)
    preset = tmp_path / "p.toml"
    preset.write_text(
        'name = "perm"\n[data]\nsource = "folder:data"\nimage_size = [32, 32]\n'
        '[model]\nbackbone = "tiny_cnn"\nweights = "none"\n[train]\nepochs = 2\ncheckpoint_every = 1\n'
    )
    root = tmp_path / "ws"
    env = {**os.environ, "TLTUI_FAKE_EPOCH_SECONDS": "0.02"}
    old = os.umask(0o022)  # a typical login umask: tltui must not rely on the user's
    try:
        p = subprocess.run(
            [sys.executable, "-m", "tltui", "--workspace", str(root), "run", str(preset)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )
    finally:
        os.umask(old)
    assert p.returncode == 0, p.stderr
    ws = Workspace(root)
    (rec,) = ws.list_runs()
    paths = ws.run_paths(rec.id)
    for must in (ws.db_path, paths.dir, paths.events, paths.log, paths.preset, paths.checkpoints):
        assert must.exists(), must
    assert list(paths.checkpoints.glob("*.keras"))
    assert _loose(root) == []
    ws.close()
