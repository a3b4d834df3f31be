"""``tltui data fetch|ls``: TFDS datasets in a ``data_dir``.

``fetch`` runs ``python -m tltui.worker data-fetch`` (TFDS downloads and prepares, under the
same lock a run takes; progress on the terminal); ``ls`` reads the folder only (no TensorFlow).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tltui.commands import common
from tltui.core.errors import CommandError
from tltui.core.preflight import tfds_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="download and prepare TFDS datasets ahead of the runs, or list them")
    ds = p.add_subparsers(dest="data_command", metavar="ACTION", required=True, parser_class=type(p))
    fetch = ds.add_parser("fetch", help="download and prepare tfds:NAME into the data dir (once)")
    fetch.add_argument("source", metavar="tfds:NAME")
    fetch.add_argument("--data-dir", help="default: $TFDS_DATA_DIR, else ~/tensorflow_datasets")
    fetch.add_argument("--json", action="store_true")
    fetch.set_defaults(func=cmd_fetch)
    ls = ds.add_parser("ls", help="the prepared TFDS datasets in the data dir, and where")
    ls.add_argument("--data-dir", help="default: $TFDS_DATA_DIR, else ~/tensorflow_datasets")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_ls)


def data_dir(args: argparse.Namespace) -> Path:
    return tfds_data_dir(args.data_dir).absolute()


def cmd_fetch(args: argparse.Namespace) -> int:
    name = args.source.removeprefix("tfds:")
    if not name or args.source.startswith("folder:"):
        raise CommandError(f"expected tfds:NAME, got {args.source!r}")
    root = data_dir(args)
    rc, reply = common.worker_job("data-fetch", name, "--data-dir", str(root))
    if "error" in reply or rc != 0:
        print(f"error: {reply.get('error') or f'data-fetch exited {rc}'}", file=sys.stderr)
        return 2 if "error" in reply else 1
    if args.json:
        common.print_json(reply)
    else:
        print(f"{'prepared' if reply['prepared_now'] else 'already prepared'}: tfds:{name} in {root}")
    return 0


def prepared(root: Path) -> list[dict[str, Any]]:
    """Every ``NAME[/CONFIG]/VERSION/dataset_info.json`` under ``root`` (complete datasets only:
    TFDS writes into ``*.incomplete*`` folders and renames them when done)."""
    out = []
    for info in sorted(root.glob("*/*/dataset_info.json")) + sorted(root.glob("*/*/*/dataset_info.json")):
        rel = info.parent.relative_to(root).parts
        if rel[0] in ("downloads",) or rel[0].startswith(".") or any("incomplete" in p for p in rel):
            continue
        try:
            doc = json.loads(info.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        splits = {}
        for s in doc.get("splits", []):
            lengths = s.get("shardLengths") or []
            splits[s.get("name", "?")] = sum(int(x) for x in lengths)
        size = sum(f.stat().st_size for f in info.parent.iterdir() if f.is_file())
        out.append(
            {
                "name": rel[0],
                "config": rel[1] if len(rel) == 3 else None,
                "version": rel[-1],
                "path": str(info.parent),
                "splits": splits,
                "bytes": size,
            }
        )
    return out


def cmd_ls(args: argparse.Namespace) -> int:
    root = data_dir(args)
    rows = prepared(root)
    if args.json:
        common.print_json({"data_dir": str(root), "datasets": rows})
        return 0
    print(f"TFDS data dir: {root}")
    if not rows:
        print("  (no prepared datasets; `tltui data fetch tfds:NAME`)")
    for r in rows:
        name = r["name"] + (f"/{r['config']}" if r["config"] else "")
        splits = ", ".join(f"{k} {v:,}" for k, v in r["splits"].items())
        print(f"  {name:<28} {r['version']:<8} {r['bytes'] / 1e6:8.1f} MB  {splits}")
    return 0
