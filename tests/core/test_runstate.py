"""Folding events into history, best epoch, progress and ETA."""

from __future__ import annotations

from tltui.core.protocol import Batch, EpochBegin, EpochEnd, Finished, Phase, Started
from tltui.core.runstate import RunState


def _epoch(e: int, val_acc: float, secs: float = 10.0) -> EpochEnd:
    return EpochEnd(
        t=float(e),
        epoch=e,
        metrics={"loss": 1.0 / e, "acc": 0.1 * e, "val_acc": val_acc, "val_top5_acc": min(1.0, val_acc + 0.2)},
        epoch_seconds=secs,
    )


def test_history_best_and_progress() -> None:
    st = RunState()
    st.apply(Started(t=0.0, epochs=4, steps_per_epoch=10))
    for e, v in [(1, 0.3), (2, 0.5), (3, 0.45)]:
        st.apply(EpochBegin(t=0.0, epoch=e))
        st.apply(_epoch(e, v))
    st.apply(EpochBegin(t=0.0, epoch=4))
    st.apply(Batch(t=0.0, epoch=4, step=5, steps=10, metrics={"loss": 0.2}))
    assert [h["epoch"] for h in st.history_list()] == [1, 2, 3]
    assert st.best() == {
        "epoch": 2,
        "val_acc": 0.5,
        "val_top5_acc": 0.7,
        "best_val_top5_acc": 0.7,
        "best_val_top5_epoch": 2,
    }
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
    for ev in (
        Started(t=0.0, epochs=2),
        EpochBegin(t=0.0, epoch=1),
        Batch(t=0.1, epoch=1, step=1, metrics={"loss": 2.0}),
        Batch(t=0.2, epoch=1, step=2, metrics={"loss": 1.5}),
        _epoch(1, 0.3),
        Finished(t=9.0, status="completed", epochs_done=1),
    ):
        st.apply(ev)
        versions.append(st.history_version)
    assert versions == [1, 2, 2, 2, 3, 4]
    assert st.events_seen == 6


def test_best_reports_the_top5_of_the_best_epoch_and_the_best_top5_apart() -> None:
    st = RunState()
    st.apply(Started(t=0.0, epochs=3))
    for e, (acc, top5) in enumerate([(0.4, 0.9), (0.6, 0.8), (0.5, 0.85)], start=1):
        st.apply(EpochEnd(t=float(e), epoch=e, metrics={"loss": 1.0, "val_acc": acc, "val_top5_acc": top5}))
    assert st.best() == {
        "epoch": 2,
        "val_acc": 0.6,
        "val_top5_acc": 0.8,
        "best_val_top5_acc": 0.9,
        "best_val_top5_epoch": 1,
    }


def test_best_has_no_top5_when_the_run_has_too_few_classes() -> None:
    st = RunState()
    st.apply(EpochEnd(t=1.0, epoch=1, metrics={"loss": 1.0, "val_acc": 0.7}))
    b = st.best()
    assert b is not None and b["val_top5_acc"] is None and b["best_val_top5_acc"] is None


def test_kept_is_the_epoch_model_keras_holds() -> None:
    """Before the end: the best val_acc so far with restore_best, else the last epoch; at the end: the
    epoch the worker saved, whatever the history's maximum says (an older worker kept the last)."""
    for restore_best, during in ((True, 2), (False, 3)):
        st = RunState()
        st.apply(Started(t=0.0, epochs=3, restore_best=restore_best))
        assert st.kept() is None
        for e, v in [(1, 0.3), (2, 0.5), (3, 0.45)]:
            st.apply(_epoch(e, v))
        k = st.kept()
        assert k is not None and (k["epoch"], k["final"]) == (during, False)
        assert k["rule"] == ("best" if restore_best else "last") and k["val_acc"] == st.history[during]["val_acc"]
    st.apply(Finished(t=9.0, status="completed", epochs_done=3, model_epoch=3))  # no model_rule: an older worker
    assert st.kept() == {**st.kept(), "epoch": 3, "rule": "last", "final": True, "val_acc": 0.45}  # type: ignore[dict-item]
    failed = RunState()
    failed.apply(Started(t=0.0, epochs=3, restore_best=True))
    failed.apply(_epoch(1, 0.3))
    failed.apply(Finished(t=2.0, status="failed", epochs_done=1))
    assert failed.kept()["final"] is False  # type: ignore[index]  # no model.keras


