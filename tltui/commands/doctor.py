"""``tltui doctor``: what this machine gives a run (GPUs and why TensorFlow may not see them, mixed
precision and XLA per GPU, memory, CPU cores per GPU against the input pipeline's cost, free disk),
one line per problem with what to do. TensorFlow is asked in a worker subprocess
(``python -m tltui.worker doctor``); the findings are :func:`tltui.core.doctor.diagnose`'s."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from tltui.commands import common

#: Seconds the TensorFlow probe may take (its import alone takes a few on a loaded machine).
PROBE_TIMEOUT = 300


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="what this machine gives a run: GPUs, precision, XLA, CPUs per GPU, disk")
    p.add_argument("--json", action="store_true", help="the facts, problems and notes as JSON")
    p.add_argument(
        "--no-tf", action="store_true", help="do not ask TensorFlow (a subprocess of a few seconds): NVML, CPUs, disks"
    )
    p.set_defaults(func=main)


def probe_tf() -> dict:
    """The worker's answer (``ok`` False with the error when it cannot answer)."""
    cmd = [sys.executable, "-m", "tltui.worker", "doctor"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"`{' '.join(cmd)}` did not answer within {PROBE_TIMEOUT} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "error": f"the worker exited with {proc.returncode}: {tail}"}
    return answer if isinstance(answer, dict) else {"ok": False, "error": "the worker's answer is not an object"}


def main(args: argparse.Namespace) -> int:
    from tltui.core import doctor

    ws = common.workspace(args)
    tf = None if args.no_tf else doctor.TfFacts.from_json(probe_tf())
    facts = doctor.gather(ws.root, ws.cache_dir, tf)
    findings = doctor.diagnose(facts)
    problems = [f for f in findings if f.problem]
    if args.json:
        common.print_json(doctor.to_json(facts, findings))
    else:
        for f in findings:
            print(f"problem: {f.text}" if f.problem else f.text)
        print(f"{len(problems)} problem(s)" if problems else "no problems found")
    return 1 if problems else 0
