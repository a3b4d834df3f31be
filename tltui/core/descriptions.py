"""Backbone descriptions, cached in the workspace so freeze maps need no TensorFlow.

A description (layers, stages, input layers; see ``tltui/worker/describe.py``)
depends on the backbone, its input size and width multiplier only. The first
request runs ``python -m tltui.worker describe`` once (a few seconds); later
ones read ``<workspace>/cache/backbones/<name>-<h>x<w>.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tltui.core import catalog
from tltui.core.errors import TltuiError
from tltui.core.freeze_policy import DESCRIPTION_VERSION
from tltui.core.stages import HUB_STAGE

DESCRIBE_TIMEOUT_S = 900


class DescriptionError(TltuiError):
    """A description that could not be made or read (one line)."""


def cache_path(cache_dir: Path, name: str, image_size: tuple[int, int], alpha: float | None = None) -> Path:
    a = f"-a{alpha:g}" if alpha is not None else ""
    return cache_dir / "backbones" / f"{name}{a}-{image_size[0]}x{image_size[1]}.json"


def load_cached(path: Path) -> dict[str, Any] | None:
    """The cached description, or ``None`` if missing, unreadable or from an older format."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("version") != DESCRIPTION_VERSION or "layers" not in doc:
        return None
    return doc


def describe_command(name: str, image_size: tuple[int, int], alpha: float | None, out: Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "tltui.worker",
        "describe",
        name,
        "--image-size",
        str(image_size[0]),
        str(image_size[1]),
        "--out",
        str(out),
    ]
    if alpha is not None:
        cmd += ["--alpha", f"{alpha:g}"]
    return cmd


def get(
    cache_dir: Path,
    name: str,
    image_size: tuple[int, int],
    alpha: float | None = None,
    *,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    on_describe: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The description of a backbone, from the cache or made by a worker subprocess.

    ``on_describe`` is told before the (slow) worker starts, so a caller can say why
    it waits. Raises :class:`DescriptionError` with the worker's last error line.
    """
    if catalog.is_hub(name):
        raise DescriptionError(
            f"{name}: a TF Hub backbone is one opaque stage ({HUB_STAGE}); "
            "its freeze map exists once a run has built it (tltui freeze-map RUN_ID)"
        )
    if catalog.lookup(name) is None:
        raise DescriptionError(f"unknown backbone {name!r}; known: {', '.join(sorted(catalog.BACKBONES))}")
    path = cache_path(cache_dir, name, image_size, alpha)
    doc = load_cached(path)
    if doc is not None:
        return doc
    if on_describe is not None:
        on_describe(f"describing {name} at {image_size[0]}x{image_size[1]} (once; cached in {path.parent})")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # On a GPU box the description needs no accelerator: keep the worker off the GPUs.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        proc = run(
            describe_command(name, image_size, alpha, path),
            env=env,
            capture_output=True,
            text=True,
            timeout=DESCRIBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DescriptionError(f"could not describe {name}: {e}") from None
    if proc.returncode != 0:
        lines = [l for l in (proc.stderr or "").splitlines() if l.strip()]
        why = lines[-1].removeprefix("error: ") if lines else f"worker exited with {proc.returncode}"
        raise DescriptionError(f"could not describe {name}: {why}")
    doc = load_cached(path)
    if doc is None:
        raise DescriptionError(f"could not describe {name}: the worker wrote no description to {path}")
    return doc
