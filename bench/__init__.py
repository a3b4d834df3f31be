"""Side-by-side benchmarks for tltui: ``python -m bench`` runs them all.

Each module measures two things in the same process run (interleaved where it
matters) and prints their ratio next to its target, e.g.::

    harness: tltui epoch 2.41 s vs bare model.fit 2.38 s -> ratio 1.013 (target <= 1.03) OK

Every module has ``main(argv) -> int`` and a ``--tiny`` mode (seconds, no
meaningful figures) that ``tests/test_bench_smoke.py`` runs. Benchmarks never
assert on time; the exit code is 0 even when a target is missed (the line says
MISS), nonzero only when a benchmark could not run.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@dataclass
class Result:
    """One benchmark figure: ``a`` vs ``b`` and their ratio against a target."""

    bench: str
    what: str
    a_label: str
    a: float
    b_label: str
    b: float
    unit: str
    target: str  # e.g. "<= 1.03", ">= 10"
    note: str = ""
    load: str = field(default_factory=lambda: load_average())

    @property
    def ratio(self) -> float:
        return self.a / self.b if self.b else float("inf")

    @property
    def ok(self) -> bool | None:
        op, _, num = self.target.partition(" ")
        try:
            limit = float(num)
        except ValueError:
            return None
        return self.ratio <= limit if op == "<=" else self.ratio >= limit

    def line(self) -> str:
        verdict = {True: "OK", False: "MISS", None: ""}[self.ok]
        text = (
            f"{self.bench}: {self.what}: {self.a_label} {fmt(self.a)} {self.unit} vs {self.b_label} "
            f"{fmt(self.b)} {self.unit} -> ratio {self.ratio:.3f} (target {self.target}) {verdict}"
        ).rstrip()
        if self.note:
            text += f" [{self.note}]"
        return text + f" (load {self.load})"


@dataclass
class Figure:
    """A single measurement against an absolute target (TUI, workspace)."""

    bench: str
    what: str
    value: float
    unit: str
    target: float | None  # the value must be <= target (None: informational)
    note: str = ""
    load: str = field(default_factory=lambda: load_average())

    @property
    def ok(self) -> bool | None:
        return None if self.target is None else self.value <= self.target

    @property
    def ratio(self) -> float | None:
        return None if not self.target else self.value / self.target

    def line(self) -> str:
        verdict = {True: "OK", False: "MISS", None: ""}[self.ok]
        tgt = f" (target <= {fmt(self.target)} {self.unit}, ratio to target {self.ratio:.3f})" if self.target else ""
        text = f"{self.bench}: {self.what}: {fmt(self.value)} {self.unit}{tgt} {verdict}".rstrip()
        if self.note:
            text += f" [{self.note}]"
        return text + f" (load {self.load})"


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.4f}"


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def machine() -> dict[str, str]:
    """nproc, CPU model, RAM, versions: the header of docs/benchmarks.md."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def tf_versions() -> dict[str, str]:
    out = {}
    for mod in ("tensorflow", "keras", "textual"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            out[mod] = "?"
    return out


def tiny_flag(argv: Sequence[str] | None) -> bool:
    return "--tiny" in (argv or [])


def emit(results: Sequence[Result | Figure]) -> None:
    for r in results:
        print(r.line(), flush=True)


def run_env(home: Path | None = None) -> dict[str, str]:
    """Environment for subprocesses: this repo importable, quiet TF, an own workspace."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if home is not None:
        env["TLTUI_HOME"] = str(home)
    return env


def timed_run(
    cmd: Sequence[str], env: dict[str, str] | None = None, **kw: object
) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), env=env, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - t0, proc


DEMO = REPO / "tltui" / "presets" / "demo.toml"


def preset_file(tiny: bool, tmp: Path) -> Path:
    """The demo preset, or for tiny modes a copy without the MobileNet-only ``alpha`` (the test backbone has none)."""
    if not tiny:
        return DEMO
    out = Path(tmp) / "tiny.toml"
    text = DEMO.read_text().replace("alpha = 0.35", "")
    out.write_text(text)
    return out
