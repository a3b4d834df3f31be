"""``tltui hub fetch|ls``: prefetch TF Hub modules into the workspace cache, list the cache.

``fetch`` runs ``python -m tltui.worker hub-fetch`` (TensorFlow loads the module to
check it); ``ls`` reads the cache folder only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tltui.commands import common
from tltui.core import hubcache
from tltui.core.errors import CommandError
from tltui.runner.supervisor import worker_command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hub", help="prefetch TF Hub modules so queued runs never wait on a download")
    hs = p.add_subparsers(dest="hub_command", metavar="ACTION", required=True, parser_class=type(p))
    fetch = hs.add_parser("fetch", help="download a hub: handle into the workspace cache and check it loads")
    fetch.add_argument("handle", help="tfhub.dev / Kaggle Models URL, URL of a .tar.gz, or a SavedModel folder")
    fetch.add_argument("--timeout", type=float, default=hubcache.DEFAULT_TIMEOUT, help="seconds a download may stall")
    fetch.add_argument("--json", action="store_true")
    fetch.set_defaults(func=cmd_fetch)
    ls = hs.add_parser("ls", help="list the modules in the workspace's hub cache")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_ls)


def _absolute(handle: str) -> str:
    """A relative local path is relative to where the user typed it."""
    raw = handle.removeprefix("hub:")
    if not raw.strip():
        raise CommandError("hub fetch: an empty handle (a URL such as https://tfhub.dev/..., or a SavedModel folder)")
    if "://" in raw:
        return raw
    return str(Path(raw).expanduser().resolve())


def cmd_fetch(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
    cache = hubcache.cache_root(ws.root)
    handle = _absolute(args.handle)
    hubcache.parse(handle)  # a bad handle is a HubError: one line from tltui.commands.main
    cmd = [*worker_command(), "hub-fetch", handle, "--cache", str(cache), "--timeout", str(args.timeout)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
        print(
            errors[-1]
            if errors
            else f"error: hub-fetch failed (exit {proc.returncode}): "
            f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}",
            file=sys.stderr,
        )
        return 2 if errors else 1
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if args.json:
        common.print_json(info)
        return 0
    h, w = info["input_size"]
    size = f"{h}x{w}" if h and w else "any size"
    dim = info["output_dim"]
    print(f"ready: hub:{handle}")
    print(f"  folder: {info['path']}")
    print(
        f"  input {size}, output {dim}, {info['variables']} variables "
        f"({info['trainable_variables']} trainable, {info['params']:,} parameters), "
        f"training argument: {'yes' if info['training_argument'] else 'no'}"
    )
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
    cache = hubcache.cache_root(ws.root)
    mods = hubcache.list_cached(cache)
    if args.json:
        common.print_json({"cache": str(cache), "modules": [m.to_dict() for m in mods]})
        return 0
    if not mods:
        print(f"no hub modules cached in {cache} (`tltui hub fetch HANDLE` adds one)")
        return 0
    print(f"{'STATE':<11} {'SIZE':>9}  {'FETCHED':<16} HANDLE / FOLDER")
    for m in mods:
        print(
            f"{m.state:<11} {hubcache.format_size(m.size_bytes):>9}  {hubcache.format_time(m.fetched):<16} "
            f"{m.handle or '(unknown handle)'}"
        )
        print(f"{'':<39}{m.folder}")
    broken = [m for m in mods if m.state in ("incomplete", "stale_lock")]
    for m in broken:
        print(
            f"warning: {m.folder} is {m.state.replace('_', ' ')}; the next fetch or run re-downloads it (or delete it)",
            file=sys.stderr,
        )
    return 0
