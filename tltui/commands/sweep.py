"""``tltui sweep show SWEEP [--json]``: what a budgeted sweep's stopper did (``tltui.client.sweeps``)."""

from __future__ import annotations

import argparse

from tltui.commands import common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="a budgeted sweep: rungs, promotions, stops, the leader")
    ss = p.add_subparsers(dest="sweep_command", metavar="ACTION", required=True, parser_class=type(p))
    show = ss.add_parser("show", help="one row per run, one column per rung, epochs spent vs the full sweep")
    show.add_argument("sweep", help="the sweep's id, one of its run ids, or its preset's name (the latest)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    from tltui.client import sweeps

    ws = common.workspace(args)
    view = sweeps.show(ws, args.sweep)
    doc = view.as_dict()
    if args.json:
        common.print_json(doc)
        return 0
    print(f"sweep {view.key} ({view.preset}): {view.metric} ({view.mode}), eta {view.eta}, {view.rungs_text()}")
    # one column per rung of the run with the most (by number: a run's epoch at a rung is in the header)
    head = ["run", "status", *[f"rung {i + 1}" for i in range(len(view.rungs))], "final", "epochs", "name"]
    table = [head]
    for r in view.rows:
        cells = {c["rung"]: f"{_num(c['value'])}{c['mark']}" for c in r.rungs}
        lead = "*" if r.id == view.leader else ""
        table.append(
            [
                r.id + lead,
                r.state or r.status,
                *[cells.get(i + 1, "") for i in range(len(view.rungs))],
                _num(r.final),
                f"{r.epochs}/{r.full_epochs}",
                r.name,
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    pct = 100 * view.epochs / view.full_epochs if view.full_epochs else 0.0
    print(
        f"epochs {view.epochs} of {view.full_epochs} for the full sweep ({pct:.0f}%); "
        f"{doc['hours']:.2f} h spent ({doc['gpu_hours']:.2f} GPU-h), the full sweep ~{doc['full_hours_estimate']:.2f} h"
    )
    print(f"leader: {view.leader or '-'}   (+ promoted past the rung, x stopped there, = waiting there)")
    return 0


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"
