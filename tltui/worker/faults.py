"""Test-only fault injection for the training worker (``tests/reliability/``). Inert unless asked.

A fault is asked for with ``RUN_DIR/fault.json`` (``{"fault": "oom@epoch2,batch1"}``, so each
run of one queue can have its own) or, for every run of a process, the ``TLTUI_FAULT``
environment variable (the file wins). Nothing here runs otherwise: :func:`active` returns
``None``, :func:`wrap_dataset` returns the dataset unchanged and :func:`callbacks` an empty list.

Spec: ``KIND@WHERE`` with WHERE ``epochE[,batchB]`` (batch 1 if left out) or ``checkpoint[E]``
(any checkpoint if E is left out)::

    oom@epoch2,batch1        tf.errors.ResourceExhaustedError at that batch end
    gpu_lost@epoch1,batch2   tf.errors.InternalError("CUDA_ERROR_LAUNCH_FAILED ...") at that batch end
    inf@epoch1,batch1        the batch's loss becomes +inf (as a diverging run would report it)
    dataset@epoch2,batch3    the input pipeline raises while producing that batch (from tf.data)
    enospc@checkpoint2       the checkpoint write fails half way with OSError(ENOSPC)
    hang@checkpoint2         the checkpoint write stops half way and waits (to be SIGKILLed);
                             ``RUN_DIR/fault.hit`` appears when it is there; training waits too,
                             at the start of the next epoch
    hang@epoch2,batch1       waits at that batch end, after touching ``RUN_DIR/fault.hit``

Batches count from 1 in each epoch; epochs from 1, as in the events.

Not a fault, but a test hook of the same kind: ``TLTUI_TEST_CPU_DEVICES=N`` splits the CPU into N
logical devices that :func:`tltui.worker.devices.setup_devices` uses as ``train.gpus`` GPUs
(MirroredStrategy over them): the multi-GPU code paths on a machine without GPUs.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tltui.worker.archive import ArchivePlan

ENV = "TLTUI_FAULT"
FILE = "fault.json"
HIT = "fault.hit"
KINDS = ("oom", "gpu_lost", "inf", "dataset", "enospc", "hang")
CPU_DEVICES_ENV = "TLTUI_TEST_CPU_DEVICES"

_SPEC = re.compile(r"^(?P<kind>[a-z_]+)@(?:epoch(?P<epoch>\d+)(?:,batch(?P<batch>\d+))?|checkpoint(?P<ckpt>\d*))$")


@dataclass(frozen=True)
class Fault:
    kind: str
    epoch: int | None = None  # for batch faults
    batch: int = 1
    checkpoint: int | None = None  # for checkpoint faults; None with at_checkpoint: any
    at_checkpoint: bool = False

    def matches_batch(self, epoch: int, batch: int) -> bool:
        return not self.at_checkpoint and self.epoch == epoch and self.batch == batch

    def matches_checkpoint(self, epoch: int) -> bool:
        return self.at_checkpoint and self.checkpoint in (None, epoch)


def parse(spec: str) -> Fault:
    m = _SPEC.match(spec.strip())
    if not m or m["kind"] not in KINDS:
        raise ValueError(
            f"{ENV}: cannot read {spec!r}: expected KIND@epochE[,batchB] or KIND@checkpoint[E], KIND one of {KINDS}"
        )
    if m["epoch"] is not None:
        return Fault(m["kind"], epoch=int(m["epoch"]), batch=int(m["batch"] or 1))
    return Fault(m["kind"], checkpoint=int(m["ckpt"]) if m["ckpt"] else None, at_checkpoint=True)


def active(run_dir: Path) -> Fault | None:
    spec = None
    try:
        spec = json.loads((Path(run_dir) / FILE).read_text())["fault"]
    except (OSError, ValueError, KeyError, TypeError):
        spec = os.environ.get(ENV) or None
    return parse(spec) if spec else None


def cpu_devices() -> int:
    """``TLTUI_TEST_CPU_DEVICES`` (0 when unset or not a number): logical CPU devices standing in for GPUs."""
    raw = os.environ.get(CPU_DEVICES_ENV, "").strip()
    return int(raw) if raw.isdigit() else 0


def _hit(run_dir: Path) -> None:
    (Path(run_dir) / HIT).write_text(str(os.getpid()))


def _wait_forever() -> None:
    while True:
        time.sleep(3600)


def wrap_dataset(run_dir: Path, ds: Any, steps: int | None = None, start_epoch: int = 0) -> Any:
    """The training dataset, failing inside tf.data at the ``dataset@`` fault's batch. With
    ``steps`` (per epoch) the batch is found by its position in the stream (tf.data and Keras
    produce batches ahead of the training loop, so the epoch callbacks cannot tell which is which)."""
    fault = active(run_dir)
    if fault is None or fault.kind != "dataset" or ds is None:
        return ds
    import tensorflow as tf

    produced = [0]

    def tick() -> bool:
        produced[0] += 1
        if steps:
            epoch, batch = start_epoch + (produced[0] - 1) // steps + 1, (produced[0] - 1) % steps + 1
        else:
            _STATE["produced"] += 1
            epoch, batch = _STATE["epoch"], _STATE["produced"]
        if fault.matches_batch(epoch, batch):
            raise OSError(errno.EIO, f"injected read error in batch {fault.batch} of epoch {fault.epoch}")
        return True

    def check(x: Any, y: Any) -> Any:
        ok = tf.py_function(tick, [], tf.bool)
        with tf.control_dependencies([ok]):  # x may be (images, draws): the batch of an augmented run
            return tf.nest.map_structure(tf.identity, x), tf.identity(y)

    return ds.map(check)


_STATE = {"epoch": 0, "produced": 0}


def callbacks(run_dir: Path) -> list[Any]:
    """Callbacks to put FIRST in fit's list (an ``inf`` loss must be seen by the event stream)."""
    fault = active(run_dir)
    if fault is None:
        return []
    if fault.kind in ("enospc", "hang") and fault.at_checkpoint:
        _patch_checkpoint_save(Path(run_dir), fault)
    return [_injector(run_dir, fault)]


