"""Target 5: ``tltui runs ls`` with 10,000 runs (<= 0.5 s) and a cached freeze map (<= 0.2 s).

Both are wall times of the real CLI as a subprocess (``python -m tltui ...``), the
median of several calls, printed next to the target. For scale, the same
interpreter's bare start-up (``python -c pass``) is measured side by side.

``python -m bench.workspace [--tiny]``
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import PYTHON, Figure, Result, emit, median, run_env, timed_run, tiny_flag

PRESET = """name = "bench"
[data]
source = "folder:/data/x"
[model]
backbone = "resnet50"
"""


def populate(root: Path, n: int) -> list[str]:
    """A workspace with ``n`` runs: mostly completed with metrics, some failed, some queued."""
    from tltui.core.workspace import Workspace

    ws = Workspace(root)
    ids: list[str] = []
    chunk = 1000
    now = time.time()
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        recs = ws.create_runs(
            [(f"bench-{start + i}", PRESET, {"train.learning_rate": 0.001 * (i % 7 + 1)}) for i in range(k)],
            preset_name="bench",
            epochs=[300] * k,
        )
        ids += [r.id for r in recs]
    with ws.transaction() as c:
        c.executemany(
            "UPDATE runs SET status = ?, started = ?, finished = ?, epoch = ?, best_val_acc = ?, best_epoch = ?, "
            "queue_pos = NULL WHERE id = ?",
            [
                ("completed" if i % 10 else "failed", now - 3600, now - 60, 300, 0.5 + (i % 40) / 100, 250, rid)
                for i, rid in enumerate(ids[: int(n * 0.9)])
            ],
        )
    ws.close()
    return ids


def _freeze_map_doc() -> dict:
    return {
        "backbone": "tiny",
        "family": "tiny",
        "image_size": [32, 32],
        "depth": "all",
        "batchnorm": "frozen",
        "stages": [],
        "layers": [],
        "feature_cache": True,
    }


#: CPU seconds (user + sys) of the last :func:`timed` command, median over its calls.
LAST_CPU: list[float] = [0.0]


def timed(cmd: list[str], env: dict[str, str], repeat: int) -> float:
    """Median wall time of ``cmd``; its median CPU time goes to ``LAST_CPU`` (load-independent-ish)."""
    import resource

    times, cpus = [], []
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        dt, proc = timed_run(cmd, env)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-1000:]}")
        times.append(dt)
        cpus.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
    LAST_CPU[0] = median(cpus)
    return median(times)


def cpu_note() -> str:
    return f"CPU time {LAST_CPU[0]:.3f} s"


def run(tiny: bool = False) -> list[Result | Figure]:
    n = 200 if tiny else 10_000
    repeat = 2 if tiny else 5
    out: list[Result | Figure] = []
    with tempfile.TemporaryDirectory(prefix="tltui-bench-ws-") as tmp:
        root = Path(tmp) / "ws"
        t0 = time.perf_counter()
        ids = populate(root, n)
        made = time.perf_counter() - t0
        env = run_env(root)
        base = [PYTHON, "-m", "tltui", "--workspace", str(root)]
        startup = timed([PYTHON, "-c", "pass"], env, repeat)
        startup_cpu = cpu_note()
        ls = timed(base + ["runs", "ls"], env, repeat)
        out.append(
            Figure(
                "workspace",
                f"tltui runs ls, {n:,} runs",
                ls,
                "s",
                0.5,
                note=f"{cpu_note()}; python start-up alone {startup:.3f} s ({startup_cpu}); "
                f"workspace made in {made:.1f} s",
            )
        )
        ls_json = timed(base + ["runs", "ls", "--json"], env, repeat)
        out.append(Figure("workspace", f"tltui runs ls --json, {n:,} runs", ls_json, "s", 0.5, note=cpu_note()))
        help_t = timed(base + ["--version"], env, repeat)
        out.append(
            Figure(
                "workspace", "tltui --version (CLI start-up: imports every command)", help_t, "s", None, note=cpu_note()
            )
        )
        # a run's recorded map: a JSON read, no TensorFlow
        run_dir = root / "runs" / ids[-1]
        (run_dir / "freeze_map.json").write_text(json.dumps(_freeze_map_doc()))
        rm = timed(base + ["freeze-map", ids[-1], "--json"], env, repeat)
        out.append(Figure("workspace", "tltui freeze-map RUN_ID (recorded map)", rm, "s", 0.2, note=cpu_note()))
        if not tiny:
            first, proc = timed_run(base + ["freeze-map", "resnet50"], env)
            if proc.returncode != 0:
                raise RuntimeError(f"freeze-map resnet50 failed: {proc.stderr[-1000:]}")
            cached = timed(base + ["freeze-map", "resnet50"], env, repeat)
            out.append(
                Figure(
                    "workspace",
                    "tltui freeze-map resnet50, description cached",
                    cached,
                    "s",
                    0.2,
                    note=f"{cpu_note()}; first call (describes the backbone with TensorFlow) {first:.1f} s",
                )
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    emit(run(tiny_flag(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
