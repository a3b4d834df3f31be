"""The ASHA rule (tltui/core/asha.py), with fakes: rungs, pause points, and whole sweeps simulated over a
queue with a few slots, every size and order, to check what a user relies on."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from tltui.core import asha
from tltui.core.asha import RunView


def test_rungs_are_r_times_powers_of_eta_below_the_last_epoch() -> None:
    assert asha.rungs(1, 3, 27) == [1, 3, 9]
    assert asha.rungs(2, 3, 300) == [2, 6, 18, 54, 162]
    assert asha.rungs(2, 2, 8) == [2, 4]
    assert asha.rungs(5, 3, 5) == []


def test_a_rung_on_a_phases_first_epoch_moves_to_the_next_unless_asked() -> None:
    # phases of 2 and 25 epochs: epoch 3 is the second phase's first
    assert asha.rungs(1, 3, 27, [2, 25]) == [1, 4, 9]
    assert asha.rungs(1, 3, 27, [2, 25], in_first_epoch=True) == [1, 3, 9]
    assert asha.rungs(1, 2, 4, [1, 1, 1, 1]) == [1]  # every later rung is a phase's first epoch: 3 is the last


def test_pause_epoch_skips_the_rungs_passed_and_behind() -> None:
    assert asha.pause_epoch([1, 3, 9], 0, 0) == (0, 1)
    assert asha.pause_epoch([1, 3, 9], 1, 1) == (1, 3)
    assert asha.pause_epoch([1, 3, 9], 0, 2) == (1, 3)  # resumed by hand past rung 1
    assert asha.pause_epoch([1, 3, 9], 3, 9) is None
    assert asha.pause_epoch([1, 3, 9], asha.ALL_RUNGS, 1) is None


def test_rungs_file_round_trips_and_a_bad_one_is_none_passed(tmp_path: Path) -> None:
    assert asha.read_passed(tmp_path) == 0
    asha.write_passed(tmp_path, 2)
    assert asha.read_passed(tmp_path) == 2
    (tmp_path / asha.RUNGS_FILE).write_text("{torn")
    assert asha.read_passed(tmp_path) == 0


def test_the_top_floor_n_over_eta_of_a_rung_go_on_best_first_and_the_numbers_are_said() -> None:
    runs = [RunView(f"r{i}", {0: v}, paused_at=0) for i, v in enumerate([0.5, 0.9, 0.1, 0.7, 0.3, 0.6])]
    ds = asha.decide(runs, 2, 3, maximize=True)
    assert [(d.action, d.run, d.rank, d.reached, d.top, d.cutoff) for d in ds] == [
        ("promote", "r1", 1, 6, 2, 0.7),
        ("promote", "r3", 2, 6, 2, 0.7),
    ]
    low = asha.decide(runs, 2, 3, maximize=False)  # a loss: the lowest go on
    assert [d.run for d in low] == ["r2", "r4"]


def test_nothing_waits_for_a_full_rung_and_missing_values_rank_last() -> None:
    runs = [
        RunView("a", {0: None}, paused_at=0),
        RunView("b", {0: 0.2}, paused_at=0),
        RunView("c", {0: 0.1}, active=True),
    ]
    assert asha.decide(runs[:2] + [RunView("c", {}, active=True)], 2, 2, True)[0].run == "b"  # 1 of 2 goes on
    assert [d.run for d in asha.decide(runs, 2, 3, True)] == ["b"]  # 3 reached: the top 1


def test_an_idle_sweep_promotes_its_best_at_the_highest_rung_once_then_stops_the_rest() -> None:
    paused = [RunView("a", {0: 0.3}, paused_at=0), RunView("b", {0: 0.4}, paused_at=0)]
    (d,) = asha.decide(paused, 2, 3, True)
    assert (d.action, d.run, d.why) == ("promote", "b", "last")
    done = [RunView("a", {0: 0.3}, paused_at=0), RunView("b", {0: 0.4, 1: 0.5}, past=True)]
    ds = asha.decide(done, 2, 3, True)
    assert [(d.action, d.run, d.rank, d.reached) for d in ds] == [("stop", "a", 2, 2)]


def simulate(quality: list[float], eta: int, rung_epochs: list[int], last: int, slots: int, order: list[int]) -> dict:
    """A queue with ``slots`` workers: a run trains to its next rung (or its end) per turn, the rule
    decides after each, promotions go to the queue's front. The metric at a rung is the run's quality."""
    queue = [f"r{i}" for i in order]
    passed = {r: 0 for r in queue}
    epoch = {r: 0 for r in queue}
    values: dict[str, dict[int, float]] = {r: {} for r in queue}
    paused: dict[str, int | None] = {r: None for r in queue}
    done: set[str] = set()
    running: list[str] = []
    spent = 0
    stopped: set[str] = set()
    for _ in range(10_000):
        while queue and len(running) < slots:
            running.append(queue.pop(0))
        if not running:
            break
        r = running.pop(0)  # the oldest running run reaches its next stop
        stop = asha.pause_epoch(rung_epochs, passed[r], epoch[r])
        target = stop[1] if stop else last
        spent += target - epoch[r]
        epoch[r] = target
        for k, e in enumerate(rung_epochs):
            if e <= target:
                values[r][k] = quality[int(r[1:])]
        if stop:
            paused[r] = stop[0]
        else:
            done.add(r)
        views = [
            RunView(x, dict(values[x]), paused_at=paused[x], active=x in queue or x in running, past=x in done)
            for x in passed
        ]
        decisions = asha.decide(views, len(rung_epochs), eta, True)
        for i, d in enumerate(x for x in decisions if x.action == "promote"):
            passed[d.run] = d.rung + 1
            paused[d.run] = None
            queue.insert(i, d.run)
        stopped = {d.run for d in decisions if d.action == "stop"}
        if stopped and not queue and not running:
            break
    reached = [sum(k in v for v in values.values()) for k in range(len(rung_epochs))]
    return {"done": done, "stopped": stopped, "spent": spent, "epoch": epoch, "reached": reached}


@pytest.mark.parametrize(("n", "eta", "slots"), list(itertools.product([1, 2, 3, 5, 9, 10, 27], [2, 3, 4], [1, 2, 4])))
def test_every_simulated_sweep_ends_with_one_run_or_more_trained_in_full_for_a_fraction_of_the_grid(
    n: int, eta: int, slots: int
) -> None:
    rung_epochs = asha.rungs(1, eta, eta**3)
    last = eta**3
    rng = random.Random(n * 100 + eta * 10 + slots)
    for _ in range(5):
        quality = [rng.random() for _ in range(n)]
        order = list(range(n))
        rng.shuffle(order)
        out = simulate(quality, eta, rung_epochs, last, slots, order)
        runs = {f"r{i}" for i in range(n)}
        assert out["done"], "a finite sweep trains at least one run to its end"
        assert out["done"] | out["stopped"] == runs and not out["done"] & out["stopped"]
        assert all(out["epoch"][r] == last for r in out["done"])
        assert all(out["epoch"][r] in rung_epochs for r in out["stopped"])
        assert out["spent"] <= n * last
        assert out["reached"] == sorted(out["reached"], reverse=True) and out["reached"][0] == n
        if n >= eta**2 and eta >= 3:  # a small part of the grid's epochs (ASHA's promotions are final, so an
            assert out["spent"] <= n * last / 2  # unlucky arrival order costs more than synchronous halving)
        best = max(range(n), key=lambda i: quality[i])
        if slots == 1 and order[0] == best:  # alone at every rung first, then always on top: it goes on
            assert f"r{best}" in out["done"]


def test_a_stop_says_how_many_went_past_the_rung_counting_the_last_resort_promotion() -> None:
    # two runs at rung 2 with eta 3: floor(2/3) = 0 by the rule, but the best went on as the sweep's last way on
    done = [
        RunView("a", {0: 0.5, 1: 0.9, 2: 0.95}, past=True),
        RunView("b", {0: 0.4, 1: 0.6}, paused_at=1),
        RunView("c", {0: 0.3}, paused_at=0),
    ]
    by_run = {d.run: d for d in asha.decide(done, 3, 3, True)}
    b, c = by_run["b"], by_run["c"]
    assert (b.action, b.rank, b.reached, b.top, b.went, b.cutoff) == ("stop", 2, 2, 0, 1, 0.9)
    assert (c.action, c.rank, c.reached, c.went, c.cutoff) == ("stop", 3, 3, 2, 0.4)  # b went past rung 1 too
