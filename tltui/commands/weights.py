"""``tltui weights fetch|ls``: ImageNet weights in Keras's cache (``$KERAS_HOME/models``).

``fetch`` runs ``python -m tltui.worker weights-fetch`` (Keras downloads the file and checks its
hash, exactly as a run would; its progress shows on the terminal); ``ls`` reads the cache only.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from tltui.commands import common
from tltui.core import catalog
from tltui.core.errors import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="prefetch ImageNet weights into Keras's cache, or list them")
    ws_ = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True, parser_class=type(p))
    fetch = ws_.add_parser("fetch", help="download the ImageNet weights of backbones, or of every run of a preset")
    fetch.add_argument("names", nargs="+", metavar="BACKBONE|PRESET")
    fetch.add_argument("--image-size", type=common.positive_int, help="input side (MobileNet files depend on it)")
    fetch.add_argument("--alpha", type=float, help="MobileNet width multiplier")
    fetch.add_argument("--json", action="store_true")
    fetch.set_defaults(func=cmd_fetch)
    ls = ws_.add_parser("ls", help="every backbone's ImageNet weights file (default input size): cached or not")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_ls)


@dataclass(frozen=True)
class Target:
    backbone: str
    image_size: tuple[int, int]
    alpha: float | None

    @property
    def file(self) -> catalog.WeightsFile:
        wf = catalog.imagenet_weights(self.backbone, self.image_size, self.alpha)
        assert wf is not None
        return wf


def targets(args: argparse.Namespace) -> list[Target]:
    """What to fetch: a backbone (its default size unless ``--image-size``), or a preset's runs
    that use ImageNet weights. Raises :class:`ValueError` (one line) for anything else."""
    out: list[Target] = []
    for name in args.names:
        spec = catalog.lookup(name)
        if spec is not None:
            side = args.image_size or spec.default_size
            out.append(Target(name, (side, side), args.alpha))
            if catalog.imagenet_weights(name, (side, side)) is None:
                raise CommandError(f"{name}: has no ImageNet weights")
            continue
        from tltui.core import presets

        ws = common.workspace(args)
        path = presets.find_preset(name, ws)
        if not path.is_file():
            known = ", ".join(catalog.BACKBONES)
            raise CommandError(f"{name}: neither a backbone ({known}) nor a preset file or name")
        preset = presets.load(path)
        for p in presets.run_presets(preset):
            if (
                p.model.weights == "imagenet"
                and catalog.imagenet_weights(p.model.backbone, p.data.image_size) is not None
            ):
                h, w = p.data.image_size
                out.append(Target(p.model.backbone, (h, w), p.model.alpha))
    unique: dict[str, Target] = {}
    for t in out:
        unique.setdefault(t.file.fname, t)
    return list(unique.values())


def fetch_one(t: Target, quiet: bool) -> dict[str, Any]:
    """Run the worker's ``weights-fetch`` for one target. Cached or not, it builds the application,
    so Keras checks the file's hash (and fetches it again when it is truncated)."""
    wf = t.file
    path = catalog.keras_cache_path(wf.fname)
    entry: dict[str, Any] = {"backbone": t.backbone, "file": wf.fname, "origin": wf.origin, "path": str(path)}
    cached = catalog.is_cached(path)
    if not quiet and not cached:
        print(f"fetching {wf.fname} for {t.backbone} from {wf.origin}", file=sys.stderr)
    alpha = ["--alpha", str(t.alpha)] if t.alpha is not None else []
    rc, reply = common.worker_job("weights-fetch", t.backbone, str(t.image_size[0]), str(t.image_size[1]), *alpha)
    if rc == 0 and "path" in reply:
        entry["state"], entry["path"] = "verified" if cached else "fetched", reply["path"]
    else:
        entry["state"] = "failed"
        entry["error"] = reply.get("error") or f"weights-fetch exited {rc}"
    return entry


def cmd_fetch(args: argparse.Namespace) -> int:
    todo = targets(args)
    results = [fetch_one(t, args.json) for t in todo]
    if args.json:
        common.print_json({"weights": results})
    else:
        for t, entry in zip(todo, results, strict=True):
            if entry["state"] == "failed":
                print(f"error: {entry['error']}", file=sys.stderr)
            else:
                print(f"{entry['state']}: {t.backbone} {entry['path']}")
    return 1 if any(e["state"] == "failed" for e in results) else 0


def cmd_ls(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for name, spec in catalog.BACKBONES.items():
        wf = catalog.imagenet_weights(name, (spec.default_size, spec.default_size))
        if wf is None:
            continue
        path = catalog.keras_cache_path(wf.fname)
        cached = catalog.is_cached(path)
        rows.append(
            {
                "backbone": name,
                "file": wf.fname,
                "cached": cached,
                "path": str(path),
                "bytes": path.stat().st_size if cached else None,
                "origin": wf.origin,
            }
        )
    if args.json:
        common.print_json({"cache": str(catalog.keras_cache_path("x").parent), "weights": rows})
        return 0
    print(f"Keras cache: {catalog.keras_cache_path('x').parent}")
    for r in rows:
        state = f"{r['bytes'] / 1e6:7.1f} MB" if r["cached"] else "  missing "
        print(f"  {r['backbone']:<20} {state}  {r['file']}")
    return 0
