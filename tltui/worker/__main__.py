"""``python -m tltui.worker COMMAND ...``: dispatch to the worker's jobs.

Each job module has ``main(argv) -> int``; only the chosen one is imported,
so ``describe`` does not pay for what ``train`` loads and vice versa.
"""

from __future__ import annotations

import importlib
import sys

JOBS = {
    "train": "tltui.worker.train",
    "describe": "tltui.worker.describe",
    "predict": "tltui.worker.predict",
    "cams": "tltui.worker.cam_server",
    "hub-fetch": "tltui.worker.hub",
    "weights-fetch": "tltui.worker.model",
    "data-fetch": "tltui.worker.tfds_fetch",
    "export": "tltui.worker.export",
    "doctor": "tltui.worker.doctor",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in JOBS:
        print(f"usage: python -m tltui.worker {{{'|'.join(JOBS)}}} ...", file=sys.stderr)
        return 2
    mod = importlib.import_module(JOBS[argv[0]])
    return int(mod.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
