"""TensorBoard's epoch scalars, written by :class:`EpochScalars`."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from tltui.worker.event_stream import current_lr


class EpochScalars(keras.callbacks.Callback):
    """What ``keras.callbacks.TensorBoard(write_graph=False)`` writes by default, for less: the epoch
    scalars (``epoch_loss``, ``epoch_acc``, ..., ``epoch_learning_rate``) in ``LOG_DIR/train`` and
    ``LOG_DIR/validation``, step = epoch index. Keras's callback also has a per-batch hook (which makes
    fit convert every batch's logs and call ``tf.summary.scalar`` for each, recording nothing at
    ``update_freq="epoch"``); this one has none."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers: dict[str, object] = {}

    def _writer(self, name: str) -> object:
        if name not in self._writers:
            import tensorflow as tf

            self._writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self._writers[name]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import tensorflow as tf

        logs = dict(logs or {})
        lr = current_lr(self.model)
        if lr is not None:
            logs["learning_rate"] = lr
        for name, keys in (
            ("train", [k for k in logs if not k.startswith("val_")]),
            ("validation", [k for k in logs if k.startswith("val_")]),
        ):
            if not keys:
                continue
            w = self._writer(name)
            with w.as_default():  # type: ignore[attr-defined]
                for k in keys:
                    tf.summary.scalar(f"epoch_{k.removeprefix('val_')}", float(logs[k]), step=epoch)
            w.flush()  # type: ignore[attr-defined]

    def on_train_end(self, logs: dict | None = None) -> None:
        for w in self._writers.values():
            w.close()  # type: ignore[attr-defined]
        self._writers.clear()
