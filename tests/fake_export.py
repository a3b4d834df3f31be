"""A scripted stand-in for ``python -m tltui.worker export`` (no TensorFlow), for the client, CLI and app tests.

Same command line as the real worker (``export RUN_DIR --format F [--quantize Q] [--out DIR]
[--max-drop=P] [--command TEXT] --out-fd N``); point ``TLTUI_WORKER_CMD`` at
``[python, tests/fake_export.py]``. It sends progress records, then what ``TLTUI_FAKE_EXPORT`` says:

- ``pass`` (default): a result within the threshold, exit 0
- ``drop``: a result whose top-1 dropped 4 points, ``passed`` false, exit 1
- ``fail``: one error line (a converter that cannot handle the backbone), exit 2
- ``crash``: a traceback on stderr and exit 3, no error line
- ``wait``: after the first progress record, waits for SIGTERM (then exits 143)

``TLTUI_FAKE_EXPORT_ARGV``, when set, is a file the fake writes its arguments to (JSON).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # runnable as a plain script from anywhere
    sys.path.insert(0, str(_REPO))

from tltui.core.export_records import ExportNote, ExportProgress, ExportResult, SplitCheck, encode  # noqa: E402


def result(run_dir: str, fmt: str, quantize: str | None, max_drop: float, drop: bool) -> ExportResult:
    variant = f"{fmt}-{quantize}" if quantize else fmt
    out = f"{run_dir}/exports/{variant}"
    export_top1 = 0.875 if drop else 0.9125
    return ExportResult(
        out=out,
        format=fmt,
        quantize=quantize,
        artifact=f"{out}/model.tflite",
        size_bytes=654_368,
        input_size=[32, 32],
        num_classes=10,
        max_drop=max_drop,
        passed=not drop,
        checks=[
            SplitCheck("validation", "validation", 80, 0.9125, export_top1, 0.95, 0.031, 0.99, 0.9875),
            SplitCheck("test", "test", 100, 0.9, 0.9, 1.0, 0.02, 1.0, 1.0),
        ],
        calibration={"split": "train", "images": 300, "seed": 42} if quantize == "int8" else None,
    )


def main(argv: list[str]) -> int:
    assert argv[0] == "export", argv
    run_dir = argv[1]
    opts: dict[str, str] = {}
    rest = argv[2:]
    while rest:
        key = rest.pop(0)
        if "=" in key:
            key, value = key.split("=", 1)
        else:
            value = rest.pop(0)
        opts[key] = value
    if os.environ.get("TLTUI_FAKE_EXPORT_ARGV"):
        Path(os.environ["TLTUI_FAKE_EXPORT_ARGV"]).write_text(json.dumps(argv))
    out = os.fdopen(int(opts["--out-fd"]), "w", buffering=1)
    mode = os.environ.get("TLTUI_FAKE_EXPORT", "pass")
    fmt, quantize = opts["--format"], opts.get("--quantize")
    if mode == "wait":  # the handler goes in before the first record, which is what the client waits for
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    out.write(encode(ExportProgress("load", f"loading {run_dir}/model.keras")))
    if mode == "wait":
        while True:
            time.sleep(0.05)
    if mode == "crash":
        print("Traceback (most recent call last):\nRuntimeError: the fake worker crashed", file=sys.stderr)
        return 3
    if mode == "fail":
        out.write(
            encode(
                {"type": "error", "message": f"{fmt}: cannot convert tiny_cnn: no LiteRT built-in kernel for Digamma"}
            )
        )
        return 2
    out.write(encode(ExportProgress("convert", f"converting to {fmt}")))
    for done in (40, 80, 180):
        out.write(encode(ExportProgress("verify", "verifying on the validation and test images", done, 180)))
    out.write(encode(ExportNote("warning", "the fake worker measured nothing")))
    drop = mode == "drop"
    out.write(encode(result(run_dir, fmt, quantize, float(opts.get("--max-drop", "1.0")), drop)))
    return 1 if drop else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
