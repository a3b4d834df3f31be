"""Curves thinned to the pixels a chart has, keeping each pixel column's extremes. Pure; no Textual.

A terminal chart is a few hundred braille columns wide; a curve of 400k points drawn as such costs
what 400k points cost and shows what ~300 columns show. Both functions here keep, per bucket of x,
the lowest and the highest point (in x order), plus the first and the last point of the curve, so a
spike or a dip that a pixel would show is never thinned away (a stride would drop it).

- :func:`minmax`: one pass over a whole curve (C-speed builtins per bucket, not a Python loop per
  point), for a chart handed more points than it has columns;
- :class:`MinMax`: an accumulator for a curve that grows point by point: appending is O(1)
  amortised, reading it is O(its buckets), however many points it has seen.
"""

from __future__ import annotations

import math
import operator
from bisect import bisect_left
from collections.abc import Sequence

Point = tuple[float, float]


def _keep(y: object, positive: bool) -> bool:
    return isinstance(y, (int, float)) and math.isfinite(y) and (not positive or y > 0)


def finite_points(xs: Sequence[float], ys: Sequence[float], positive: bool = False) -> list[Point]:
    """The points whose y is a finite number (and > 0 with ``positive``: a log axis)."""
    return [(x, y) for x, y in zip(xs, ys) if _keep(y, positive)]


def _extremes(xs: Sequence[float], ys: Sequence[float], a: int, b: int, positive: bool) -> list[Point]:
    """The lowest and highest point of ``[a, b)`` in x order (one point if they coincide)."""
    seg = ys[a:b]
    try:
        fast = math.isfinite(sum(seg)) and (not positive or min(seg) > 0)
    except TypeError:  # a None among them
        fast = False
    if fast:
        lo, hi = seg.index(min(seg)), seg.index(max(seg))
    else:
        ok = [i for i, y in enumerate(seg) if _keep(y, positive)]
        if not ok:
            return []
        lo = min(ok, key=seg.__getitem__)
        hi = max(ok, key=seg.__getitem__)
    i, j = sorted((lo, hi))
    return [(xs[a + i], seg[i])] if i == j else [(xs[a + i], seg[i]), (xs[a + j], seg[j])]


def minmax(xs: Sequence[float], ys: Sequence[float], buckets: int, positive: bool = False) -> list[Point]:
    """At most ``2 * buckets + 2`` finite points of the curve: per bucket of x (equal widths when
    ``xs`` ascend, else equal counts) its lowest and highest point, plus the curve's first and last.
    A curve of no more than ``2 * buckets`` points comes back whole (its finite points)."""
    n = min(len(xs), len(ys))
    if n <= 2 * buckets:
        return finite_points(xs[:n], ys[:n], positive)
    xs, ys = xs[:n], ys[:n]
    if all(map(operator.le, xs, xs[1:])) and xs[-1] > xs[0]:
        x0, width = xs[0], (xs[-1] - xs[0]) / buckets
        bounds = [0] + [bisect_left(xs, x0 + k * width) for k in range(1, buckets)] + [n]
    else:
        bounds = [k * n // buckets for k in range(buckets + 1)]
    out: list[Point] = []
    for a, b in zip(bounds, bounds[1:]):
        if b > a:
            out += _extremes(xs, ys, a, b, positive)
    ends = finite_points((xs[0], xs[-1]), (ys[0], ys[-1]), positive)
    if ends and (not out or ends[0][0] < out[0][0]):
        out.insert(0, ends[0])
    if len(ends) == 2 and (not out or ends[-1][0] > out[-1][0]):
        out.append(ends[-1])
    return out


class MinMax:
    """A growing curve kept as at most ``capacity`` buckets of consecutive points, each holding its
    first, lowest, highest and last point; when full, neighbours merge in pairs (a bucket then spans
    twice as many points). :meth:`points` is the curve as a chart draws it. Non-finite y are skipped."""

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2. Received: capacity={capacity}")
        self.capacity = capacity
        self.span = 1  # points per full bucket
        self.seen = 0  # finite points appended
        self._buckets: list[list[Point]] = []  # [first, lowest, highest, last]
        self._fill = 0  # points in the last bucket

    def append(self, x: float, y: float) -> None:
        if not _keep(y, False):
            return
        self.seen += 1
        p = (x, y)
        if self._buckets and self._fill < self.span:
            b = self._buckets[-1]
            if y < b[1][1]:
                b[1] = p
            if y > b[2][1]:
                b[2] = p
            b[3] = p
            self._fill += 1
            return
        if len(self._buckets) == self.capacity:
            self._merge()
        self._buckets.append([p, p, p, p])
        self._fill = 1

    def extend(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        for x, y in zip(xs, ys):
            self.append(x, y)

    def _merge(self) -> None:
        merged = []
        for i in range(0, len(self._buckets) - 1, 2):
            a, b = self._buckets[i], self._buckets[i + 1]
            merged.append([a[0], min(a[1], b[1], key=_y), max(a[2], b[2], key=_y), b[3]])
        if len(self._buckets) % 2:
            merged.append(self._buckets[-1])
        self._buckets = merged
        self.span *= 2
        self._fill = self.span  # the last bucket counts as full: a new one starts

    def points(self) -> list[Point]:
        """The kept points in x order: each bucket's first, extremes and last, without repeats."""
        out: list[Point] = []
        for first, lo, hi, last in self._buckets:
            for p in (first, *sorted((lo, hi)), last):
                if not out or out[-1] is not p:
                    out.append(p)
        return out


def _y(p: Point) -> float:
    return p[1]
