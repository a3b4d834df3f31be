"""How a training run that raised ends: cancelled (a stop request) or failed with one line the user
can act on (``Finished.reason``). The traceback goes to ``worker.log``; the reason never holds one.

This module does not import TensorFlow: a TensorFlow error can only have happened once it is loaded,
so it is looked for only then. The control-flow signals are imported where they are checked, because
their modules load Keras.
"""

from __future__ import annotations

import errno
import os
import re
import sys

from tltui.core.errors import PresetError, TltuiError
from tltui.worker.errors import TrainError


def is_stop(e: BaseException) -> bool:
    """A stop request (SIGTERM/SIGINT at a batch end or while data was prepared): the run is cancelled."""
    from tltui.worker.event_stream import StopRequested
    from tltui.worker.tfds_fetch import Stopped

    return isinstance(e, StopRequested | KeyboardInterrupt | Stopped)


def failure_reason(e: BaseException, *, batch_size: int, epoch: int, run_dir: str | os.PathLike[str]) -> str:
    """The one-line reason of a failed run. ``batch_size``: the preset's (0 before it was read);
    ``epoch``: the epoch training was in (0 outside training); ``run_dir``: names a full disk when the
    error does not say which file."""
    from tltui.worker.checkpoint import DiskFull, disk_full_reason
    from tltui.worker.event_stream import NaNLoss

    if isinstance(e, NaNLoss | TrainError | DiskFull):
        return str(e)
    if isinstance(e, PresetError):
        return str(e.issues[0]) if e.issues else str(e)
    if _is_user_error(e):
        return str(e)
    if _is_oom(e):
        return (
            f"out of memory at batch size {batch_size}: try {max(1, batch_size // 2)} (data.batch_size) "
            "or a smaller data.image_size"
        )
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return disk_full_reason(e.filename or os.path.join(run_dir, "?"))
    if (op_reason := _op_error_reason(e, epoch)) is not None:
        return op_reason
    first = (str(e).strip().splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {first} (traceback in worker.log)"


def _is_user_error(e: BaseException) -> bool:
    """A failure the user can fix: its message is the run's reason as it is."""
    return isinstance(e, TltuiError)


def _is_oom(e: BaseException) -> bool:
    if "tensorflow" not in sys.modules:
        return isinstance(e, MemoryError)
    import tensorflow as tf

    return isinstance(e, tf.errors.ResourceExhaustedError | MemoryError)


def _op_error_reason(e: BaseException, epoch: int) -> str | None:
    """A one-line reason for a TensorFlow runtime error while training: a lost GPU, a failing input pipeline."""
    if "tensorflow" not in sys.modules:
        return None
    import tensorflow as tf

    if not isinstance(e, tf.errors.OpError):
        return None
    msg = e.message or str(e)
    where = f" in epoch {epoch}" if epoch else ""
    detail = _error_detail(msg)
    if re.search(r"CUDA|cuDNN|cuBLAS|\bGPU\b|NCCL", msg):
        return f"the GPU failed{where} ({detail}): check it with nvidia-smi, then resume the run (checkpoints kept)"
    if "Iterator" in msg or "PyFunc" in msg or "EagerPyFunc" in msg:
        return (
            f"reading the training data failed{where} ({detail}): check the files of data.source, then resume the run"
        )
    return None


def _error_detail(msg: str) -> str:
    """The informative line of a TensorFlow error message (the Python exception, else the first real line)."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    noise = (
        "Graph execution error",
        "Detected at node",
        "Traceback",
        "File ",
        "[[{{",
        "Stack trace",
        "Error in user-defined",
    )
    useful = [ln for ln in lines if not ln.startswith(noise)]
    exc = [ln for ln in useful if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln)]
    return ((exc or useful or [msg.strip()])[-1 if exc else 0])[:200]
