"""A budgeted sweep's run pauses at its next rung: :class:`RungPause` ends training after that epoch.

The rung (:func:`tltui.core.asha.pause_epoch`) comes from the run's own preset (``[sweep.budget]``, kept
in each run of a budgeted sweep) and from ``rungs.json`` in its folder (how many rungs the runner promoted
it past). The callback goes last, after the backup, the ``epoch_end`` event, the checkpoint and the
TensorBoard scalars of that epoch are written: the run resumes from exactly there when it is promoted.
"""

from __future__ import annotations

from pathlib import Path

import keras

from tltui.core import asha, presets


class RungReached(Exception):
    """Training stopped at a rung: the run is ``paused`` (its backup kept), not failed."""

    def __init__(self, rung: int, epoch: int) -> None:
        super().__init__(f"paused at rung {rung + 1} (epoch {epoch})")
        self.rung, self.epoch = rung, epoch


class RungPause(keras.callbacks.Callback):
    """Raise :class:`RungReached` at the end of epoch ``epoch`` (1-based, counted over all phases)."""

    def __init__(self, rung: int, epoch: int) -> None:
        super().__init__()
        self.rung, self.epoch = rung, epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.epoch:
            raise RungReached(self.rung, self.epoch)


def callbacks(preset: presets.Preset, run_dir: Path, initial_epoch: int) -> list[keras.callbacks.Callback]:
    """``[RungPause]`` when the run has a rung ahead, else none."""
    at = asha.pause_epoch(asha.rungs_of(preset), asha.read_passed(run_dir), initial_epoch)
    return [] if at is None else [RungPause(*at)]
