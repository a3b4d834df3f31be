"""The export's check: the figures of the artifact against the Keras model, the calibration draw, the
batches of a split whatever its form, the note when the data changed since training (no TensorFlow)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tltui.core.export_records import SplitCheck
from tltui.worker import export_check as check


def test_tally_counts_top1_top5_agreement_and_the_largest_difference() -> None:
    rng = np.random.default_rng(0)
    keras = rng.dirichlet(np.ones(8), size=50).astype(np.float32)
    other = keras.copy()
    other[:5] = np.roll(other[:5], 1, axis=1)  # five images change their top-1 (and their whole ranking)
    labels = keras.argmax(1)
    labels[:10] = (labels[:10] + 7) % 8  # ten wrong for Keras
    tally = check.Tally(8)
    tally.add(labels[:20], keras[:20], other[:20])
    tally.add(labels[20:], keras[20:], other[20:])
    c = tally.check("validation", "validation")
    top = lambda p: np.argsort(-p, axis=1, kind="stable")  # noqa: E731
    assert c.images == 50
    assert c.keras_top1 == pytest.approx(40 / 50)
    assert c.export_top1 == pytest.approx((top(other)[:, 0] == labels).mean())
    assert c.keras_top5 == pytest.approx((top(keras)[:, :5] == labels[:, None]).any(1).mean())
    assert c.export_top5 == pytest.approx((top(other)[:, :5] == labels[:, None]).any(1).mean())
    assert c.agreement == pytest.approx((top(keras)[:, 0] == top(other)[:, 0]).mean())
    assert c.max_abs_diff == pytest.approx(float(np.abs(keras - other).max()))
    assert check.Tally(5).check("test", "test").keras_top5 is None  # 5 classes: top-5 n/a


def test_the_calibration_draw_is_the_runs_own_images_the_same_ones_every_time() -> None:
    images = np.arange(40 * 2 * 2 * 3, dtype=np.uint8).reshape(40, 2, 2, 3)
    split = SimpleNamespace(n=40, images=images, labels=np.arange(40), mapped=None, rows=None, stream=None)
    a, la = check.draw(split, 25, seed=7)
    b, lb = check.draw(split, 25, seed=7)
    assert a.shape == (25, 2, 2, 3) and (a == b).all() and (la == lb).all()
    assert (a == images[la]).all()  # each drawn image with its own label
    assert not (check.draw(split, 25, seed=8)[1] == la).all()
    everything, _ = check.draw(split, 300, seed=7)  # fewer images than asked: all of them
    assert sorted(x.tobytes() for x in everything) == sorted(x.tobytes() for x in images)
    mapped = SimpleNamespace(
        n=10, images=None, labels=np.arange(10), mapped=images, rows=np.arange(30, 40), stream=None
    )
    m, ml = check.draw(mapped, 4, seed=1)
    assert (m == images[30 + ml]).all()


def test_uint8_batches_cover_a_split_in_its_order() -> None:
    images = np.arange(10 * 12, dtype=np.uint8).reshape(10, 2, 2, 3)
    mapped = SimpleNamespace(n=7, images=None, labels=np.arange(7), mapped=images, rows=np.arange(3, 10), stream=None)
    got = list(check.uint8_batches(mapped, 3))
    assert [len(y) for _, y in got] == [3, 3, 1]
    assert (np.concatenate([x for x, _ in got]) == images[3:]).all()


def test_a_validation_score_unlike_the_recorded_one_is_a_note() -> None:
    c = SplitCheck("validation", "validation", 10, 0.5, 0.5, 1.0, 0.0)
    kept = {"epoch": 3, "val_acc": 0.8}
    assert "the run recorded 80.00% at epoch 3: has the data changed" in str(check.data_changed(c, kept))
    assert check.data_changed(c, {"epoch": 3, "val_acc": 0.5}) is None
    assert check.data_changed(SplitCheck("test", "test", 1, 0.5, 0.5, 1.0, 0.0), kept) is None
