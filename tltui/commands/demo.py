"""``tltui demo-data [DIR]`` and ``tltui demo``: the synthetic shapes dataset and its preset.

The shipped ``demo`` preset lives inside the package (read-only once installed); the data it
trains on is generated into the workspace (``WORKSPACE/demo-data/``), next to a copy of the
preset in ``WORKSPACE/presets/demo.toml`` whose ``data.source`` points there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tltui.commands import common
from tltui.core.demo import DATA_DIR, PHOTOS_DIR, ensure_demo, workspace_preset
from tltui.core.errors import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-data", help="generate the synthetic shapes dataset (no download)")
    p.add_argument("dir", nargs="?", type=Path, help=f"where to write it (default: WORKSPACE/{DATA_DIR})")
    p.add_argument("--per-class", type=int, default=300, help="images per class (default 300)")
    p.add_argument("--size", type=int, default=48, help="image side in pixels (default 48)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="regenerate even if it exists")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser(
        "demo", help="generate the demo data if needed, then open the app with the demo preset ready to queue"
    )
    common.add_set(p)
    p.add_argument("--headless", action="store_true", help="train the demo preset in the foreground instead")
    p.add_argument("--plain", action="store_true", help="with --headless: one line per epoch, no live progress bars")
    p.set_defaults(func=cmd_demo)


def cmd_demo_data(args: argparse.Namespace) -> int:
    from tltui.core import demo

    if args.per_class < 1 or args.size < 8:
        raise CommandError("--per-class must be >= 1 and --size >= 8")
    if args.dir is None:
        ws = common.workspace(args)
        root = ws.root / DATA_DIR
        preset = workspace_preset(ws)
    else:
        root, preset = args.dir, None
    if demo.is_complete(root) and not args.force:
        print(f"{root}: already there (--force to regenerate)")
        return 0
    demo.check_replaceable(root)  # before the photos beside it are written
    photos = demo.generate_photos(root.parent / PHOTOS_DIR.name)
    demo.generate(root, per_class=args.per_class, size=args.size, seed=args.seed)
    print(f"{root}: {len(demo.SHAPES)} classes x {args.per_class} images of {args.size}x{args.size}")
    print(f"{photos}: images to try `tltui predict` on")
    if preset is not None:
        print(f"{preset}: the demo preset (`tltui run demo`)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
    path = ensure_demo(ws)
    if not args.headless:
        if args.overrides:
            raise CommandError("--set needs --headless (edit the preset in the app instead)")
        from tltui.tui.app import run_app

        run_app(ws, open_preset=path)
        return 0
    from tltui.commands.run import run_preset
    from tltui.core import preflight, presets

    overrides = presets.parse_set(args.overrides)
    preset = presets.load(path, overrides)
    preflight.require(preset, str(path), ws, overrides)
    return run_preset(ws, preset, plain=args.plain or not sys.stdout.isatty())
