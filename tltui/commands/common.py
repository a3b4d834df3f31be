"""Helpers shared by subcommands: opening the workspace, loading presets, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tltui.core.workspace import Workspace


def workspace(args: argparse.Namespace) -> Workspace:
    return Workspace(getattr(args, "workspace", None))


def add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a preset field (dotted key, TOML value), e.g. --set train.epochs=3",
    )


def load_preset(args: argparse.Namespace, ws: Workspace) -> tuple[Path, Any]:
    """The preset ``args.preset`` names with its ``--set`` overrides, for a command that trains it or
    checks its data (a demo preset by name: its data is generated when missing)."""
    from tltui.core import demo, presets

    path = demo.find_preset(args.preset, ws)
    overrides = presets.parse_set(getattr(args, "overrides", []) or [])
    return path, presets.load(path, overrides)


def worker_job(*args: str) -> tuple[int, dict[str, Any]]:
    """Run ``python -m tltui.worker ARGS...``, a job that prints its progress on stderr (left on the
    terminal) and one JSON line last on stdout; returns the exit code and that reply (``{}`` when
    there is none)."""
    import os
    import subprocess

    from tltui.runner.supervisor import worker_command

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    proc = subprocess.run([*worker_command(), *args], stdout=subprocess.PIPE, text=True, check=False, env=env)
    lines = proc.stdout.strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else {}
    except ValueError:
        reply = {}
    return proc.returncode, reply if isinstance(reply, dict) else {}


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1, with a one-line message otherwise."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def print_json(obj: Any) -> None:
    # indented JSON goes through the pure-Python encoder: keep big outputs compact unless a human reads them
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(obj, indent=indent, default=str) + "\n")
