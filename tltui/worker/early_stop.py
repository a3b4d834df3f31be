"""Early stopping whose state survives a resume."""

from __future__ import annotations

import keras


class EarlyStop(keras.callbacks.EarlyStopping):
    """``keras.callbacks.EarlyStopping`` whose state survives a resume: :class:`EpochBackup` saves
    :meth:`state` (best value, patience count, best epoch) and the best weights with every backup
    and hands them back to :meth:`restore` after ``on_train_begin`` has reset them. Put it before
    :class:`EpochBackup` in the callbacks, so an epoch's backup holds that epoch's decision.

    The best weights are restored only when early stopping ended the phase: Keras 3's ``on_train_end``
    restores them whenever it has them, stopped or not, which would hand a run that trained all its
    epochs its best epoch instead of its last (``train.restore_best = false``, the next phase's start)."""

    def state(self) -> dict:
        best = self.best
        return {
            "best": None if best is None else float(best),
            "wait": int(self.wait),
            "best_epoch": int(self.best_epoch),
            "stopped_epoch": int(self.stopped_epoch),
        }

    def restore(self, state: dict, best_weights: list | None) -> None:
        if state.get("best") is not None:
            self.best = float(state["best"])
        self.wait = int(state.get("wait", 0))
        self.best_epoch = int(state.get("best_epoch", 0))
        self.stopped_epoch = int(state.get("stopped_epoch", 0))
        if best_weights is not None:
            self.best_weights = best_weights

    def on_train_end(self, logs=None) -> None:
        if self.stopped_epoch > 0:
            super().on_train_end(logs)

    @property
    def kept_epoch(self) -> int | None:
        """The (1-based) epoch whose weights ``on_train_end`` restores, if any: the best epoch, when early
        stopping ended the phase."""
        stopped = self.stopped_epoch > 0
        return self.best_epoch + 1 if stopped and self.restore_best_weights and self.best_weights is not None else None
