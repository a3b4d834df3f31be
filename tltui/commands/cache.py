"""``tltui cache ls|rm``: the decoded-image cache (``WORKSPACE/cache/decoded``, see
:mod:`tltui.core.decoded_store`): what it holds, and freeing it."""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
from pathlib import Path

from tltui.commands import common
from tltui.core.errors import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="list or free the decoded-image cache of folder datasets")
    cs = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True, parser_class=type(p))
    ls = cs.add_parser("ls", help="every entry: its folder, images, native size, bytes, last use")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_ls)
    rm = cs.add_parser("rm", help="delete entries (a running run keeps reading what it has open)")
    rm.add_argument("keys", nargs="*", metavar="KEY", help="entry keys (a unique prefix is enough)")
    rm.add_argument("--all", action="store_true", help="every entry")
    rm.set_defaults(func=cmd_rm)


def _root(args: argparse.Namespace) -> tuple[Path, float]:
    from tltui.core import decoded_store as store

    return store.workspace_cache(common.workspace(args).root)


def cmd_ls(args: argparse.Namespace) -> int:
    from tltui.core import decoded_store as store

    root, limit = _root(args)
    rows = []
    for e in store.entries(root):
        rows.append(
            {
                "key": e.path.name,
                "source": e.meta.get("source", ""),
                "images": len(e.meta.get("rows", [])),
                "skipped": len(e.meta.get("skipped", [])),
                "native_size": e.meta.get("native_size"),
                "bytes": store.entry_bytes(e),
                "last_used": store.last_used(e),
                "path": str(e.path),
                "current": e.current,  # False: written by an older tltui, never read again (`cache rm` frees it)
            }
        )
    total = sum(r["bytes"] for r in rows)
    if args.json:
        common.print_json({"root": str(root), "limit_bytes": limit, "bytes": total, "entries": rows})
        return 0
    print(f"{root}: {len(rows)} entr{'y' if len(rows) == 1 else 'ies'}, {total / 1e9:.2f} of {limit / 1e9:g} GB")
    for r in rows:
        used = datetime.datetime.fromtimestamp(r["last_used"]).strftime("%Y-%m-%d %H:%M")
        h, w = r["native_size"] or (0, 0)
        old = "" if r["current"] else "  (old format: never read again)"
        print(
            f"  {r['key']}  {r['images']:>7} images {h}x{w}  {r['bytes'] / 1e6:>9.1f} MB  used {used}  {r['source']}{old}"
        )
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from tltui.core import decoded_store as store

    root, _ = _root(args)
    found = store.entries(root)
    if args.all:
        chosen = found
    else:
        if not args.keys:
            raise CommandError("cache rm: give entry keys (see `tltui cache ls`) or --all")
        chosen = []
        for key in args.keys:
            match = [e for e in found if e.path.name.startswith(key)]
            if len(match) != 1:
                what = "no entry" if not match else f"{len(match)} entries"
                raise CommandError(f"cache rm: {what} with a key starting {key!r} (see `tltui cache ls`)")
            chosen += match
    freed = 0
    for e in chosen:
        freed += store.entry_bytes(e)
        shutil.rmtree(e.path, ignore_errors=True)
    print(
        f"removed {len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'}, {freed / 1e6:.1f} MB freed", file=sys.stderr
    )
    return 0
