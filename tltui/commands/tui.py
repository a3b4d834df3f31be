"""``tltui tui`` (and bare ``tltui``): open the Textual app on the workspace.

Textual is imported only inside :func:`main`, so other subcommands start fast.
"""

from __future__ import annotations

import argparse

from tltui.commands import common
from tltui.core.errors import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tui", help="open the app (the default without a command)")
    p.add_argument("--preset", metavar="PRESET", help="start on the queue dialog with this preset selected")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tltui.tui.app import run_app

    ws = common.workspace(args)
    preset = getattr(args, "preset", None)
    open_preset = None
    if preset:  # opened to be queued: the demo by name gets its data as `tltui demo` does
        from tltui.core import demo  # presets and pydantic: not before the first frame otherwise

        open_preset = demo.find_preset(preset, ws)
        if not open_preset.is_file():
            raise CommandError(f"--preset {preset}: no such preset (a shipped or workspace preset's name, or a file)")
    run_app(ws, open_preset=open_preset)
    return 0
