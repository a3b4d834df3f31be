"""What a run computes with on the devices it gets: the precision policy (``train.mixed_precision``),
XLA (``train.jit_compile``) and what ``train.gpus > 1`` requires, each as a pure decision with the reason
a user reads in ``runs show`` and ``tltui doctor``.

No TensorFlow here: the worker passes in what TensorFlow reports
(``tf.config.experimental.get_device_details``: ``{"device_name": ..., "compute_capability": (8, 0)}``),
so the rules are tested with faked device descriptions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Tensor cores with bfloat16 (Ampere and later), with float16 only (Volta, Turing).
BFLOAT16_CC = (8, 0)
FLOAT16_CC = (7, 0)


@dataclass(frozen=True)
class Gpu:
    """One GPU a run uses, as TensorFlow describes it."""

    name: str
    compute_capability: tuple[int, int] | None = None

    @property
    def cc_text(self) -> str:
        cc = self.compute_capability
        return "unknown" if cc is None else f"{cc[0]}.{cc[1]}"


def gpu_from_details(details: Mapping[str, Any], fallback_name: str = "GPU") -> Gpu:
    """A :class:`Gpu` from ``tf.config.experimental.get_device_details(device)`` (keys may be missing)."""
    cc = details.get("compute_capability")
    parsed: tuple[int, int] | None = None
    if isinstance(cc, (tuple, list)) and len(cc) == 2 and all(isinstance(v, int) for v in cc):
        parsed = (int(cc[0]), int(cc[1]))
    return Gpu(str(details.get("device_name") or fallback_name), parsed)


@dataclass(frozen=True)
class Decision:
    """What was chosen (a Keras dtype policy name, or XLA on/off) and why, in one line."""

    value: Any
    why: str


def choose_precision(setting: bool | str, gpus: Sequence[Gpu]) -> Decision:
    """The Keras dtype policy for ``train.mixed_precision`` on ``gpus`` (the GPUs the run uses; none: CPU).

    ``"auto"``: ``mixed_bfloat16`` when every GPU has compute capability >= 8.0, ``mixed_float16`` when
    every GPU has >= 7.0 (float16 tensor cores), else ``float32`` (CPU, older GPUs, unknown ones): the
    weakest GPU decides, since the replicas run one program."""
    if setting is False:
        return Decision("float32", "train.mixed_precision = false")
    if setting is True:
        return Decision("mixed_float16", "train.mixed_precision = true")
    if setting != "auto":
        return Decision(str(setting), f'train.mixed_precision = "{setting}"')
    if not gpus:
        return Decision("float32", "auto: no GPU (mixed precision is slower on a CPU)")
    weakest = min(gpus, key=lambda g: g.compute_capability or (0, 0))
    cc = weakest.compute_capability
    what = f"{weakest.name} (compute capability {weakest.cc_text})"
    if cc is None:
        return Decision("float32", f"auto: {what}: cannot tell its tensor cores")
    if cc >= BFLOAT16_CC:
        return Decision("mixed_bfloat16", f"auto: {what} has bfloat16 tensor cores")
    if cc >= FLOAT16_CC:
        return Decision("mixed_float16", f"auto: {what} has float16 tensor cores, not bfloat16")
    return Decision("float32", f"auto: {what} has no tensor cores")


def explain_jit(setting: bool | str, *, gpus: int, replicas: int, resolved: bool) -> Decision:
    """Why XLA is on or off. ``resolved`` is what Keras made of the setting (``model.jit_compile`` after
    ``compile``: Keras's ``jit_compile="auto"`` rule is XLA when a GPU is present, no tf.distribute
    strategy is active and every layer supports it; ``True`` is dropped for a layer without XLA);
    ``gpus``: the non-CPU devices TensorFlow sees; ``replicas``: the strategy's replicas in sync."""
    if setting is False:
        return Decision(False, "train.jit_compile = false")
    if setting is True:
        if resolved:
            return Decision(True, "train.jit_compile = true")
        return Decision(False, "train.jit_compile = true, but a layer of the model does not support XLA")
    if resolved:
        return Decision(True, 'auto: one GPU (Keras\'s jit_compile = "auto")')
    if not gpus:
        return Decision(False, "auto: no GPU (Keras uses XLA on GPUs only)")
    if replicas > 1:
        return Decision(False, f"auto: {replicas} replicas (Keras turns XLA off under tf.distribute)")
    return Decision(False, "auto: a layer of the model does not support XLA (or op determinism is on)")


def replica_problem(*, batch_size: int, gpus: int, jit_compile: bool | str) -> tuple[str, str] | None:
    """``(field, message)`` when ``train.gpus = gpus`` cannot run these settings, else ``None``. The
    partial last batches are padded by the worker (:mod:`tltui.worker.replicas`); these two it cannot fix."""
    if gpus <= 1:
        return None
    if jit_compile is True:
        return (
            "train.jit_compile",
            f"true cannot run on train.gpus = {gpus}: XLA fails under MirroredStrategy (Keras turns it off "
            'there itself); use "auto" or false',
        )
    if batch_size % gpus:
        lower, upper = batch_size // gpus * gpus, (batch_size // gpus + 1) * gpus
        options = " or ".join(str(b) for b in (lower, upper) if b > 0)
        return (
            "data.batch_size",
            f"{batch_size} does not split evenly over train.gpus = {gpus} (it is the global batch, "
            f"{gpus} equal shares): use {options}",
        )
    return None


def eval_padding(n: int, batch_size: int, replicas: int) -> int:
    """Images the worker adds to the last of ``ceil(n / batch_size)`` evaluation batches so every batch
    splits evenly over ``replicas`` (0 when it already does)."""
    if replicas <= 1 or n <= 0:
        return 0
    last = n % batch_size or batch_size
    return -last % replicas
