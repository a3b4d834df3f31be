"""The TUI's data layer (no Textual): rows, lazy loading, tails, compare tables, curves."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest

from tests.runner import nice_executor
from tests.tui import fake_ws
from tltui.core import protocol
from tltui.core.protocol import Batch, EpochEnd
from tltui.tui import curves
from tltui.tui import formatting as fmt
from tltui.tui import store as run_store


def store_for(scripted) -> tuple[run_store.RunStore, dict[str, str]]:
    ws, ids = scripted
    store = run_store.RunStore(ws, clock=lambda: fake_ws.NOW)
    store.refresh()
    return store, ids


def test_rows_come_from_the_registry_without_reading_events(scripted):
    store, ids = store_for(scripted)
    rows = {r.id: r for r in store.rows()}
    assert len(rows) == 8
    done = rows[ids["completed"]]
    assert done.status == "completed" and not done.loaded
    assert done.best_val_acc is not None and done.progress == 1.0
    assert done.elapsed == 611
    assert rows[ids["queued"]].elapsed is None and rows[ids["queued"]].gpus == "-"


def test_running_runs_are_tailed_and_get_live_progress(scripted):
    store, ids = store_for(scripted)
    rid = ids["running"]
    changed, urgent = store.poll()
    assert rid in changed and rid in urgent  # loaded for the first time
    row = store.row(rid)
    assert row.loaded and row.status == "running"
    assert row.epoch == 3 and row.epochs == 10
    assert abs(row.progress - 0.25) < 1e-9  # 2 epochs + half of the third
    assert row.elapsed == 200 and row.eta is not None and row.gpus == "1"
    assert store.poll() == (set(), set())  # nothing new: a stat, no read

    path = scripted[0].run_paths(rid).events
    with open(path, "a") as f:
        for step in range(30, 51, 5):
            f.write(protocol.encode(Batch(t=fake_ws.NOW, epoch=3, step=step, steps=50, metrics={"loss": 1.0})))
    assert store.poll() == ({rid}, set())  # batch events only: not urgent
    assert store.row(rid).progress == 0.3
    with open(path, "a") as f:
        f.write(protocol.encode(Batch(t=fake_ws.NOW, epoch=3, step=50, steps=50, metrics={"loss": 1.0})))
        f.write(protocol.encode(EpochEnd(t=fake_ws.NOW, epoch=3, metrics=fake_ws.metrics(3, 0.7), epoch_seconds=60.0)))
    assert store.poll() == ({rid}, {rid})  # an epoch ended among them
    assert store.row(rid).epoch == 3 and store.snapshot(rid).history[-1]["epoch"] == 3


def test_a_run_that_ends_between_two_polls_keeps_its_last_epoch(scripted):
    """The last epoch and the status that ends the run both arrive after a poll: the registry read that
    sees the status reads the tail to the end (poll() reads running runs only)."""
    ws, ids = scripted
    store, _ = store_for(scripted)
    rid = ids["running"]
    store.poll()
    assert store.snapshot(rid).history[-1]["epoch"] == 2
    with open(ws.run_paths(rid).events, "a") as f:
        f.write(protocol.encode(EpochEnd(t=fake_ws.NOW, epoch=3, metrics=fake_ws.metrics(3, 0.7), epoch_seconds=60.0)))
    ws.update(rid, status="completed", epoch=3)
    assert rid in store.refresh(force=True)  # force: the same connection committed (no data_version change)
    assert store.record(rid).status == "completed"
    assert [h["epoch"] for h in store.snapshot(rid).history] == [1, 2, 3]
    assert store.poll() == (set(), set())


def test_a_burst_of_events_is_consumed_in_one_poll(scripted):
    """8 runs x 100 batch events/s: one tick reads everything (no backlog builds up)."""
    store, ids = store_for(scripted)
    rid = ids["running"]
    store.poll()
    path = scripted[0].run_paths(rid).events
    with open(path, "a") as f:
        for i in range(2000):
            f.write(protocol.encode(Batch(t=fake_ws.NOW, epoch=3, step=26 + i % 24, steps=50, metrics={"loss": 1.0})))
    before = store.load(rid).events_seen
    store.poll()
    assert store.load(rid).events_seen == before + 2000
    assert store.poll() == (set(), set())


def test_summaries_load_off_thread_and_install_once(scripted):
    store, ids = store_for(scripted)
    pending = store.unloaded_final()
    assert ids["completed"] in pending and ids["running"] not in pending and ids["queued"] not in pending
    state, tail = run_store.load_summary(scripted[0].run_paths(ids["completed"]).events)
    assert state.batches == [] and state.epochs_done == 10
    assert store.install(ids["completed"], state, tail)
    assert not store.install(ids["completed"], state, tail)
    row = store.row(ids["completed"])
    assert row.loaded and row.val_acc == state.history[10]["val_acc"]


def test_deleted_runs_drop_out_of_the_store(scripted):
    store, ids = store_for(scripted)
    store.watch(ids["completed"])
    scripted[0].delete(ids["completed"])
    assert ids["completed"] in store.refresh(force=True)  # same connection: data_version does not move
    assert store.record(ids["completed"]) is None and ids["completed"] not in store.ids


def test_results_use_the_kept_epoch_and_export_as_csv(scripted):
    store, ids = store_for(scripted)
    sweep = [rid for rid in store.ids if store.record(rid).sweep]
    snaps = [store.snapshot(rid) for rid in sweep]
    rows = run_store.results(snaps)
    assert [r.epochs for r in rows] == [8, 8, 8, 8]
    assert all(r.kept_epoch == 8 and r.seconds == 480.0 and r.trainable_params == 204_900 for r in rows)
    swept, bars = run_store.sweep_bars(snaps)
    assert swept == "freeze.depth" and [b[0] for b in bars] == ["0", "1", "2", "3"]
    assert bars[0][1] > bars[3][1]
    path = run_store.export_results(scripted[0], rows, fake_ws.NOW)
    assert path.parent == scripted[0].root / "exports"
    parsed = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [p["id"] for p in parsed] == sweep and float(parsed[0]["val_acc"]) == rows[0].val_acc
    # the test split, evaluated once with the kept weights, is its own pair of columns
    test = fake_ws.metrics(8, 0.74)
    assert float(parsed[0]["test_acc"]) == pytest.approx(test["val_acc"] - 0.012)
    assert float(parsed[0]["test_top5_acc"]) == pytest.approx(test["val_top5_acc"] - 0.01)
    assert parsed[0]["test_acc"] != parsed[0]["val_acc"]


def test_runs_that_are_not_a_sweep_get_no_bars(scripted):
    store, ids = store_for(scripted)
    snaps = [store.snapshot(ids["completed"]), store.snapshot(ids["failed"])]
    assert run_store.sweep_bars(snaps) == ("", [])
    # the walk: an unrelated run next to one sweep run drew "best by freeze.depth" with a bar "None"
    assert run_store.sweep_bars([store.snapshot(ids["completed"]), store.snapshot(ids["sweep0"])]) == ("", [])
    assert run_store.sweep_bars([store.snapshot(ids["sweep0"]), store.snapshot(ids["sweep3"])])[0] == "freeze.depth"


def test_run_colours_are_stable_and_from_the_palette():
    assert run_store.run_color("r0001") == run_store.run_color("r0001")
    assert run_store.run_color("r0001") in run_store.PALETTE
    assert len({run_store.run_color(f"r{i:04d}") for i in range(1, 40)}) > 5
    assert run_store.hex_color((255, 0, 16)) == "#ff0010"


def test_curves_on_each_x_axis(scripted):
    store, ids = store_for(scripted)
    snap = store.snapshot(ids["running"])
    by_epoch = curves.points(snap, "loss", "epoch")
    # two finished epochs, then the in-progress epoch's batches at fractional x
    assert by_epoch.xs[:2] == (1.0, 2.0) and 2.0 < by_epoch.xs[-1] < 3.0
    assert len(curves.points(snap, "val_loss", "epoch").xs) == 2
    by_step = curves.points(snap, "loss", "step")
    assert by_step.xs[:2] == (50.0, 100.0) and by_step.xs[-1] == 125.0
    by_time = curves.points(snap, "loss", "time")
    assert by_time.xs == tuple(sorted(by_time.xs)) and by_time.xs[0] > 0
    assert curves.points(snap, "loss", "epoch", live=False).xs == (1.0, 2.0)


def test_live_points_are_thinned_to_each_buckets_extremes_keeping_the_latest(scripted):
    store, ids = store_for(scripted)
    base = store.snapshot(ids["running"])
    limit = curves.MAX_LIVE_POINTS
    epoch_pts = len(curves.points(base, "loss", live=False).xs)
    for n in (0, 1, limit, limit + 1, 10 * limit + 7):
        losses = [1.0 + 0.1 * (i % 5) for i in range(n)]
        if n > 2:
            losses[n // 3] = 50.0  # a spike a stride would skip
        batches = tuple((float(i), 3, i + 1, {"loss": v}) for i, v in enumerate(losses))
        snap = replace(base, batches=batches, epoch_in_progress=3, steps=n or None)
        live = curves.points(snap, "loss").ys[epoch_pts:]
        assert len(live) <= limit
        if n:
            assert live[-1] == losses[-1]
            assert max(live) == max(losses) and min(live) == min(losses)
        if n < limit - 1:  # fits: drawn whole
            assert list(live) == losses


def test_live_points_come_from_the_epoch_in_progress_only():
    batches = [(0.0, 1, 1, {}), (0.0, 1, 2, {}), (0.0, 2, 1, {}), (0.0, 2, 2, {})]
    assert [b[1:3] for b in curves._current_epoch(batches, 2)] == [(2, 1), (2, 2)]
    assert curves._current_epoch(batches, 3) == []  # epoch 3 began, no batch yet
    assert curves._current_epoch([], 1) == []


def test_log_tail_and_preset_text(scripted):
    store, ids = store_for(scripted)
    tail = store.log_tail(ids["failed"], 2)
    assert tail.splitlines()[-1].startswith("ResourceExhaustedError") and len(tail.splitlines()) == 2
    assert store.log_tail(ids["queued"]) == ""
    assert 'name = "broken-run"' in store.preset_text(ids["failed"])


def test_formatters():
    assert fmt.pct(0.7812) == "78.1%" and fmt.pct(None) == "-" and fmt.pct(float("nan")) == "-"
    assert fmt.duration(75) == "1m15s" and fmt.duration(3725) == "1h02m" and fmt.duration(None) == "-"
    assert fmt.bar(0.5, 4) == "██··" and fmt.bar(1.5, 3) == "███"
    assert fmt.params(23_792_612) == "23.79M" and fmt.params(204_900) == "204.9k"


def test_registry_is_reread_only_after_another_connection_commits(scripted):
    from tltui.core.workspace import Workspace

    store, ids = store_for(scripted)
    assert store.refresh() == set()  # nothing committed since
    other = Workspace(scripted[0].root)
    other.update(ids["queued"], status="cancelled", queue_pos=None)
    other.close()
    assert store.refresh() == {ids["queued"]}
    assert store.record(ids["queued"]).status == "cancelled"
    assert store.refresh(force=True) == set()


def test_cluster_runs_show_where_they_execute(scripted):
    ws, ids = scripted
    ws.update(ids["completed"], executor="ray", host="node7", gpus=[0])
    ws.update(ids["queued"], executor="slurm")
    store, _ = store_for(scripted)
    rows = {r.id: r for r in store.rows()}
    assert rows[ids["completed"]].gpus == "ray:node7/0"
    assert rows[ids["queued"]].gpus == "-"  # not placed yet


@pytest.fixture
def nice(tmp_path, monkeypatch):
    yield from nice_executor.install(tmp_path / "site", monkeypatch)


def test_a_local_style_executors_runs_show_their_devices_like_local_ones(scripted, nice):
    """An executor that does not place its own devices (``places_devices = False``, whatever its name) runs
    on this machine's devices: the table shows those, not the executor and host; an executor not installed
    here shows where it ran, as a cluster's does."""
    ws, ids = scripted
    ws.update(ids["completed"], executor="nice", host="here", gpus=[0])
    ws.update(ids["running"], executor="nice", host="here", gpus=[])
    ws.update(ids["failed"], executor="gone-plugin", host="node3", gpus=[])
    store, _ = store_for(scripted)
    rows = {r.id: r for r in store.rows()}
    assert rows[ids["completed"]].gpus == "0"
    assert rows[ids["running"]].gpus == "cpu"
    assert rows[ids["failed"]].gpus == "gone-plugin:node3"


