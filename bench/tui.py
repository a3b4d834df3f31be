"""Target 4: the TUI's cost, measured from outside on a pseudo-terminal.

The app runs as the user runs it (``python -m tltui --workspace W``) on a pty of
160x50; a reader thread timestamps everything it writes. Runs "stream" because this
process appends protocol events to their ``events.jsonl`` while the registry says
``running`` (exactly what the app tails; no TensorFlow, no worker needed).

- first frame: launch -> first appearance of a run's name on the screen, 500 runs;
- idle CPU: the app's CPU time (psutil) over a window while 3 runs stream at the
  real worker's rate (10 batch events/s each, an epoch every 2 s);
- event-to-screen latency: an ``epoch_begin`` written -> its ``N/999`` epoch cell
  on the screen, p95 over many events;
- the same streams with one run's screen open (its live charts), for information;
- memory: RSS once 100 finished 300-epoch runs are loaded (the app folds them in
  the background; measured once its CPU use settles);
- 8 runs at 100 batch events/s each: the app's CPU use meanwhile, and after the
  writers stop, how long until every run's final epoch cell is on the screen (a
  backlog would show as a long drain).

``python -m bench.tui [--tiny]``
"""

from __future__ import annotations

import fcntl
import os
import pty
import random
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from bench import PYTHON, Figure, emit, median, run_env, tiny_flag

COLS, ROWS = 160, 50
EPOCHS = 999  # epoch cells read "N/999": easy to find in the output


class PtyApp:
    """The app on a pseudo-terminal, its output timestamped."""

    def __init__(self, workspace: Path, env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = dict(env, TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(ROWS))
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "tltui", "--workspace", str(workspace)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.buf = bytearray()
        self.marks: list[tuple[int, float]] = []  # (end offset, time)
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            now = time.perf_counter()
            with self.lock:
                self.buf += chunk
                self.marks.append((len(self.buf), now))

    def offset(self) -> int:
        with self.lock:
            return len(self.buf)

    def find(self, marker: bytes, start: int = 0) -> float | None:
        """Time the output first contained ``marker`` after offset ``start`` (None if not yet)."""
        with self.lock:
            i = self.buf.find(marker, start)
            if i < 0:
                return None
            end = i + len(marker)
            for off, t in self.marks:
                if off >= end:
                    return t
        return None

    def wait_for(self, marker: bytes, start: int = 0, timeout: float = 30.0) -> float | None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            t = self.find(marker, start)
            if t is not None:
                return t
            time.sleep(0.005)
        return None

    def cpu_seconds(self) -> float:
        import psutil

        c = psutil.Process(self.proc.pid).cpu_times()
        return c.user + c.system

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 1024**2

    def close(self) -> None:
        try:
            os.write(self.master, b"q")
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self.master)


# --------------------------------------------------------------------------- workspaces and events


def _line(ev: dict) -> str:
    import json

    return json.dumps(ev, separators=(",", ":")) + "\n"


def finished_events(epochs: int, batches_per_epoch: int, t0: float) -> str:
    out = [
        _line({"type": "started", "t": t0, "pid": 1, "epochs": epochs, "devices": ["CPU"]}),
        _line({"type": "model", "t": t0, "total_params": 1000, "trainable_params": 10, "num_classes": 10}),
    ]
    t = t0
    for e in range(1, epochs + 1):
        out.append(_line({"type": "epoch_begin", "t": t, "epoch": e}))
        for s in range(1, batches_per_epoch + 1):
            out.append(
                _line(
                    {
                        "type": "batch",
                        "t": t + s * 0.1,
                        "epoch": e,
                        "step": s,
                        "steps": batches_per_epoch,
                        "metrics": {"loss": 1.0 / e, "acc": 0.5},
                    }
                )
            )
        t += 5.0
        m = {
            "loss": 1.0 / e,
            "acc": 0.5,
            "top5_acc": 0.8,
            "val_loss": 1.1 / e,
            "val_acc": min(0.99, 0.3 + e / 1000),
            "val_top5_acc": 0.9,
        }
        out.append(_line({"type": "epoch_end", "t": t, "epoch": e, "metrics": m, "lr": 0.01, "epoch_seconds": 5.0}))
    out.append(_line({"type": "finished", "t": t, "status": "completed", "epochs_done": epochs}))
    return "".join(out)


