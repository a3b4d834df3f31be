"""Target 6 (issue 31): a workspace of months costs what its epochs cost, not what its batches cost.

A completed run at real density: 300 epochs x 1,000 batch events (a ~46 MB ``events.jsonl`` of
~300k lines, as the worker writes them at its cap of 10 batch events a second), and a workspace of
200 such runs. The files are generated, nothing trains; the 200 runs' logs are hard links to one
file (readers cannot tell; the disk is spared), each with the summary its worker would have left.

- ``tltui runs show RUN``: wall time and peak RSS of the CLI (a subprocess: ``os.wait4``), with the
  summary; and the first read of a run from before summaries, which folds the log and writes it;
- the app on the 200 runs (on a pty, as :mod:`bench.tui` runs it): first frame, every summary
  installed (the app's CPU goes quiet: no second of it above 3% of a core), its RSS then, and
  opening a run's screen (Enter -> the run screen's footer);
- a chart of 400k points, the size of a run screen panel (53x40 cells) and of the whole terminal:
  a redraw when the whole curve is handed over (min/max per braille
  column), and a live one (a :class:`~tltui.tui.downsample.MinMax` of 400k points, 10 new points
  per redraw); once, for scale, plotext drawing the 400k points itself (the chart before).

W&B's published figures are printed beside them (its terminal viewer: a 100-metric run loads in
0.09 / 0.15 / 0.30 s at 100k / 200k / 400k steps, wandb#12734; a redraw takes ~13 ms, wandb#12527).

``python -m bench.density [--tiny]``
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import PYTHON, Figure, emit, median, run_env, tiny_flag

WANDB_LOAD = "W&B's terminal viewer loads a 100-metric run in 0.09/0.15/0.30 s at 100k/200k/400k steps (wandb#12734)"
WANDB_REDRAW = "W&B's redraws in ~13 ms (wandb#12527)"
PRESET = 'name = "month"\n[data]\nsource = "folder:/x"\n[model]\nbackbone = "resnet50"\n'


def _line(ev: dict) -> str:
    return json.dumps(ev, separators=(",", ":")) + "\n"


def write_events(path: Path, epochs: int, batches: int, t0: float) -> None:
    """A completed run's log as the worker writes it: started, model, per epoch its begin, batch
    events (three running-mean metrics), end (six metrics, lr, seconds), a checkpoint every 5 epochs;
    the test split and the end."""
    rnd = random.Random(31)
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            _line(
                {
                    "type": "started",
                    "t": t0,
                    "pid": 4242,
                    "host": "gpu-box",
                    "devices": ["GPU:0"],
                    "epochs": epochs,
                    "steps_per_epoch": batches,
                    "versions": {"tensorflow": "2.21.0", "keras": "3.15.0"},
                    "restore_best": True,
                }
            )
        )
        f.write(_line({"type": "model", "t": t0 + 5, "total_params": 23_792_612, "trainable_params": 204_900}))
        t = t0 + 10
        for e in range(1, epochs + 1):
            f.write(_line({"type": "epoch_begin", "t": t, "epoch": e}))
            base = 4.6 / (1 + e / 30)
            lines = []
            for s in range(1, batches + 1):
                m = {
                    "loss": round(base * (1 + rnd.gauss(0, 0.05)), 6),
                    "acc": round(min(1.0, 0.9 - base / 6 + rnd.gauss(0, 0.01)), 6),
                    "top5_acc": round(min(1.0, 0.99 - base / 20), 6),
                }
                lines.append(
                    _line(
                        {
                            "type": "batch",
                            "t": round(t + s * 0.1, 3),
                            "epoch": e,
                            "step": s,
                            "steps": batches,
                            "metrics": m,
                        }
                    )
                )
            f.write("".join(lines))
            t += batches * 0.1 + 8
            val = min(0.95, 0.2 + 0.6 * (1 - math.exp(-e / 40)) + rnd.gauss(0, 0.005))
            metrics = {
                "loss": base,
                "acc": 0.9 - base / 6,
                "top5_acc": 0.99 - base / 20,
                "val_loss": base * 1.1,
                "val_acc": val,
                "val_top5_acc": min(0.99, val + 0.2),
            }
            f.write(
                _line(
                    {
                        "type": "epoch_end",
                        "t": t,
                        "epoch": e,
                        "metrics": metrics,
                        "lr": 0.01,
                        "epoch_seconds": batches * 0.1 + 8,
                    }
                )
            )
            if e % 5 == 0:
                f.write(
                    _line({"type": "checkpoint", "t": t + 1, "epoch": e, "path": f"checkpoints/epoch-{e:04d}.keras"})
                )
        f.write(
            _line(
                {
                    "type": "evaluated",
                    "t": t + 20,
                    "split": "test",
                    "examples": 10000,
                    "weights_epoch": epochs,
                    "metrics": {"test_loss": 1.0, "test_acc": 0.7},
                }
            )
        )
        f.write(
            _line(
                {
                    "type": "finished",
                    "t": t + 21,
                    "status": "completed",
                    "epochs_done": epochs,
                    "model_epoch": epochs,
                    "model_rule": "best",
                }
            )
        )


def make_workspace(root: Path, n: int, epochs: int, batches: int) -> list[str]:
    """``n`` completed runs sharing one generated log (hard links); none has a summary yet."""
    from tltui.core.workspace import Workspace

    ws = Workspace(root)
    recs = ws.create_runs(
        [(f"month-run-{i:03d}", PRESET, {}) for i in range(n)], preset_name="month", epochs=[epochs] * n, queued=False
    )
    ids = [r.id for r in recs]
    now = time.time()
    src = root / "events-source.jsonl"
    write_events(src, epochs, batches, now - 30 * 86400)
    for rid in ids:
        os.link(src, ws.run_paths(rid).events)
    with ws.transaction() as c:
        c.executemany(
            "UPDATE runs SET status='completed', started=?, finished=?, epoch=?, best_val_acc=0.5, "
            "best_val_top5_acc=0.7, best_epoch=? WHERE id=?",
            [(now - 30 * 86400, now - 29 * 86400, epochs, epochs, rid) for rid in ids],
        )
    ws.close()
    return ids


#: Runs a command and prints its wall time, peak RSS (kB) and CPU time. The command is forked from
#: this small process, not from the bench: a child forked from a big process (the bench has imported
#: TensorFlow) is charged that process's resident pages until it execs, and ``ru_maxrss`` keeps them.
_MEASURE = (
    "import os, subprocess, sys, time\n"
    "t0 = time.perf_counter()\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, u = os.wait4(p.pid, 0)\n"
    "print(time.perf_counter() - t0, u.ru_maxrss, u.ru_utime + u.ru_stime, os.waitstatus_to_exitcode(status))\n"
)


def cli(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds) of one command (``os.wait4``: that child's own)."""
    proc = subprocess.run([PYTHON, "-c", _MEASURE, *cmd], env=env, capture_output=True, text=True)
    try:
        dt, rss, cpu, code = proc.stdout.split()
    except ValueError:
        code = "-1"
    if proc.returncode or code != "0":
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-1000:]}")
    return float(dt), float(rss) / 1024, float(cpu)


