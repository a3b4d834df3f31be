"""The wheel a user installs: built from the package alone, installed into a fresh venv with no
editable install and no checkout on the path, it finds its presets, writes the demo data into
the workspace (never into site-packages) and trains the demo.

The fresh venv gets tltui from the wheel only; its dependencies (TensorFlow & co., 2 GB) come from
this venv's site-packages through a ``.pth`` path line, which adds the folder to ``sys.path``
without running the ``.pth`` files inside it (so the editable finder of the checkout stays off).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tltui import __version__

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("packaging")]

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str | Path], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "tltui", src / "tltui", ignore=shutil.ignore_patterns("__pycache__", "demo-data"))
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            base / "dist",
            src,
        ]
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (base / "dist").glob("tltui-*.whl")

    venv = base / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv])
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "_tltui_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    inst = run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", wheel])
    assert inst.returncode == 0, inst.stderr[-3000:]

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TLTUI_HOME")}
    return {"base": base, "venv": venv, "site": site, "env": env, "tltui": venv / "bin" / "tltui", "py": py}


def test_the_wheel_ships_the_presets_and_imports_from_site_packages(installed: dict) -> None:
    where = run(
        [installed["py"], "-c", "import tltui; print(tltui.__file__)"], cwd=installed["base"], env=installed["env"]
    )
    assert Path(where.stdout.strip()).is_relative_to(installed["site"]), where.stdout + where.stderr
    shipped = installed["site"] / "tltui" / "presets"
    assert {p.name for p in shipped.glob("*.toml")} >= {"demo.toml", "cifar100-resnet50-freeze-sweep.toml"}
    assert (installed["site"] / "tltui" / "tui" / "app.tcss").is_file()
    version = run([installed["tltui"], "--version"], cwd=installed["base"], env=installed["env"])
    assert version.stdout.strip() == f"tltui {__version__}"


def test_check_and_a_short_headless_demo_run_from_the_installed_wheel(installed: dict) -> None:
    ws = installed["base"] / "ws"
    cmd = [installed["tltui"], "--workspace", ws]
    checked = run([*cmd, "check", "demo"], cwd=installed["base"], env=installed["env"])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    demo = run(
        [
            *cmd,
            "demo",
            "--headless",
            "--plain",
            "--set",
            "train.epochs=1",
            "--set",
            "data.train_limit=48",
            "--set",
            "data.val_limit=24",
        ],
        cwd=installed["base"],
        env=installed["env"],
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "r0001 completed" in demo.stdout
    assert (ws / "runs" / "r0001" / "model.keras").is_file()
    assert (ws / "demo-data" / "shapes").is_dir() and (ws / "presets" / "demo.toml").is_file()
    package = installed["site"] / "tltui"
    assert not list(package.rglob("demo-data")), "demo data written into site-packages"
