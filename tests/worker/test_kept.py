"""KeptWeights: the run's best epoch by val_acc and its weights in the backup folder, written with the
epoch's backup (a hard link when the classifier itself trains), restored by a resume, never torn."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tests.worker.tiny_keras import tiny_data, tiny_model  # noqa: E402
from tltui.worker.backup import BACKUP_META, BACKUP_WEIGHTS, EpochBackup, repair_backup  # noqa: E402
from tltui.worker.kept import KeptWeights  # noqa: E402


def _model(seed: int = 0) -> keras.Model:
    return tiny_model(seed, learning_rate=0.05)


class ScriptedValAcc(keras.callbacks.Callback):
    """Puts a scripted ``val_acc`` in each epoch's logs (before the backup sees them) and records the
    weights each epoch ended with."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = values
        self.weights: dict[int, list[np.ndarray]] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["val_acc"] = self.values[epoch]
        self.weights[epoch + 1] = [np.array(v.numpy()) for v in self.model.weights]


def test_the_best_epoch_is_kept_by_hard_link_and_loads_back(tmp_path: Path) -> None:
    x, y = tiny_data()
    m = _model()
    kept = KeptWeights(tmp_path, m)
    script = ScriptedValAcc([0.2, 0.6, 0.6, 0.4])  # a tie keeps the earlier epoch, as EarlyStopping does
    linked: list[bool] = []  # after each epoch's backup: is the kept file that epoch's backup file itself?

    def same_file(epoch: int, logs: dict | None) -> None:
        linked.append(
            os.path.samefile(tmp_path / BACKUP_WEIGHTS, tmp_path / f"kept-{epoch + 1:04d}.weights.h5")
            if (tmp_path / f"kept-{epoch + 1:04d}.weights.h5").exists()
            else False
        )

    probe = keras.callbacks.LambdaCallback(on_epoch_end=same_file)
    m.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[script, EpochBackup(tmp_path, kept=kept), probe])
    assert linked == [True, True, False, False]  # a hard link: keeping an epoch costs no write
    assert (kept.epoch, kept.value, kept.file) == (2, 0.6, "kept-0002.weights.h5")
    meta = json.loads((tmp_path / BACKUP_META).read_text())
    assert meta["kept"] == {"epoch": 2, "monitor": "val_acc", "value": 0.6, "weights": "kept-0002.weights.h5"}
    assert [p.name for p in tmp_path.glob("kept-*")] == ["kept-0002.weights.h5"]  # epoch 1's was removed

    kept.load_into()
    for a, b in zip(script.weights[2], m.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    assert not np.array_equal(script.weights[2][0], script.weights[4][0])  # it really went back


def test_a_resume_knows_the_kept_epoch_and_replaces_it_only_when_beaten(tmp_path: Path) -> None:
    x, y = tiny_data()
    m = _model()
    kept = KeptWeights(tmp_path, m)
    m.fit(
        x,
        y,
        epochs=2,
        batch_size=8,
        verbose=0,
        callbacks=[ScriptedValAcc([0.5, 0.7]), EpochBackup(tmp_path, kept=kept)],
    )

    m2 = _model(1)
    again = KeptWeights(tmp_path, m2)
    again.restore(json.loads((tmp_path / BACKUP_META).read_text())["kept"])
    assert (again.epoch, again.value) == (2, 0.7)
    script = ScriptedValAcc([0.5, 0.7, 0.65, 0.75, 0.7])
    m2.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[script, EpochBackup(tmp_path, kept=again)])
    assert again.epoch == 4
    # the previous copy (epoch 3) still names epoch 2's file: a resume may fall back to it
    assert sorted(p.name for p in tmp_path.glob("kept-*")) == ["kept-0002.weights.h5", "kept-0004.weights.h5"]
    m2.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[script, EpochBackup(tmp_path, kept=again)])
    assert again.epoch == 4 and [p.name for p in tmp_path.glob("kept-*")] == ["kept-0004.weights.h5"]


def test_a_model_that_is_not_the_classifier_writes_the_classifiers_weights(tmp_path: Path) -> None:
    """The feature cache trains a head model that shares the classifier's head layers: the kept file
    holds the whole classifier (frozen backbone included), not the head's backup."""
    x, y = tiny_data()
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    features = keras.layers.Dense(3, name="backbone_like", trainable=False)(inp)
    head_layer = keras.layers.Dense(2, name="logits")
    classifier = keras.Model(inp, head_layer(features))
    f_in = keras.Input((3,))
    head = keras.Model(f_in, head_layer(f_in))
    head.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    kept = KeptWeights(tmp_path, classifier)
    feats = classifier.get_layer("backbone_like")(x).numpy()
    script = ScriptedValAcc([0.9, 0.1])
    head.fit(feats, y, epochs=2, batch_size=8, verbose=0, callbacks=[script, EpochBackup(tmp_path, kept=kept)])
    assert kept.epoch == 1
    expected = [np.array(w) for w in classifier.get_weights()]
    expected[-2:] = script.weights[1]  # the head as it was after epoch 1
    for w in classifier.weights[-2:]:
        w.assign(np.zeros(w.shape))
    kept.load_into()
    for a, b in zip(expected, classifier.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_backup_whose_kept_file_is_gone_falls_back_to_the_previous_copy(tmp_path: Path) -> None:
    x, y = tiny_data()
    m = _model()
    kept = KeptWeights(tmp_path, m)
    m.fit(
        x,
        y,
        epochs=3,
        batch_size=8,
        verbose=0,
        callbacks=[ScriptedValAcc([0.1, 0.2, 0.3]), EpochBackup(tmp_path, kept=kept)],
    )
    # both copies name their own kept file; the current one's is lost (a kill, a disk error)
    assert json.loads((tmp_path / f"{BACKUP_META}.bkp").read_text())["kept"]["epoch"] == 2
    (tmp_path / "kept-0003.weights.h5").unlink()
    assert repair_backup(tmp_path) == 2
    assert json.loads((tmp_path / BACKUP_META).read_text())["kept"]["weights"] == "kept-0002.weights.h5"
    assert (tmp_path / BACKUP_WEIGHTS).is_file()


def test_epochs_without_val_acc_keep_nothing(tmp_path: Path) -> None:
    x, y = tiny_data()
    m = _model()
    kept = KeptWeights(tmp_path, m)
    m.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[EpochBackup(tmp_path, kept=kept)])
    assert kept.epoch is None and kept.state() is None and not list(tmp_path.glob("kept-*"))
    assert json.loads((tmp_path / BACKUP_META).read_text())["kept"] is None
    for bad in ({"val_acc": float("nan")}, {"val_acc": "x"}, {}):
        assert not kept.improves(bad)
