"""``python -m bench [NAME ...] [--tiny]``: run the benchmarks (all by default) and print their ratios.

Names: harness, pipeline, folder, feature_cache, tui, workspace, density, gpu_options, export, sweep. Also prints the
machine, versions and load, for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import traceback

from bench import machine, tf_versions

ORDER = [
    "harness",
    "pipeline",
    "folder",
    "feature_cache",
    "tui",
    "workspace",
    "density",
    "gpu_options",
    "export",
    "sweep",
]


def main(argv: list[str]) -> int:
    tiny = "--tiny" in argv
    names = [a for a in argv if not a.startswith("-")] or ORDER
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(ORDER)}", file=sys.stderr)
        return 2
    m = machine()
    print(f"machine: {m['nproc']} CPUs, {m['cpu']}, {m['ram']} RAM, {m['platform']}, Python {m['python']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in tf_versions().items()))
    print("uptime:" + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("up", 1)[-1])
    failed = []
    for name in names:
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"bench.{name}")
            rc = mod.main(["--tiny"] if tiny else [])
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            rc = 1
        if rc:
            failed.append(name)
        print(f"# {name} took {time.perf_counter() - t0:.0f} s", flush=True)
    if failed:
        print(f"error: benchmark(s) failed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