def test_a_step_before_training_shows_as_the_runs_status_detail_until_the_next_step(scripted):
    """A resumed run downloading its data: "download 43%" in the table, the long form in the run
    header; gone when the next phase (or epoch) starts."""
    store, ids = store_for(scripted)
    rid = ids["running"]
    store.poll()
    path = scripted[0].run_paths(rid).events

    def append(*events):
        with open(path, "a") as f:
            for ev in events:
                f.write(protocol.encode(ev))
        store.poll()

    append(
        protocol.Phase(t=fake_ws.NOW, name="data", message="loading tfds:cifar100"),
        protocol.Progress(
            t=fake_ws.NOW,
            phase="download",
            done=70.1e6,
            total=162.2e6,
            unit="bytes",
            eta=12.4,
            message="downloading tfds:cifar100",
        ),
    )
    assert store.row(rid).detail == "download 43%"
    assert store.snapshot(rid).preparing == "downloading tfds:cifar100: 43% (70.1 / 162.2 MB, 0:12 left)"
    append(protocol.Progress(t=fake_ws.NOW, phase="decode", done=5, total=None, message="decoding images"))
    assert store.row(rid).detail == "decode 5"
    append(protocol.Phase(t=fake_ws.NOW, name="build", message="building resnet50"))
    assert store.row(rid).detail == "building"  # the step itself, once its progress is over
    assert store.snapshot(rid).preparing == "building resnet50"
    # training started but no batch yet: the first step traces the graph (a minute on a busy CPU)
    append(
        protocol.Phase(t=fake_ws.NOW, name="train", message="training for 10 epochs of 50 steps"),
        protocol.EpochBegin(t=fake_ws.NOW, epoch=4),
    )
    assert store.row(rid).detail == "first step"
    assert "tracing the first step" in (store.snapshot(rid).preparing or "")
    append(protocol.Batch(t=fake_ws.NOW, epoch=4, step=1, steps=50, metrics={"loss": 1.0}))
    assert store.row(rid).detail is None and store.snapshot(rid).preparing is None
    assert store.row(ids["completed"]).detail is None


def test_a_budgeted_sweeps_paused_runs_say_where_they_wait_or_that_they_stopped(scripted):
    ws, ids = scripted
    a, b = ids["sweep0"], ids["sweep3"]
    ws.update(a, status="paused", reason="paused at rung 2 (epoch 3): val_acc 0.61, 1 of 4")
    ws.update(b, status="paused", reason="stopped early at rung 1 (epoch 1): val_acc 0.40, 4 of 4 (1 went on)")
    store, _ = store_for(scripted)
    assert (store.row(a).detail, store.row(b).detail) == ("paused at rung 2", "stopped early at rung 1")
    assert fmt.status_style("paused", store.row(b).detail) == "magenta"
