"""A run's summary: the state readers load equals folding the whole log, at every point of a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tltui.core import protocol, run_summary, runstate
from tltui.core.protocol import (
    Batch,
    Checkpoint,
    EpochBegin,
    EpochEnd,
    Evaluated,
    Finished,
    Log,
    ModelInfo,
    Phase,
    Progress,
    Started,
    TrainPhase,
)
from tltui.core.runstate import RunState
from tltui.worker.events import EventWriter

FAKE_WORKER = Path(__file__).resolve().parents[1] / "fake_worker.py"


def views(st: RunState) -> str:
    """Everything a reader of the run sees (the fields, and what each view derives from them), as
    text: a NaN metric compares equal to itself."""
    v: dict[str, Any] = {
        "doc": run_summary.state_to_doc(st),
        "history": st.history_list(),
        "kept": st.kept(),
        "best": st.best(),
        "phases": st.phases_list(),
        "phase_starts": st.phase_starts(),
        "elapsed": st.elapsed(),
        "progress": st.progress(),
        "eta": st.eta_seconds(),
        "test": st.test,
        "skipped": st.skipped_lines,
        "live": st.live,
        "step": st.step,
        "epoch": st.epoch,
    }
    return json.dumps(v, sort_keys=True, default=str)


def assert_same(events: Path) -> RunState:
    """The summary-backed state of ``events`` equals the full fold, and so does a second read."""
    full = runstate.fold(events)
    for _ in range(2):  # the second read starts from what the first may have written
        got = runstate.load(events)
        assert views(got) == views(full)
    return full


def epoch_events(e: int, steps: int, t: float, val_acc: float) -> list[protocol.Event]:
    evs: list[protocol.Event] = [EpochBegin(t=t, epoch=e)]
    evs += [Batch(t=t + s, epoch=e, step=s, steps=steps, metrics={"loss": 1.0 / (e + s)}) for s in range(1, steps + 1)]
    m = {"loss": 1.0 / e, "acc": 0.1 * e, "val_loss": 1.2 / e, "val_acc": val_acc, "val_top5_acc": 0.9}
    evs.append(EpochEnd(t=t + steps + 0.5, epoch=e, metrics=m, lr=0.01 / e, epoch_seconds=steps + 0.5))
    return evs


def phase(index: int, start: int, epochs: int) -> TrainPhase:
    return TrainPhase(
        t=0.0,
        index=index,
        count=2,
        name=("head", "fine-tune")[index - 1],
        start_epoch=start,
        epochs=epochs,
        total_epochs=6,
        freeze_depth="all" if index == 1 else 2,
        optimizer="adam",
        learning_rate=1e-3 / index,
        trainable_params=100 * index,
    )


def test_a_phased_resumed_run_reads_the_same_from_its_summary_at_every_event(tmp_path: Path) -> None:
    """The worker's writer keeps the summary; after every event a reader's state equals the full fold:
    phases, a crash mid-epoch with a torn line, a resume that repeats an epoch, a test split, the end."""
    d = tmp_path / "run"
    d.mkdir()
    events = d / "events.jsonl"
    seen = []

    def emit(w: EventWriter, ev: protocol.Event) -> None:
        w.emit(ev)
        if not isinstance(ev, Batch) or ev.step == 2:
            seen.append(assert_same(events).events_seen)

    with EventWriter(d) as w:
        for ev in [
            Started(t=1.0, pid=7, devices=["CPU"], epochs=6, steps_per_epoch=3, restore_best=True),
            Phase(t=1.2, name="data", message="loading the data"),
            Progress(t=1.5, phase="download", done=5e6, total=1e7, unit="bytes", eta=3.0, message="downloading"),
            Phase(t=1.8, name="build", message="building the model"),
            ModelInfo(t=2.0, total_params=1000, trainable_params=100, num_classes=10, feature_cache=True),
            phase(1, 0, 3),
        ]:
            emit(w, ev)
        for e, v in ((1, 0.3), (2, 0.5), (3, 0.45)):
            for ev in epoch_events(e, 3, 10.0 * e, v):
                emit(w, ev)
        emit(w, Checkpoint(t=40.0, epoch=3, path="checkpoints/epoch-0003.keras"))
        emit(w, ModelInfo(t=41.0, total_params=1000, trainable_params=200, num_classes=10))
        emit(w, phase(2, 3, 3))
        for ev in epoch_events(4, 3, 50.0, 0.55)[:3]:  # killed during epoch 4
            emit(w, ev)
    with open(events, "ab") as f:
        f.write(b'{"type":"batch","t":5')  # the kill tore a line
    assert_same(events)
    assert runstate.load(events).skipped_lines == 1

    with EventWriter(d) as w:  # the resume: continues the summary, repeats epoch 4
        emit(
            w, Started(t=100.0, pid=8, devices=["CPU"], epochs=6, initial_epoch=3, steps_per_epoch=3, restore_best=True)
        )
        emit(w, ModelInfo(t=101.0, total_params=1000, trainable_params=200, num_classes=10))
        emit(w, phase(2, 3, 3))
        emit(w, Log(t=101.5, message="resumed"))
        for e, v in ((4, 0.6), (5, 0.58), (6, 0.59)):
            for ev in epoch_events(e, 3, 100.0 + 10 * e, v):
                emit(w, ev)
        emit(w, Evaluated(t=200.0, examples=50, weights_epoch=4, metrics={"test_loss": 0.9, "test_acc": 0.6}))
        emit(w, Finished(t=201.0, epochs_done=6, model_epoch=4, model_rule="best"))

    full = assert_same(events)
    assert seen == sorted(seen)
    assert full.kept()["epoch"] == 4 and len(full.phases_list()) == 2  # type: ignore[index]
    assert full.elapsed() == pytest.approx((52.0 - 1.0) + (201.0 - 100.0))  # both segments (the first ended on a batch)
    doc = json.loads((d / "events.summary.json").read_bytes())
    assert doc["offset"] == events.stat().st_size  # the worker summarised up to its last event


def test_a_summary_is_a_cache_a_wrong_one_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    d = tmp_path / "run"
    d.mkdir()
    events = d / "events.jsonl"
    with EventWriter(d) as w:
        w.emit(Started(t=1.0, epochs=2, steps_per_epoch=2))
        for ev in epoch_events(1, 2, 2.0, 0.4) + epoch_events(2, 2, 5.0, 0.5):
            w.emit(ev)
        w.emit(Finished(t=9.0, epochs_done=2, model_epoch=2, model_rule="last"))
    summary = d / "events.summary.json"
    good = summary.read_bytes()
    full = views(runstate.fold(events))

    doc = json.loads(good)
    for bad in (b"", b"{not json", b"[]", json.dumps({**doc, "version": 99}), json.dumps({**doc, "digest": "0"})):
        summary.write_bytes(bad.encode() if isinstance(bad, str) else bad)
        assert views(runstate.load(events)) == full

    # the log was replaced by another run's (same length even): the digest tells
    summary.write_bytes(good)
    text = events.read_bytes()
    events.write_bytes(text.replace(b'"val_acc":0.5', b'"val_acc":0.7'))
    assert runstate.load(events).history[2]["val_acc"] == 0.7
    # a log cut shorter than its summary (a disk that lost its last writes)
    summary.write_bytes(good)
    events.write_bytes(text[: len(text) // 2])
    assert views(runstate.load(events)) == views(runstate.fold(events))
    # no summary at all: folded, and not written for an unfinished short run
    summary.unlink()
    assert views(runstate.load(events)) == views(runstate.fold(events))
    assert not summary.exists()


def test_readers_summarise_a_finished_run_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run from before summaries (the scripted fake worker writes no summary, as older workers did),
    crashed and resumed: the first reader folds the log and writes the summary, the next reads it."""
    run_dir = tmp_path / "r0001"
    run_dir.mkdir()
    (run_dir / "preset.toml").write_text('name = "x"\n[train]\nepochs = 4\nsteps_per_epoch = 30\n')
    env = dict(os.environ, TLTUI_FAKE_EPOCH_SECONDS="0.003", TLTUI_FAKE_CRASH_AT="3")
    cmd = [sys.executable, str(FAKE_WORKER), "train", str(run_dir)]
    assert subprocess.run(cmd, env=env, capture_output=True, check=False).returncode == 3
    env.pop("TLTUI_FAKE_CRASH_AT")
    assert subprocess.run([*cmd, "--resume"], env=env, capture_output=True, check=False).returncode == 0
    events = run_dir / "events.jsonl"
    summary = run_dir / "events.summary.json"
    monkeypatch.setattr(run_summary, "SAVE_FINISHED_BYTES", 1)  # a short log is worth it too here
    full = assert_same(events)
    assert full.finished is not None and full.epochs_done == 4 and full.elapsed() is not None
    offset = json.loads(summary.read_bytes())["offset"]
    assert offset == events.stat().st_size
    calls = []
    monkeypatch.setattr(RunState, "apply", lambda self, ev: calls.append(ev))
    runstate.load(events)
    assert calls == []  # nothing left to fold


