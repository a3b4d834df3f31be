"""``python -m tltui.worker doctor``: what this process's TensorFlow sees, as one JSON object on stdout
(``tltui doctor`` reads it; the CLI itself never imports TensorFlow).

``{"ok": true, "version": "2.21.0", "cuda_build": true, "cuda_version": "12.5", "cudnn_version": "9",
"gpus": [{"device_name": "NVIDIA A100-SXM4-80GB", "compute_capability": [8, 0]}]}``; ``{"ok": false,
"error": "..."}`` when TensorFlow does not load. Nothing here initialises a GPU.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def probe() -> dict[str, Any]:
    try:
        import tensorflow as tf
    except Exception as e:  # noqa: BLE001 - a broken install is what doctor reports
        return {"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
    build = dict(tf.sysconfig.get_build_info())
    gpus = []
    for g in tf.config.list_physical_devices("GPU"):
        try:
            details = dict(tf.config.experimental.get_device_details(g))
        except (RuntimeError, ValueError):
            details = {}
        cc = details.get("compute_capability")
        gpus.append(
            {"device_name": details.get("device_name") or g.name, "compute_capability": list(cc) if cc else None}
        )
    return {
        "ok": True,
        "version": tf.__version__,
        "cuda_build": bool(build.get("is_cuda_build")),
        "cuda_version": str(build.get("cuda_version") or ""),
        "cudnn_version": str(build.get("cudnn_version") or ""),
        "gpus": gpus,
    }


def main(argv: list[str]) -> int:
    result = probe()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0