def make_workspace(
    root: Path, *, finished: int, epochs: int, batches: int, running: int, name: str = "bench-run"
) -> tuple[list[str], list[str]]:
    """``finished`` completed runs with full event files, ``running`` runs marked running (empty events)."""
    from tltui.core.workspace import Workspace

    ws = Workspace(root)
    preset = 'name = "bench"\n[data]\nsource = "folder:/x"\n[model]\nbackbone = "resnet50"\n'
    n = finished + running
    recs = ws.create_runs(
        [(f"{name}-{i:04d}", preset, {}) for i in range(n)],
        preset_name="bench",
        epochs=[epochs] * finished + [EPOCHS] * running,
        queued=False,
    )
    now = time.time()
    text = finished_events(epochs, batches, now - 86400) if finished else ""
    done = [r.id for r in recs[:finished]]
    live = [r.id for r in recs[finished:]]
    for rid in done:
        ws.run_paths(rid).events.write_text(text)
    with ws.transaction() as c:
        c.executemany(
            "UPDATE runs SET status='completed', started=?, finished=?, epoch=?, best_val_acc=0.6 WHERE id=?",
            [(now - 86400, now - 3600, epochs, rid) for rid in done],
        )
        c.executemany(
            "UPDATE runs SET status='running', started=?, pid=? WHERE id=?", [(now, os.getpid(), rid) for rid in live]
        )
    for rid in live:
        ws.run_paths(rid).events.write_text(
            _line({"type": "started", "t": now, "pid": os.getpid(), "epochs": EPOCHS, "devices": ["CPU"]})
        )
    ws.close()
    return done, live


class Streamer:
    """Appends events to running runs: ``rate`` batch events/s each, a new epoch every ``epoch_every`` s."""

    def __init__(self, root: Path, ids: list[str], rate: float, epoch_every: float = 2.0, first_epoch: int = 100):
        self.files = [open(root / "runs" / rid / "events.jsonl", "a") for rid in ids]  # noqa: SIM115
        self.rate, self.epoch_every = rate, epoch_every
        self.epoch = first_epoch
        self.stop = threading.Event()
        self.sent: list[tuple[int, float]] = []  # (epoch, time written)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Streamer:
        self.thread.start()
        return self

    def new_epoch(self) -> int:
        self.epoch += 1
        t = time.perf_counter()
        for f in self.files:
            f.write(_line({"type": "epoch_begin", "t": time.time(), "epoch": self.epoch}))
            f.flush()
        self.sent.append((self.epoch, t))
        return self.epoch

    def _run(self) -> None:
        step = 0
        period = 1.0 / self.rate if self.rate else 1.0
        next_epoch = time.perf_counter() + self.epoch_every
        next_t = time.perf_counter()
        while not self.stop.is_set():
            now = time.perf_counter()
            if self.epoch_every and now >= next_epoch:
                self.new_epoch()
                next_epoch += self.epoch_every
            if self.rate:
                step += 1
                line = _line(
                    {
                        "type": "batch",
                        "t": time.time(),
                        "epoch": self.epoch,
                        "step": step,
                        "steps": None,
                        "metrics": {"loss": 1.0, "acc": 0.5},
                    }
                )
                for f in self.files:
                    f.write(line)
                    f.flush()
            next_t += period
            time.sleep(max(0.0, next_t - time.perf_counter()))

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for f in self.files:
            f.close()


def epoch_marker(epoch: int) -> bytes:
    return f"{epoch}/{EPOCHS}".encode()


# --------------------------------------------------------------------------- measurements


def first_frame(tmp: Path, env: dict[str, str], n: int) -> tuple[float, float]:
    """(wall seconds, the app's CPU seconds) from launch to the first run row."""
    root = tmp / "ws500"
    make_workspace(root, finished=n, epochs=10, batches=2, running=0)
    app = PtyApp(root, env)
    try:
        t = app.wait_for(b"bench-run-", timeout=60)
        if t is None:
            raise RuntimeError("the app showed no run within 60 s: " + app.buf[-500:].decode(errors="replace"))
        return t - app.t0, app.cpu_seconds()
    finally:
        app.close()


def settle(app: PtyApp, quiet: float = 0.02, timeout: float = 60.0) -> None:
    """Wait until the app uses less than ``quiet`` of a CPU over a second."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        c0 = app.cpu_seconds()
        time.sleep(1.0)
        if app.cpu_seconds() - c0 < quiet:
            return


def launch_with_running(root: Path, env: dict[str, str], running: int = 3) -> tuple[PtyApp, list[str]]:
    """The app on a new workspace of ``running`` running runs, once it shows them."""
    _, live = make_workspace(root, finished=0, epochs=10, batches=1, running=running)
    app = PtyApp(root, env)
    if app.wait_for(b"bench-run-", timeout=60) is None:
        app.close()
        raise RuntimeError("the app did not start: " + app.buf[-500:].decode(errors="replace"))
    return app, live


def streaming(tmp: Path, env: dict[str, str], window: float, events: int) -> tuple[float, float, float]:
    """(idle CPU %, latency p95 s, latency median s) with 3 runs streaming at the worker's rate."""
    root = tmp / "ws3"
    app, live = launch_with_running(root, env)
    streamer = None
    try:
        time.sleep(2.0)
        streamer = Streamer(root, live, rate=10.0, epoch_every=0).start()  # batches only: the worker's cap
        time.sleep(1.0)
        c0, t0 = app.cpu_seconds(), time.perf_counter()
        time.sleep(window)
        cpu = 100.0 * (app.cpu_seconds() - c0) / (time.perf_counter() - t0)
        lat = []
        gaps = random.Random(8)
        for _ in range(events):
            start = app.offset()
            epoch = streamer.new_epoch()
            t_sent = streamer.sent[-1][1]
            t_seen = app.wait_for(epoch_marker(epoch), start, timeout=5.0)
            lat.append((t_seen - t_sent) if t_seen is not None else 5.0)
            # a random gap: a fixed one (after the last event was seen, i.e. right after a
            # poll) samples one phase of the app's timers every time and hides the worst case
            time.sleep(gaps.uniform(0.3, 0.6))
        lat.sort()
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
        return cpu, p95, median(lat)
    finally:
        if streamer:
            streamer.close()
        app.close()