def runs_show(root: Path, ids: list[str], env: dict[str, str], repeat: int, shape: str) -> list[Figure]:
    base = [PYTHON, "-m", "tltui", "--workspace", str(root), "runs", "show"]
    first, first_rss, first_cpu = cli(base + [ids[0]], env)  # no summary yet: folds 300k lines, writes it
    summary = root / "runs" / ids[0] / "events.summary.json"
    if not summary.exists():
        raise RuntimeError("runs show wrote no summary for a finished run")
    for rid in ids[1:]:  # what each run's worker would have left (the same log: the same summary)
        shutil.copyfile(summary, root / "runs" / rid / "events.summary.json")
    walls, rsss, cpus = zip(*(cli(base + [ids[-1]], env) for _ in range(repeat)))
    startup = median([cli([PYTHON, "-c", "pass"], env)[0] for _ in range(repeat)])
    size = (root / "runs" / ids[0] / "events.jsonl").stat().st_size / 1e6
    return [
        Figure(
            "density",
            f"tltui runs show RUN ({shape}), with its summary",
            median(walls),
            "s",
            0.3,
            note=f"CPU time {median(cpus):.3f} s; python start-up alone {startup:.3f} s; {size:.0f} MB "
            f"events.jsonl, {summary.stat().st_size / 1e3:.0f} kB summary; {WANDB_LOAD}",
        ),
        Figure("density", "tltui runs show RUN: peak RSS", median(rsss), "MB", 60.0),
        Figure(
            "density",
            "tltui runs show RUN of a run from before summaries (folds the log once, writes the summary)",
            first,
            "s",
            None,
            note=f"CPU time {first_cpu:.2f} s, peak RSS {first_rss:.0f} MB; once per run",
        ),
    ]


