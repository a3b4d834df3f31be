"""``tltui check PRESET``: validate a preset and print the runs its sweep expands to."""

from __future__ import annotations

import argparse
import sys

from tltui.commands import common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="validate a preset and list the runs it expands to")
    p.add_argument("preset", help="preset file, or the name of a shipped/workspace preset")
    common.add_set(p)
    p.add_argument("--json", action="store_true", help="print {\"runs\": [...]} as JSON")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tltui import preflight, presets

    ws = common.workspace(args)
    path, preset = common.load_preset(args, ws)
    report = preflight.require(preset, str(path), ws)
    runs = presets.expand(preset)
    if args.json:
        common.print_json(
            {
                "preset": preset.name,
                "runs": [{"name": r.name, "overrides": r.overrides} for r in runs],
                "warnings": report.warnings,
            }
        )
        return 0
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{path}: ok, {len(runs)} run{'s' if len(runs) != 1 else ''}")
    for r in runs:
        ov = " ".join(f"{k}={v!r}" for k, v in r.overrides.items())
        print(f"  {r.name}" + (f"    {ov}" if ov else ""))
    return 0