def _injector(run_dir: Path, fault: Fault) -> Any:
    """The callback that raises (or hangs) at ``fault``'s batch end, and holds training at a hung checkpoint."""
    import keras

    class FaultInjector(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            _STATE["epoch"], _STATE["produced"] = epoch + 1, 0
            if fault.kind == "hang" and fault.at_checkpoint and fault.checkpoint == epoch:
                # The checkpoint of the epoch just ended hangs in its background write: hold training as
                # well, so a kill finds the run right after that epoch, as with a synchronous write.
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if (Path(run_dir) / HIT).exists():
                        _wait_forever()
                    time.sleep(0.01)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if not fault.matches_batch(_STATE["epoch"], batch + 1):
                return
            import tensorflow as tf

            if fault.kind == "oom":
                raise tf.errors.ResourceExhaustedError(
                    None, None, "OOM when allocating tensor with shape[8,16,16,32] (injected)"
                )
            if fault.kind == "gpu_lost":
                raise tf.errors.InternalError(
                    None, None, "CUDA_ERROR_LAUNCH_FAILED: unspecified launch failure (injected: GPU lost)"
                )
            if fault.kind == "inf" and logs is not None:
                logs["loss"] = float("inf")
            if fault.kind == "hang":
                _hit(run_dir)
                _wait_forever()

    return FaultInjector()


def _patch_checkpoint_save(run_dir: Path, fault: Fault) -> None:
    """Make the checkpoint writers (``checkpoint.write_checkpoint``, the background one, and
    ``checkpoint.save_atomic``, for models it cannot write) hit the fault while writing a matching
    checkpoint: the real atomic-write code runs, with a fill that writes half a file and then fails or
    hangs."""
    from tltui.worker import checkpoint as cb

    def torn(tmp: Any) -> None:
        Path(tmp).write_bytes(b"PK\x03\x04" + b"\0" * 4096)  # the start of a zip, torn
        if fault.kind == "hang":
            _hit(run_dir)
            _wait_forever()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    def matches(path: Path) -> bool:
        m = re.match(r"epoch-(\d+)\.keras$", Path(path).name)
        return m is not None and Path(path).parent.name == "checkpoints" and fault.matches_checkpoint(int(m[1]))

    real_save, real_write = cb.save_atomic, cb.write_checkpoint

    def save_atomic(model: Any, path: Path) -> None:
        return cb.write_atomic(path, torn) if matches(path) else real_save(model, path)

    def write_checkpoint(plan: ArchivePlan, path: Path, values: list, config_json: str) -> None:
        return cb.write_atomic(path, torn) if matches(path) else real_write(plan, path, values, config_json)

    cb.save_atomic = save_atomic
    cb.write_checkpoint = write_checkpoint
