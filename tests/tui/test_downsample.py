"""Curves thinned to a chart's columns: every column's extremes survive, the count is bounded."""

from __future__ import annotations

import math
import random

import pytest

from tltui.tui.downsample import MinMax, finite_points, minmax


def noisy(n: int, seed: int = 0) -> tuple[list[float], list[float]]:
    rnd = random.Random(seed)
    return [float(i) for i in range(n)], [math.sin(i / 500) + rnd.gauss(0, 0.1) for i in range(n)]


def test_minmax_keeps_each_buckets_extremes_and_the_ends() -> None:
    xs, ys = noisy(100_000)
    ys[33_333] = 50.0  # a spike between any stride's samples
    ys[66_667] = -50.0
    pts = minmax(xs, ys, 300)
    assert len(pts) <= 2 * 300 + 2
    assert pts[0] == (xs[0], ys[0]) and pts[-1] == (xs[-1], ys[-1])
    assert [p[0] for p in pts] == sorted(p[0] for p in pts)
    got = dict(pts)
    assert got[33_333.0] == 50.0 and got[66_667.0] == -50.0
    # each bucket of x: its lowest and highest point are drawn
    width = (xs[-1] - xs[0]) / 300
    for k in (0, 17, 150, 299):
        inside = [(x, y) for x, y in zip(xs, ys) if k * width <= x - xs[0] < (k + 1) * width]
        drawn = [p for p in pts if k * width <= p[0] - xs[0] < (k + 1) * width]
        assert min(inside, key=lambda p: p[1]) in drawn and max(inside, key=lambda p: p[1]) in drawn


def test_minmax_returns_a_short_curve_whole_and_skips_what_cannot_be_drawn() -> None:
    assert minmax([1.0, 2.0, 3.0], [1.0, float("nan"), 3.0], 10) == [(1.0, 1.0), (3.0, 3.0)]
    assert minmax([], [], 10) == []
    xs, ys = noisy(5000)
    ys[10] = float("inf")
    ys[20] = None  # type: ignore[call-overload]
    ys[30] = -1.0
    pts = minmax(xs, ys, 50, positive=True)
    assert all(math.isfinite(y) and y > 0 for _, y in pts)
    assert max(y for _, y in pts) == max(y for _, y in finite_points(xs, ys, positive=True))


def test_minmax_falls_back_to_equal_counts_when_x_is_not_ascending() -> None:
    xs, ys = noisy(10_000)
    xs[5000], xs[5001] = xs[5001], xs[5000]
    ys[7777] = 9.0
    pts = minmax(xs, ys, 100)
    assert len(pts) <= 202 and (7777.0, 9.0) in pts


def test_minmax_accumulator_is_bounded_and_keeps_the_extremes() -> None:
    acc = MinMax(capacity=64)
    xs, ys = noisy(200_000, seed=3)
    ys[123_456] = 99.0
    ys[4] = -99.0
    acc.extend(xs, ys)
    acc.append(200_000.0, float("nan"))
    pts = acc.points()
    assert len(pts) <= 4 * 64 and acc.seen == 200_000
    assert [p[0] for p in pts] == sorted(p[0] for p in pts)
    assert (123_456.0, 99.0) in pts and (4.0, -99.0) in pts
    assert pts[0] == (0.0, ys[0]) and pts[-1] == (xs[-1], ys[-1])
    assert max(y for _, y in pts) == max(ys) and min(y for _, y in pts) == min(ys)
    with pytest.raises(ValueError, match="capacity"):
        MinMax(capacity=1)
