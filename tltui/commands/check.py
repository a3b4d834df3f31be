"""``tltui check PRESET``: validate a preset (and the workspace's ``settings.toml``, which
``queue add`` reads) and print the runs its sweep expands to (and, for a preset with
``[[phases]]``, each phase with what it freezes)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tltui.commands import common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="validate a preset and list the runs it expands to")
    p.add_argument("preset", help="preset file, or the name of a shipped/workspace preset")
    common.add_set(p)
    p.add_argument("--json", action="store_true", help='print {"runs": [...]} as JSON')
    p.add_argument(
        "--executor",
        help="where the runs would go (default: the workspace's); a cluster is asked whether it has the GPUs",
    )
    p.add_argument(
        "--params",
        action="store_true",
        help="phases: count the backbone parameters each phase freezes, describing the backbone first "
        "if it is not cached yet (a TensorFlow subprocess, seconds; cached in the workspace)",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tltui.core import preflight, presets
    from tltui.core.settings import Settings
    from tltui.runner.executor import EXECUTORS, capacity_warnings
    from tltui.runner.executors import default_executor

    ws = common.workspace(args)
    path, preset = common.load_preset(args, ws)
    overrides = presets.parse_set(getattr(args, "overrides", []) or [])
    report = preflight.require(preset, str(path), ws, overrides)
    settings = Settings.load(ws)
    EXECUTORS.check_settings(settings)  # `queue add` refuses a bad settings.toml: say so here too
    runs = presets.expand(preset)
    executor = getattr(args, "executor", None) or default_executor(ws, settings)
    report.warnings.extend(capacity_warnings(ws, executor, (r.preset.train.gpus for r in runs)))
    budget = budget_text([r.preset for r in runs])
    rungs = run_rungs([r.preset for r in runs]) if budget else []
    differ = len({tuple(e) for e in rungs}) > 1
    notes: list[str] = []
    phases = (
        {r.name: phase_rows(ws, r.preset, notes, quiet=args.json, describe=args.params) for r in runs}
        if preset.phases
        else {}
    )
    if args.json:
        common.print_json(
            {
                "preset": preset.name,
                "runs": [
                    {
                        "name": r.name,
                        "overrides": r.overrides,
                        **({"rungs": rungs[i]} if budget else {}),
                        **({"phases": phases[r.name]} if phases else {}),
                    }
                    for i, r in enumerate(runs)
                ],
                "warnings": report.warnings,
                **({"budget": budget} if budget else {}),
                **({"notes": notes} if notes else {}),
            }
        )
        return 0
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    print(f"{path}: ok, {len(runs)} run{'s' if len(runs) != 1 else ''}")
    if budget:
        print(f"  {budget}")
    for i, r in enumerate(runs):
        ov = " ".join(f"{k}={v!r}" for k, v in r.overrides.items())
        at = f"    pauses at epochs {', '.join(map(str, rungs[i]))} of {r.preset.total_epochs}" if differ else ""
        print(f"  {r.name}" + (f"    {ov}" if ov else "") + at)
        for row in phases.get(r.name, []):
            print(f"    phase {row['label']}: {phase_text(row)}")
    return 0


def run_rungs(runs: list[Any]) -> list[list[int]]:
    """Each run's rung epochs (the runs' epochs, or their phases, may differ)."""
    from tltui.core import asha

    return [asha.rungs_of(p) for p in runs]


def budget_text(runs: list[Any]) -> str | None:
    """A budgeted sweep's rungs in one line (``None`` without ``[sweep.budget]``); when the runs' rungs
    differ, the line says so and each run's line says its own."""
    b = runs[0].sweep_space.budget
    if b is None:
        return None
    each = {tuple(e) for e in run_rungs(runs)}
    if len(each) == 1:
        last = ", ".join(map(str, sorted({p.total_epochs for p in runs})))
        where = f"each run pauses at epochs {', '.join(map(str, next(iter(each))))} of {last}"
    else:
        where = "the runs pause at different epochs (each run's line says where)"
    how = "max" if b.maximize else "min"
    return f"budget: {b.metric} ({how}), eta {b.eta}: {where}; the top 1/{b.eta} of the runs at a rung go on (the queue runner decides)"


def phase_rows(ws: Any, preset: Any, notes: list[str], *, quiet: bool, describe: bool = False) -> list[dict[str, Any]]:
    """One row per phase: its training settings and (from the backbone's description: the cached
    one, or with ``describe`` a new one) the backbone parameters it freezes and trains."""
    from tltui.core import catalog, descriptions, freeze_policy

    description = None
    m = preset.model
    size = tuple(preset.data.image_size)
    if catalog.is_hub(m.backbone):
        if "hub" not in " ".join(notes):
            notes.append("a TF Hub backbone is one opaque stage: its parameter counts are known once a run built it")
    elif describe:
        try:
            description = descriptions.get(
                ws.cache_dir,
                m.backbone,
                size,
                m.alpha,
                on_describe=None if quiet else (lambda msg: print(msg + " ...", file=sys.stderr, flush=True)),
            )
        except descriptions.DescriptionError as e:
            notes.append(f"parameter counts unavailable: {e}")
    else:
        description = descriptions.load_cached(descriptions.cache_path(ws.cache_dir, m.backbone, size, m.alpha))
        note = (
            f"{m.backbone} at {size[0]}x{size[1]} is not described yet: `tltui check --params` counts the "
            "parameters each phase freezes (describes the backbone once, cached)"
        )
        if description is None and note not in notes:
            notes.append(note)
    rows = []
    for i, p in enumerate(preset.phase_presets()):
        t, f = p.train, p.freeze
        row: dict[str, Any] = {
            "phase": i + 1,
            "label": preset.phase_label(i),
            "name": preset.phases[i].name,
            "epochs": t.epochs,
            "optimizer": t.optimizer,
            "learning_rate": t.learning_rate,
            "lr_schedule": t.lr_schedule,
            "early_stopping_patience": t.early_stopping_patience,
            "depth": f.depth,
            "batchnorm": f.batchnorm,
            "frozen_params": None,
            "trainable_params": None,
        }
        if description is not None:
            totals = freeze_policy.build_map(description, f.depth, f.batchnorm)["totals"]
            row["frozen_params"], row["trainable_params"] = totals["frozen_params"], totals["trainable_params"]
        rows.append(row)
    return rows


def phase_text(row: dict[str, Any]) -> str:
    from tltui.core import formatting as fmt

    es = f", early stopping {row['early_stopping_patience']}" if row["early_stopping_patience"] else ""
    sched = " cosine" if row["lr_schedule"] == "cosine" else ""
    text = (
        f"{row['epochs']} epochs, {row['optimizer']} lr {row['learning_rate']:g}{sched}{es}; "
        f"freeze {row['depth']} (BatchNorm {row['batchnorm']})"
    )
    if row["frozen_params"] is not None:
        text += (
            f"; backbone {fmt.params(row['frozen_params'])} frozen / "
            f"{fmt.params(row['trainable_params'])} trainable params (+ the head)"
        )
    return text