def quiet_since(app, start: float, timeout: float = 120.0, window: float = 1.0, quiet: float = 0.03) -> float:  # noqa: ANN001
    """When the app's CPU went quiet (the start of the first ``window`` using < ``quiet`` of a core)."""
    samples: list[tuple[float, float]] = []
    deadline = start + timeout
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        samples.append((now, app.cpu_seconds()))
        while len(samples) > 1 and samples[1][0] <= now - window:
            samples.pop(0)
        t_old, c_old = samples[0]
        if now - t_old >= window * 0.95 and samples[-1][1] - c_old < quiet * (now - t_old):
            return t_old
        time.sleep(0.05)
    raise RuntimeError(f"the app did not go quiet within {timeout:.0f} s")


def app_figures(root: Path, env: dict[str, str], n: int, shape: str) -> list[Figure]:
    from bench.tui import PtyApp

    app = PtyApp(root, env)
    try:
        t_frame = app.wait_for(b"month-run-", timeout=60)
        if t_frame is None:
            raise RuntimeError("the app showed no run within 60 s: " + app.buf[-500:].decode(errors="replace"))
        cpu_frame = app.cpu_seconds()  # read a moment after the frame: an upper bound of its CPU time
        t_quiet = quiet_since(app, t_frame)
        rss = app.rss_mb()
        start = app.offset()
        t0, cpu0 = time.perf_counter(), app.cpu_seconds()
        os.write(app.master, b"\r")  # the run under the cursor
        t_open = app.wait_for(b"Log-y", start, timeout=30)  # in the run screen's footer only
        if t_open is None:
            raise RuntimeError("the run screen did not open")
        cpu_open = app.cpu_seconds() - cpu0
    finally:
        app.close()
    return [
        Figure(
            "density",
            f"app first frame, {n} runs of {shape}",
            t_frame - app.t0,
            "s",
            1.0,
            note=f"the app's CPU time by then: {cpu_frame:.2f} s",
        ),
        Figure(
            "density",
            f"app: every summary installed, {n} runs",
            max(0.0, t_quiet - app.t0),
            "s",
            5.0,
            note="launch until no second of the app's CPU above 3% of a core",
        ),
        Figure("density", f"app resident memory, {n} runs' summaries installed", rss, "MB", 150.0),
        Figure(
            "density",
            f"app: open a run's screen ({shape})",
            t_open - t0,
            "s",
            0.3,
            note=f"Enter -> its footer drawn; the app's CPU time meanwhile {cpu_open:.3f} s",
        ),
    ]


#: A chart panel of the run screen on a 160x50 terminal (three side by side), and the whole terminal.
PANEL, FULL = (53, 40), (160, 50)


