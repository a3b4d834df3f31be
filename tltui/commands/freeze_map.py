"""``tltui freeze-map BACKBONE|PRESET|RUN_ID``: what is frozen and what trains, stage by stage.

For a backbone or a preset, the map comes from the pure policy
(:func:`tltui.core.freeze_policy.build_map`) over the backbone's cached description:
no TensorFlow in this process once the description is cached. For a run, it is
the map the worker recorded when it built the model (what actually trained).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from tltui.commands import common
from tltui.core import catalog, descriptions, freeze_policy, preset_head
from tltui.core import formatting as fmt
from tltui.core.errors import CommandError
from tltui.core.workspace import Workspace

BAR_WIDTH = 20
FROZEN_CELL = "█"
TRAINABLE_CELL = "░"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "freeze-map",
        help="show which layers a freeze setting freezes, stage by stage",
        description="Stage by stage (and with --layers, layer by layer): what is frozen and what trains. "
        "REF is a backbone name (e.g. resnet50), a preset (file or name) or a run id (e.g. r0003: the map "
        "that run trained with).",
    )
    p.add_argument("ref", metavar="BACKBONE|PRESET|RUN_ID")
    p.add_argument(
        "--depth",
        type=_depth,
        default=None,
        metavar="D",
        help='stages frozen from the input: 0..N or "all" (default: the preset\'s, else 0)',
    )
    p.add_argument(
        "--batchnorm",
        choices=freeze_policy.BATCHNORM_POLICIES,
        default=None,
        help="BatchNorm policy (default: the preset's, else frozen)",
    )
    p.add_argument(
        "--image-size",
        nargs=2,
        type=_side,
        metavar=("H", "W"),
        help="input size (default: the preset's, else the backbone's ImageNet size)",
    )
    p.add_argument(
        "--classes",
        type=common.positive_int,
        default=None,
        metavar="N",
        help="number of classes, for the head's parameters (default: a folder preset's class count)",
    )
    p.add_argument("--layers", action="store_true", help="list every layer under its stage")
    p.add_argument(
        "--moved",
        action="store_true",
        help="for a run: how far each stage's (with --layers, each layer's) weights moved since the "
        "run started; a frozen layer that moved is an error (exit 1)",
    )
    p.add_argument(
        "--phase",
        type=common.positive_int,
        default=None,
        metavar="N",
        help="a phased run or preset: phase N's map (and with --moved, its record); default: a run's "
        "current or last phase, a preset's [freeze]",
    )
    p.add_argument("--json", action="store_true", help="print the map as one JSON document")
    common.add_set(p)
    p.set_defaults(func=main)


def _depth(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number of stages or "all", got {text!r}') from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {n}")
    return n


def _side(text: str) -> int:
    n = common.positive_int(text)
    if not 8 <= n <= 4096:
        raise argparse.ArgumentTypeError(f"expected 8..4096, got {n}")
    return n


# ---------------------------------------------------------------------------- building the map


def main(args: argparse.Namespace) -> int:
    ws = common.workspace(args)
    notes: list[str] = []
    if args.moved and not re.fullmatch(r"r\d+", args.ref):
        raise CommandError(f"{args.ref}: --moved needs a run id (how far a run's weights moved)")
    if re.fullmatch(r"r\d+", args.ref):
        doc = run_map(ws, args)
        if args.moved:
            if doc.get("moved") is None:
                what = f" of phase {args.phase}" if args.phase else ""
                raise CommandError(
                    f"{doc['run']}: no weights-moved record{what} yet (the worker writes it at each epoch end)"
                )
            if args.json:
                common.print_json(doc)
            else:
                sys.stdout.write("\n".join(render_moved(doc, layers=args.layers)) + "\n")
            return 1 if doc["moved"].get("errors") else 0
    elif catalog.lookup(args.ref) is not None or catalog.is_hub(args.ref):
        doc = backbone_map(ws, args, notes)
    else:
        doc = preset_map(ws, args, notes)
    if args.json:
        common.print_json(doc)
        return 0
    for n in notes:
        print(f"warning: {n}", file=sys.stderr)
    sys.stdout.write("\n".join(render(doc, layers=args.layers)) + "\n")
    return 0


def run_map(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    """The map the worker recorded for a run."""
    if args.depth is not None or args.batchnorm is not None or args.image_size or args.overrides:
        raise CommandError(
            f"{args.ref}: a run's map is what it trained with; --depth/--batchnorm/--image-size/--set "
            "apply to a backbone or preset"
        )
    rec = ws.get(args.ref)
    paths = ws.run_paths(rec.id)
    if args.phase is not None:
        _check_run_phase(rec.id, paths.freeze_map, args.phase)
    path = paths.freeze_map_of(args.phase)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if args.phase is not None:
            raise CommandError(f"{rec.id} ({rec.status}): phase {args.phase} has not started") from None
        raise CommandError(
            f"{rec.id} ({rec.status}) has no freeze map yet: the worker records {path.name} when it builds the model"
        ) from None
    except (OSError, ValueError) as e:
        raise CommandError(f"{path}: unreadable freeze map ({e})") from None
    doc.setdefault("run", rec.id)
    doc["moved"] = paths.read_moved(args.phase)
    return doc


def _check_run_phase(run_id: str, current_map: Path, phase: int) -> None:
    """``--phase N`` names a phase the run has (its latest map says how many)."""
    try:
        latest = json.loads(current_map.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no map yet: the phase's own file decides below
    info = latest.get("phase") if isinstance(latest, dict) else None
    if not isinstance(info, dict):
        raise CommandError(f"{run_id}: --phase: the run does not train in phases")
    if not 1 <= phase <= int(info.get("count") or 0):
        raise CommandError(f"{run_id}: --phase {phase}: the run has phases 1..{info.get('count')}")


def _description(
    ws: Workspace, name: str, image_size: tuple[int, int], alpha: float | None, quiet: bool
) -> dict[str, Any]:
    def tell(msg: str) -> None:
        if not quiet:
            print(msg + " ...", file=sys.stderr, flush=True)

    return descriptions.get(ws.cache_dir, name, image_size, alpha, on_describe=tell)


def _build(
    description: dict[str, Any], depth: int | str, batchnorm: str, classes: int | None, dropout: float
) -> dict[str, Any]:
    last = description["layers"][-1].get("output_shape") or [None]
    features = last[-1] if isinstance(last[-1], int) else None
    head = freeze_policy.standard_head(features, classes, dropout)
    doc = freeze_policy.build_map(description, depth, batchnorm, head_layers=head)
    doc["num_classes"], doc["head_features"] = classes, features
    return doc


def backbone_map(ws: Workspace, args: argparse.Namespace, notes: list[str]) -> dict[str, Any]:
    if args.overrides:
        raise CommandError("--set applies to a preset, not to a backbone name")
    if args.phase is not None:
        raise CommandError("--phase applies to a phased run or preset, not to a backbone name")
    spec = catalog.lookup(args.ref)
    if spec is None:  # a hub: handle
        raise CommandError(
            f"{args.ref}: a TF Hub backbone is one opaque stage; its map exists once a run has built it "
            "(tltui freeze-map RUN_ID)"
        )
    size = tuple(args.image_size) if args.image_size else (spec.default_size, spec.default_size)
    if min(size) < spec.min_size:
        raise CommandError(f"--image-size: {spec.name} needs at least {spec.min_size}x{spec.min_size}")
    description = _description(ws, spec.name, size, None, args.json)  # type: ignore[arg-type]
    depth = 0 if args.depth is None else args.depth
    return _build(description, depth, args.batchnorm or "frozen", args.classes, 0.0)


def preset_map(ws: Workspace, args: argparse.Namespace, notes: list[str]) -> dict[str, Any]:
    from tltui.core import demo, preflight, presets

    path = demo.find_preset(args.ref, ws)  # the head counts the data's classes: the demo by name gets its data
    if not path.exists():
        raise CommandError(
            f"{args.ref}: not a backbone, a preset or a run id (backbones: {', '.join(sorted(catalog.BACKBONES))})"
        )
    preset = presets.load(path, presets.parse_set(args.overrides))
    m, f = preset.model, preset.freeze
    if catalog.is_hub(m.backbone):
        raise CommandError(
            f"{path}: model.backbone is a TF Hub module, one opaque stage; its map exists once a run has built "
            "it (tltui freeze-map RUN_ID)"
        )
    if preset.sweep:
        notes.append(f"{path}: the preset sweeps {', '.join(preset.sweep)}; showing its base values")
    phase_doc = None
    if args.phase is not None:
        phases = preset.phase_presets()
        if not preset.phases:
            raise CommandError(f"{path}: --phase: the preset does not train in phases")
        if args.phase > len(phases):
            raise CommandError(f"{path}: --phase {args.phase}: the preset has phases 1..{len(phases)}")
        f = phases[args.phase - 1].freeze
        phase_doc = {"index": args.phase, "count": len(phases), "name": preset.phases[args.phase - 1].name}
    size = tuple(args.image_size) if args.image_size else tuple(preset.data.image_size)
    description = _description(ws, m.backbone, size, m.alpha, args.json)  # type: ignore[arg-type]
    classes = args.classes if args.classes is not None else preset_head.preset_classes(preset)
    depth = f.depth if args.depth is None else args.depth
    batchnorm = args.batchnorm or f.batchnorm
    try:
        doc = _build(description, depth, batchnorm, classes, m.dropout)
    except freeze_policy.FreezeError as e:  # a depth or policy the preset asked for: say which preset
        raise CommandError(f"{path}: {e}") from None
    doc["preset"] = preset.name
    if phase_doc is not None:
        doc["phase"] = phase_doc
    elif preset.phases:  # the map is [freeze]'s; each phase's depth and what trains, listed under it
        doc["phases"] = preset_head.phase_rows(description, preset, classes, m.dropout)
    effective = preset.model_copy(update={"freeze": presets.FreezeConfig(depth=depth, batchnorm=batchnorm)})
    doc["warnings"] = preflight.recipe_warnings(effective)
    notes.extend(doc["warnings"])
    return doc


# ---------------------------------------------------------------------------- rendering


def bar(frozen: int, total: int, width: int = BAR_WIDTH) -> str:
    """Frozen vs trainable parameters as ``width`` cells (blank when there are none)."""
    if total <= 0:
        return ""
    cells = round(width * frozen / total)
    return FROZEN_CELL * cells + TRAINABLE_CELL * (width - cells)


def layer_state(row: dict[str, Any]) -> str:
    if row.get("bn_inference"):
        return "frozen (BatchNorm inference mode)"
    if row["trainable"]:
        return (
            "trainable (BatchNorm training mode)"
            if row["type"] in ("BatchNormalization", "SyncBatchNormalization")
            else "trainable"
        )
    return "frozen"


def render(doc: dict[str, Any], *, layers: bool = False) -> list[str]:
    """The human-readable map: a header, one line per stage (and its layers), totals."""
    size = doc.get("image_size")
    size_s = f"  {size[0]}x{size[1]}" if size else ""
    src = f"run {doc['run']}: " if doc.get("run") else (f"preset {doc['preset']}: " if doc.get("preset") else "")
    n = doc.get("num_stages")
    depth_s = f"{doc['depth']}" + (f" of {n}" if n is not None else "")
    phase = doc.get("phase")
    phase_s = ""
    if isinstance(phase, dict):  # a phased run's map is its current (or last) phase's
        phase_s = (
            f"  (phase {phase.get('index')}/{phase.get('count')}"
            + (f" {phase['name']}" if phase.get("name") else "")
            + ")"
        )
    out = [
        f"{src}{doc.get('backbone')} ({doc.get('family')}){size_s}  "
        f"freeze.depth = {depth_s}  freeze.batchnorm = {doc.get('batchnorm')}{phase_s}"
    ]
    width = max([len("stage")] + [len(s["name"]) for s in doc["stages"]]) + 2
    head = f"  {'stage':<{width}}{'layers':>6} {'frozen':>6} {'train':>6} {'bn-inf':>6} {'params':>9} {'trainable':>10}  frozen/trainable"
    out.append(head)
    rows_by_stage: dict[str, list[dict[str, Any]]] = {}
    for r in doc["layers"]:
        rows_by_stage.setdefault(r["stage"], []).append(r)
    for s in [*doc["stages"], {**doc["totals"], "name": "total"}]:
        if s["name"] == "total":
            out.append("  " + "-" * (len(head) - 2))
        out.append(
            f"  {s['name']:<{width}}{s['layers']:>6} {s['frozen']:>6} {s['trainable']:>6} "
            f"{s.get('bn_inference', 0):>6} {fmt.params(s['params']):>9} {fmt.params(s['trainable_params']):>10}  "
            f"{bar(s['frozen_params'], s['params'])}"
        )
        if layers and s["name"] != "total":
            for r in rows_by_stage.get(s["name"], []):
                shape = "x".join("?" if d is None else str(d) for d in (r.get("output_shape") or [])[1:])
                out.append(
                    f"      {r['name']:<34} {r['type']:<24} {shape:<14} {fmt.params(r['params']):>9}  {layer_state(r)}"
                )
    t = doc["totals"]
    out.append(
        f"  {fmt.params(t['trainable_params'])} of {fmt.params(t['params'])} parameters train "
        f"({t['trainable']} of {t['layers']} layers trainable, {t.get('bn_inference', 0)} BatchNorm in inference mode)"
    )
    if doc.get("num_classes", 0) is None:  # never "0 of N train" for a frozen backbone whose head trains
        features = doc.get("head_features")
        out.append(
            "  + the head, which trains: "
            + preset_head.head_size_text(features if isinstance(features, int) else None)
            + " (the number of classes is not known here; --classes N counts it)"
        )
    phases = doc.get("phases") or []
    if phases:
        out.append(f"  the map above is [freeze]; the preset trains in {len(phases)} phases (--phase N maps one):")
        out.extend("    " + preset_head.phase_line(row, doc.get("num_classes") is not None) for row in phases)
    out.append(f"  {FROZEN_CELL} frozen  {TRAINABLE_CELL} trainable (share of parameters)")
    return out


def fmt_moved(x: float | None) -> str:
    if x is None:
        return "-"
    return "0" if x == 0 else f"{x:.2e}"


def render_moved(doc: dict[str, Any], *, layers: bool = False) -> list[str]:
    """Per stage: how far the frozen and the trainable layers' weights moved since the run started
    (``||w - w0|| / ||w0||``, the largest of the stage), BatchNorm statistics drift; errors last."""
    moved = doc["moved"]
    stage_of = {r["name"]: r.get("stage", "?") for r in doc.get("layers", [])}
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for r in moved["layers"]:
        by_stage.setdefault(stage_of.get(r["name"], "head"), []).append(r)
    order = [s["name"] for s in doc.get("stages", [])] + [
        s for s in by_stage if s not in {x["name"] for x in doc.get("stages", [])}
    ]
    width = max([len("stage")] + [len(s) for s in order]) + 2
    since = moved.get("since") or "the start of the run"
    if since == "run start":  # records written before version 2
        since = "the start of the run"
    out = [
        f"run {doc.get('run')}: weights moved from {since} to the end of epoch {moved.get('epoch')}, "
        "||w - w0|| / ||w0||, largest per stage"
    ]
    outside = [r["name"] for r in moved["layers"] if r.get("in_graph") is False]
    if moved.get("feature_cache"):
        out.append(
            "  the backbone ran from cached features (feature cache): it was not in the graph that trained; "
            + (
                "measured when the phase ended"
                if moved.get("measured") == "all"
                else f"its {len(outside)} layers are measured when the phase ends"
            )
        )
    out.append(f"  {'stage':<{width}}{'frozen':>7} {'moved':>9} {'train':>7} {'moved':>9} {'bn drift':>9}")

    def top(rows: list[dict[str, Any]], key: str) -> float | None:
        vals = [r[key] for r in rows if r.get(key) is not None]
        return max(vals) if vals else None

    for stage in order:
        rows = by_stage.get(stage, [])
        if not rows:
            continue
        frozen = [r for r in rows if not r["trainable"]]
        train = [r for r in rows if r["trainable"]]
        out.append(
            f"  {stage:<{width}}{len(frozen):>7} {fmt_moved(top(frozen, 'moved')):>9} {len(train):>7} "
            f"{fmt_moved(top(train, 'moved')):>9} {fmt_moved(top(rows, 'bn_drift')):>9}"
        )
        if layers:
            for r in rows:
                bad = "  ERROR: frozen but moved" if r["name"] in moved.get("errors", []) else ""
                state = "trainable" if r["trainable"] else "frozen"
                out.append(
                    f"      {r['name']:<34} {state:<9} {fmt_moved(r['moved']):>9} {fmt_moved(r.get('bn_drift')):>9}{bad}"
                )
    errors = moved.get("errors") or []
    if errors:
        shown = ", ".join(errors[:8]) + (f" and {len(errors) - 8} more" if len(errors) > 8 else "")
        out.append(f"  ERROR: {len(errors)} frozen layer(s) moved: {shown}")
    elif outside:
        out.append(f"  every frozen layer measured reads exactly 0 ({len(outside)} not measured yet)")
    else:
        out.append("  every frozen layer reads exactly 0")
    return out
