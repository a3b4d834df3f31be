"""Folding events into history, best epoch, progress and ETA."""

from __future__ import annotations

from tltui.core.protocol import Batch, EpochBegin, EpochEnd, Finished, Started
from tltui.core.runstate import RunState


def _epoch(e: int, val_acc: float, secs: float = 10.0) -> EpochEnd:
    return EpochEnd(t=float(e), epoch=e, metrics={"loss": 1.0 / e, "acc": 0.1 * e, "val_acc": val_acc,
                                                   "val_top5_acc": min(1.0, val_acc + 0.2)}, epoch_seconds=secs)


def test_history_best_and_progress() -> None:
    st = RunState()
    st.apply(Started(t=0.0, epochs=4, steps_per_epoch=10))
    for e, v in [(1, 0.3), (2, 0.5), (3, 0.45)]:
        st.apply(EpochBegin(t=0.0, epoch=e))
        st.apply(_epoch(e, v))
    st.apply(EpochBegin(t=0.0, epoch=4))
    st.apply(Batch(t=0.0, epoch=4, step=5, steps=10, metrics={"loss": 0.2}))
    assert [h["epoch"] for h in st.history_list()] == [1, 2, 3]
    assert st.best() == {"epoch": 2, "val_acc": 0.5, "val_top5_acc": 0.7, "best_val_top5_acc": 0.7,
                         "best_val_top5_epoch": 2}
    assert st.progress() == (3 + 0.5) / 4
    assert st.eta_seconds() == 0.5 * 10.0
    st.apply(_epoch(4, 0.6))
    st.apply(Finished(t=9.0, status="completed", epochs_done=4))
    assert st.eta_seconds() is None
    assert st.best()["epoch"] == 4  # type: ignore[index]


def test_resume_drops_epochs_after_the_restart_point() -> None:
    st = RunState()
    st.apply(Started(t=0.0, epochs=5))
    for e in (1, 2, 3):
        st.apply(_epoch(e, 0.1 * e))
    # the worker died during epoch 3's checkpoint: backup holds epoch 2
    st.apply(Started(t=5.0, epochs=5, initial_epoch=2))
    for e in (3, 4, 5):
        st.apply(_epoch(e, 0.2 * e))
    assert [h["epoch"] for h in st.history_list()] == [1, 2, 3, 4, 5]
    assert st.history[3]["val_acc"] == 0.2 * 3
    assert st.epochs_done == 5


def test_history_version_moves_with_everything_but_batches() -> None:
    st = RunState()
    versions = []
    for ev in (Started(t=0.0, epochs=2), EpochBegin(t=0.0, epoch=1),
               Batch(t=0.1, epoch=1, step=1, metrics={"loss": 2.0}), Batch(t=0.2, epoch=1, step=2, metrics={"loss": 1.5}),
               _epoch(1, 0.3), Finished(t=9.0, status="completed", epochs_done=1)):
        st.apply(ev)
        versions.append(st.history_version)
    assert versions == [1, 2, 2, 2, 3, 4]
    assert st.events_seen == 6


def test_best_reports_the_top5_of_the_best_epoch_and_the_best_top5_apart() -> None:
    st = RunState()
    st.apply(Started(t=0.0, epochs=3))
    for e, (acc, top5) in enumerate([(0.4, 0.9), (0.6, 0.8), (0.5, 0.85)], start=1):
        st.apply(EpochEnd(t=float(e), epoch=e, metrics={"loss": 1.0, "val_acc": acc, "val_top5_acc": top5}))
    assert st.best() == {"epoch": 2, "val_acc": 0.6, "val_top5_acc": 0.8,
                         "best_val_top5_acc": 0.9, "best_val_top5_epoch": 1}


def test_best_has_no_top5_when_the_run_has_too_few_classes() -> None:
    st = RunState()
    st.apply(EpochEnd(t=1.0, epoch=1, metrics={"loss": 1.0, "val_acc": 0.7}))
    b = st.best()
    assert b is not None and b["val_top5_acc"] is None and b["best_val_top5_acc"] is None