def test_elapsed_adds_the_segments_of_a_resumed_run() -> None:
    st = RunState()
    assert st.elapsed() is None
    st.apply(Started(t=100.0, epochs=2))
    st.apply(EpochEnd(t=150.0, epoch=1))
    st.apply(Finished(t=166.0, status="cancelled"))
    # the resumed run's new worker started at 990 (registry) and has not reported yet: not the pause either
    assert st.elapsed(1010.0, started=990.0) == 66.0 + 20.0
    assert st.elapsed(170.0, started=100.0) == 70.0  # a registry start before the last event: this segment
    st.apply(Started(t=1000.0, epochs=2, initial_epoch=1))  # resumed 834 s later: not counted
    assert st.elapsed(1010.0) == 66.0 + 10.0 == st.elapsed(1010.0, started=990.0)
    st.apply(EpochEnd(t=1040.0, epoch=2))
    st.apply(Finished(t=1059.0, status="completed"))
    assert st.elapsed() == 66.0 + 59.0


def test_phases_list_says_what_each_phase_did() -> None:
    from tltui.core.protocol import ModelInfo, TrainPhase

    st = RunState()
    st.apply(Started(t=0.0, epochs=5))
    st.apply(ModelInfo(t=0.0, trainable_params=51, feature_cache=True))
    st.apply(
        TrainPhase(
            t=0.0,
            index=1,
            count=2,
            name="head",
            start_epoch=0,
            epochs=2,
            total_epochs=5,
            freeze_depth="all",
            optimizer="adam",
            learning_rate=1e-3,
            trainable_params=51,
        )
    )
    for e in (1, 2):
        st.apply(_epoch(e, 0.1 * e))
    assert st.phases_list()[0]["last_epoch"] == 2 and st.phases_list()[0]["epochs_trained"] == 2
    st.apply(ModelInfo(t=0.0, trainable_params=900, feature_cache=False))
    st.apply(
        TrainPhase(
            t=0.0,
            index=2,
            count=2,
            name="ft",
            start_epoch=2,
            epochs=3,
            total_epochs=5,
            freeze_depth=0,
            optimizer="sgd",
            learning_rate=1e-4,
            trainable_params=900,
        )
    )
    st.apply(_epoch(3, 0.4))
    st.apply(Finished(t=9.0, status="completed", epochs_done=3))  # phase 2 stopped early after epoch 3
    one, two = st.phases_list()
    assert (one["first_epoch"], one["last_epoch"], one["feature_cache"], one["trainable_params"]) == (1, 2, True, 51)
    assert (two["first_epoch"], two["last_epoch"], two["feature_cache"], two["optimizer"]) == (3, 3, False, "sgd")
    assert RunState().phases_list() == []


def test_a_running_run_says_what_it_does_until_its_first_batch() -> None:
    """Queued to first batch can take minutes (TensorFlow's import, the model, graph tracing): each
    step has a word for the table and a line for the run screen, none once batches flow."""
    st = RunState()
    assert (st.preparing_detail(short=True), st.preparing_detail()) == (
        "starting",
        "starting the worker (loading TensorFlow)",
    )
    steps = [
        (Started(t=1.0, epochs=2), None),
        (Phase(t=2.0, name="data", message="loading folder:photos"), "loading data"),
        (Phase(t=3.0, name="build", message="building mobilenet_v2 (weights: imagenet)"), "building"),
        (Phase(t=4.0, name="train", message="training for 2 epochs of 5 steps"), "first step"),
        (EpochBegin(t=5.0, epoch=1), "first step"),
        (Batch(t=6.0, epoch=1, step=1, steps=5, metrics={"loss": 1.0}), None),
        (Phase(t=7.0, name="save", message="saving model.keras"), "saving"),
        (Finished(t=8.0, status="completed", epochs_done=2), None),
    ]
    for ev, short in steps:
        st.apply(ev)
        assert st.preparing_detail(short=True) == short, ev
    st = RunState()
    for ev, _ in steps[:4]:
        st.apply(ev)
    assert st.preparing_detail() == "training for 2 epochs of 5 steps: tracing the first step (the graph is built once)"