def test_the_live_tail_continues_after_the_summary(tmp_path: Path) -> None:
    """A running run: the summary ends at the last epoch; the batches of the epoch in progress come
    from the log after it (what the live chart draws), and the tail keeps following the file."""
    d = tmp_path / "run"
    d.mkdir()
    events = d / "events.jsonl"
    with EventWriter(d) as w:
        w.emit(Started(t=1.0, epochs=3, steps_per_epoch=4))
        for ev in epoch_events(1, 4, 2.0, 0.4) + epoch_events(2, 4, 8.0, 0.5)[:3]:
            w.emit(ev)
        st, tail = run_summary.load(events)
        assert [b[2] for b in st.batches] == [1, 2]
        assert tail.offset == events.stat().st_size
        for ev in epoch_events(2, 4, 8.0, 0.5)[3:]:
            w.emit(ev)
        for ev in tail.read_new():
            st.apply(ev)
    assert views(st) == views(runstate.fold(events))


def test_the_state_round_trips_through_its_document() -> None:
    st = RunState()
    for ev in [
        Started(t=1.0, epochs=3, devices=["GPU:0"], host="h", pid=3, restore_best=True),
        phase(1, 0, 3),
        *epoch_events(1, 2, 2.0, float("nan")),
        EpochBegin(t=9.0, epoch=2),
        Batch(t=9.5, epoch=2, step=1, steps=2, metrics={"loss": 0.5}),
        Phase(t=9.8, name="features", message="caching features"),
        Progress(t=10.0, phase="features", done=3, total=None, message="caching"),
        Checkpoint(t=10.5, epoch=1, path="c"),
    ]:
        st.apply(ev)
    back = run_summary.state_from_doc(json.loads(json.dumps(run_summary.state_to_doc(st))))
    assert views(back) == views(st)
    assert back.phases == st.phases and back.phase == st.phase and back.preparing == st.preparing
    assert back.batches == st.batches[-1:]  # the epoch in progress's