def run_screen(tmp: Path, env: dict[str, str], window: float) -> float:
    """The app's CPU % with one run's screen open (live charts) while 3 runs stream."""
    root = tmp / "ws3run"
    app, live = launch_with_running(root, env)
    streamer = None
    try:
        start = app.offset()
        os.write(app.master, b"\r")  # open the run under the cursor
        if app.wait_for(b"Log-y", start, timeout=30) is None:  # in the run screen's footer only
            raise RuntimeError("the run screen did not open")
        time.sleep(2.0)
        streamer = Streamer(root, live, rate=10.0, epoch_every=10.0).start()
        time.sleep(1.0)
        c0, t0 = app.cpu_seconds(), time.perf_counter()
        time.sleep(window)
        return 100.0 * (app.cpu_seconds() - c0) / (time.perf_counter() - t0)
    finally:
        if streamer:
            streamer.close()
        app.close()


def memory(tmp: Path, env: dict[str, str], runs: int, epochs: int, batches: int) -> float:
    root = tmp / "ws100"
    make_workspace(root, finished=runs, epochs=epochs, batches=batches, running=0)
    app = PtyApp(root, env)
    try:
        if app.wait_for(b"bench-run-", timeout=60) is None:
            raise RuntimeError("the app did not start")
        settle(app)
        return app.rss_mb()
    finally:
        app.close()


def flood(tmp: Path, env: dict[str, str], runs: int, rate: float, seconds: float) -> tuple[float, float]:
    """(app CPU % while ``runs`` runs send ``rate`` batch events/s each, drain seconds after they stop)."""
    root = tmp / "ws8"
    _, live = make_workspace(root, finished=0, epochs=10, batches=1, running=runs)
    app = PtyApp(root, env)
    streamer = None
    try:
        if app.wait_for(b"bench-run-", timeout=60) is None:
            raise RuntimeError("the app did not start")
        time.sleep(2.0)
        streamer = Streamer(root, live, rate=rate, epoch_every=1.0).start()
        time.sleep(1.0)
        c0, t0 = app.cpu_seconds(), time.perf_counter()
        time.sleep(seconds)
        cpu = 100.0 * (app.cpu_seconds() - c0) / (time.perf_counter() - t0)
        streamer.stop.set()
        streamer.thread.join()
        start = app.offset()
        epoch = streamer.new_epoch()
        t_sent = streamer.sent[-1][1]
        t_seen = app.wait_for(epoch_marker(epoch), start, timeout=30.0)
        drain = (t_seen - t_sent) if t_seen is not None else float("inf")
        return cpu, drain
    finally:
        if streamer:
            streamer.close()
        app.close()


def run(tiny: bool = False) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="tltui-bench-tui-") as d:
        tmp = Path(d)
        env = run_env(tmp / "home")
        n500 = 20 if tiny else 500
        ff, ff_cpu = first_frame(tmp, env, n500)
        out = [
            Figure(
                "tui",
                f"first frame with {n500} runs",
                ff,
                "s",
                1.0,
                note=f"launch to first run row on the pty; app CPU time by then {ff_cpu:.2f} s",
            )
        ]
        cpu, p95, med = streaming(tmp, env, window=2.0 if tiny else 15.0, events=3 if tiny else 30)
        out.append(Figure("tui", "CPU with 3 runs streaming (10 batch events/s each)", cpu, "%", 2.0))
        out.append(Figure("tui", "event-to-screen latency p95", p95, "s", 0.3, note=f"median {med:.3f} s"))
        run_cpu = run_screen(tmp, env, window=2.0 if tiny else 30.0)
        out.append(
            Figure(
                "tui",
                "CPU with a run's live charts open, 3 runs streaming (an epoch every 10 s)",
                run_cpu,
                "%",
                None,
                note="no target: three plotext charts rebuilt at most once a second",
            )
        )
        runs, epochs, batches = (5, 20, 2) if tiny else (100, 300, 20)
        rss = memory(tmp, env, runs, epochs, batches)
        out.append(
            Figure(
                "tui",
                f"resident memory, {runs} finished {epochs}-epoch runs loaded",
                rss,
                "MB",
                150.0,
                note=f"{batches} batch events per epoch in each file",
            )
        )
        fr, rate, secs = (2, 20.0, 2.0) if tiny else (8, 100.0, 10.0)
        cpu8, drain = flood(tmp, env, fr, rate, secs)
        out.append(
            Figure(
                "tui",
                f"{fr} runs x {rate:.0f} batch events/s: drain after the writers stop",
                drain,
                "s",
                0.3,
                note=f"app CPU meanwhile {cpu8:.1f}% of one core",
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    emit(run(tiny_flag(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
