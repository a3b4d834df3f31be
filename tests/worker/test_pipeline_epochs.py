"""The training stream, epoch by epoch: what a resumed run sees, reshuffles and re-drawn augmentation.

Images are tagged by content (image i is filled with the value i) so a batch says which examples
it holds; no model is involved. With augmentation the stream carries uint8 images and their draws,
and the training step augments them (:func:`tltui.worker.augment.augment`, applied here as it does).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from tltui.worker import augment, data  # noqa: E402

N, BATCH = 10, 4


def tagged(n: int = N) -> data.Split:
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 6, 6, 3)).copy()
    return data.in_memory(images, np.arange(n))


def batches(
    split: data.Split, count: int, batch: int = BATCH, seed: int = 7, **kw: object
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` batches of the stream as training sees them (augmented as the training step does)."""
    ds = data.train_batches(split, batch_size=batch, seed=seed, **kw)  # type: ignore[arg-type]
    if kw.get("augment"):
        ds = ds.map(lambda xu, y: (augment.augment(*xu), y))
    return [(x.numpy(), y.numpy()) for x, y in ds.take(count)]


@pytest.mark.parametrize("steps_per_epoch", [None, 3], ids=["epoch=one pass", "steps_per_epoch stream"])
def test_a_stream_started_at_epoch_k_is_the_uninterrupted_stream_from_epoch_k(steps_per_epoch: int | None) -> None:
    steps = steps_per_epoch or 3  # ceil(10 / 4)
    kw = {"shuffle": True, "augment": True, "steps_per_epoch": steps_per_epoch}
    whole = batches(tagged(), 5 * steps, **kw)
    for k in (1, 2, 3):
        resumed = batches(tagged(), (5 - k) * steps, start_epoch=k, **kw)
        assert len(resumed) == len(whole[k * steps :])
        for (xa, ya), (xb, yb) in zip(whole[k * steps :], resumed, strict=True):
            np.testing.assert_array_equal(ya, yb)
            np.testing.assert_array_equal(xa, xb)  # the same augmentation draws, too


def test_every_epoch_is_a_new_permutation_of_all_examples() -> None:
    stream = batches(tagged(), 4 * 3, shuffle=True, augment=False)
    epochs = [np.concatenate([y for _, y in stream[e * 3 : (e + 1) * 3]]) for e in range(4)]
    assert [len(b) for _, b in stream[:3]] == [4, 4, 2]  # the last batch of an epoch is short, not mixed
    for order in epochs:
        assert sorted(order.tolist()) == list(range(N))
    assert len({tuple(o) for o in epochs}) == 4
    again = batches(tagged(), 4 * 3, shuffle=True, augment=False)
    assert all((a[1] == b[1]).all() for a, b in zip(stream, again, strict=True))


def test_a_steps_per_epoch_stream_runs_across_passes_without_dropping_examples() -> None:
    stream = batches(tagged(), 5, shuffle=True, augment=False, steps_per_epoch=5)  # 20 examples = 2 passes
    seen = np.concatenate([y for _, y in stream])
    assert sorted(seen[:N].tolist()) == list(range(N)) and sorted(seen[N:].tolist()) == list(range(N))
    assert (seen[:N] != seen[N:]).any()


def test_augmentation_is_redrawn_every_epoch_and_reproducible_for_a_seed() -> None:
    rng = np.random.default_rng(0)
    split = data.in_memory(rng.integers(0, 256, size=(N, 12, 12, 3), dtype=np.uint8), np.arange(N))
    one, two = [x for x, _ in batches(split, 2, batch=N, shuffle=False, augment=True)]  # epochs 1 and 2
    assert sum(not np.array_equal(a, b) for a, b in zip(one, two, strict=True)) >= N - 1
    again = batches(split, 2, batch=N, shuffle=False, augment=True)
    for (x, _), y in zip(again, (one, two), strict=True):
        np.testing.assert_array_equal(x, y)
    other = batches(split, 1, batch=N, seed=8, shuffle=False, augment=True)
    assert not np.array_equal(other[0][0], one)
