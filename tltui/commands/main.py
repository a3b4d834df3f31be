"""Entry point: ``tltui`` opens the TUI; subcommands run headless.

Each subcommand lives in ``tltui/commands/NAME.py`` with ``register(subparsers)``
and ``main(args) -> int``. Command modules import TensorFlow never and Textual
only inside the function that opens the app, so every subcommand starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from tltui import __version__
from tltui.core.errors import TltuiError

#: Modules under tltui.commands, in the order ``--help`` lists them.
COMMANDS = (
    "tui",
    "check",
    "run",
    "queue",
    "runs",
    "sweep",
    "control",
    "freeze_map",
    "predict",
    "export",
    "hub",
    "weights",
    "data",
    "cache",
    "demo",
    "doctor",
)

#: Which module defines each top-level command, so a command imports only its own module.
COMMAND_MODULES = {
    "tui": "tui",
    "check": "check",
    "run": "run",
    "queue": "queue",
    "runs": "runs",
    "sweep": "sweep",
    "cancel": "control",
    "resume": "control",
    "freeze-map": "freeze_map",
    "predict": "predict",
    "export": "export",
    "hub": "hub",
    "weights": "weights",
    "data": "data",
    "cache": "cache",
    "demo": "demo",
    "demo-data": "demo",
    "doctor": "doctor",
}

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _chosen_module(argv: Sequence[str]) -> str | None:
    """The command module named on the command line (``None``: unknown, so load them all)."""
    it = iter(argv)
    for arg in it:
        if arg == "--workspace":
            next(it, None)
        elif arg.startswith("-"):
            if arg in ("-h", "--help", "--version"):
                return None
        else:
            return COMMAND_MODULES.get(arg)
    return "tui"


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI parser; given ``argv``, only the chosen command's module is imported (fast start)."""
    parser = _Parser(
        prog="tltui",
        description="Terminal experiment manager for transfer learning with TensorFlow/Keras. "
        "Without a command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"tltui {__version__}")
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        help="workspace folder (default: $TLTUI_HOME, else the user data dir)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = _chosen_module(argv) if argv is not None else None
    for name in COMMANDS if chosen is None else (chosen,):
        try:
            mod = importlib.import_module(f"tltui.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"tltui.commands.{name}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # runs, logs and the registry are readable by their owner only
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*argv, "tui"])
    try:
        return int(args.func(args) or 0)
    except TltuiError as e:  # the one place a user error becomes its lines on stderr
        for line in e.lines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tltui runs ls | head`: the reader went away; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