async def _charts(
    points: int, repeat: int, size: tuple[int, int], plain: bool
) -> tuple[float, float, float, float, float | None]:
    """(median redraw with the whole curve handed over, median live redraw, its CPU time, median
    redraw of a 100-point curve: the chart's own floor, plotext on every point) in seconds, for a
    chart of ``size`` cells."""
    from textual.app import App, ComposeResult

    from tltui.tui.downsample import MinMax
    from tltui.tui.widgets.metric_chart import MetricChart, Series

    class ChartApp(App[None]):
        CSS = f"MetricChart {{ width: {size[0]}; height: {size[1]}; }}"

        def compose(self) -> ComposeResult:
            yield MetricChart("loss")

    rnd = random.Random(12527)
    xs = tuple(float(i) for i in range(points))
    ys = tuple(4.0 / (1 + i / 20000) + rnd.gauss(0, 0.05) for i in range(points))
    color = (31, 119, 180)
    app = ChartApp()
    async with app.run_test(size=FULL) as pilot:
        await pilot.pause()
        chart = app.query_one(MetricChart)
        whole = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            chart.show([Series("loss", xs, ys, color)])
            chart.render()
            whole.append(time.perf_counter() - t0)
        acc = MinMax()
        acc.extend(xs, ys)
        live, live_cpu, x = [], [], float(points)
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(10):  # a second of batch events arrived
                acc.append(x, 0.4 + rnd.gauss(0, 0.05))
                x += 1
            pts = acc.points()
            chart.show([Series("loss", tuple(p[0] for p in pts), tuple(p[1] for p in pts), color)])
            chart.render()
            live.append(time.perf_counter() - t0)
            live_cpu.append(time.process_time() - c0)
        small = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            chart.show([Series("loss", xs[:: points // 100], ys[:: points // 100], color)])
            chart.render()
            small.append(time.perf_counter() - t0)
        before = None
        if plain:  # the chart before: plotext drawing every point
            plt = chart.plt
            t0 = time.perf_counter()
            plt.clear_figure()
            plt.plot(list(xs), list(ys), marker="braille")
            plt.plotsize(chart.size.width, chart.size.height)
            plt.build()
            before = time.perf_counter() - t0
    return median(whole), median(live), median(live_cpu), median(small), before


def chart_figures(points: int, repeat: int, plain: bool) -> list[Figure]:
    out = []
    for size, target in ((PANEL, 16.0), (FULL, None)):
        whole, live, live_cpu, small, before = asyncio.run(_charts(points, repeat, size, plain and size == PANEL))
        where = f"{size[0]}x{size[1]} cells" + (" (a run screen panel)" if size == PANEL else " (the whole terminal)")
        out.append(
            Figure(
                "density",
                f"live chart redraw, {points:,} points, {where} (MinMax, 10 new points each)",
                1000 * live,
                "ms",
                target,
                note=f"CPU time {1000 * live_cpu:.1f} ms; the same chart with a 100-point curve: "
                f"{1000 * small:.1f} ms (plotext's canvas)" + (f"; {WANDB_REDRAW}" if target else ""),
            )
        )
        out.append(
            Figure(
                "density",
                f"chart redraw, {points:,} points handed over whole, {where} (min/max per column)",
                1000 * whole,
                "ms",
                None,
                note=f"plotext drawing every point (the chart before): {1000 * before:,.0f} ms" if before else "",
            )
        )
    return out


def run(tiny: bool = False) -> list[Figure]:
    n, epochs, batches = (3, 10, 50) if tiny else (200, 300, 1000)
    out: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="tltui-bench-density-") as d:
        root = Path(d) / "ws"
        ids = make_workspace(root, n, epochs, batches)
        env = run_env(Path(d) / "home")
        shape = f"{epochs} epochs x {batches:,} batch events"
        out += runs_show(root, ids, env, 2 if tiny else 5, shape)
        out += app_figures(root, env, n, shape)
    out += chart_figures(4_000 if tiny else 400_000, repeat=3 if tiny else 30, plain=not tiny)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    emit(run(tiny_flag(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
