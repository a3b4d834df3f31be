"""A sweep's sampled keys: ``loguniform``, ``uniform``, ``int`` and ``choice`` draws, reproducible by seed.

A ``[sweep]`` table holds grid keys (a list of values, as before) and sampled keys (an inline table
naming one distribution), plus ``samples`` (how many draws) and ``seed``::

    [sweep]
    "freeze.depth" = [0, 2]                                # grid
    "train.learning_rate" = { loguniform = [1e-4, 1e-1] }  # sampled
    "phases.2.freeze.depth" = { int = [0, 4] }             # both ends included
    samples = 6
    seed = 0

The sweep is then ``samples`` repetitions of the grid, each grid point with its own draws (Ray Tune's
``num_samples`` with a ``grid_search``): 2 x 6 = 12 runs here. The draws depend only on the seed, the
keys and their order, so ``tltui check`` lists the very runs ``queue add`` creates.

Pure (stdlib ``random`` only): :mod:`tltui.core.presets` parses and validates it, :func:`draw` samples.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tltui.core.protocol import METRIC_KEYS

#: The distributions a sampled key may name, and what each takes.
KINDS = {
    "loguniform": "[low, high], 0 < low < high: log-uniform floats",
    "uniform": "[low, high], low < high: uniform floats",
    "int": "[low, high], low <= high: uniform integers, both ends included",
    "choice": "[a, b, ...]: one of the values, each as likely",
}
#: ``[sweep]`` keys that are not preset keys.
RESERVED = ("samples", "seed", "budget")
MAX_SAMPLES = 1000


class Budget(BaseModel):
    """``[sweep.budget]``: successive halving over the queue (ASHA). Rungs at ``min_epochs``,
    ``min_epochs * eta``, ... below the run's last epoch; a run pauses at each rung and goes on only when
    it is in the top ``1/eta`` of the runs that reached it (:mod:`tltui.core.asha`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    metric: str = Field("val_acc", description="the epoch metric runs are ranked by")
    mode: Literal["max", "min"] | None = Field(None, description='"max" or "min"; default: min for a loss, else max')
    min_epochs: int = Field(1, ge=1, le=100_000, description="r: the first rung's epoch")
    eta: int = Field(3, ge=2, le=100, description="the reduction factor: 1/eta of a rung's runs go on")
    max_epochs: int | None = Field(
        None, ge=1, le=100_000, description="R: epochs of a run that is never stopped (default: the preset's)"
    )
    rung_in_first_epoch: bool = Field(
        False, description="let a rung fall in a phase's first epoch (default: moved to the next epoch)"
    )

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in METRIC_KEYS:
            raise ValueError(f"expected one of {', '.join(METRIC_KEYS)}, got {v!r}")
        return v

    @property
    def maximize(self) -> bool:
        return self.mode == "max" if self.mode is not None else not self.metric.endswith("loss")


class SweepSpace(BaseModel):
    """What ``[sweep]`` holds besides its grid: the sampled keys (``{kind: args}`` each), how many
    samples and the seed. Empty (``samples == 0``): a plain grid."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    samples: int = Field(0, ge=0, le=MAX_SAMPLES, description="draws of the sampled keys (x the grid)")
    seed: int = Field(0, description="the draws' seed: the same seed, keys and samples give the same runs")
    keys: dict[str, dict[str, list[Any]]] = Field(
        default_factory=dict,
        description='written as `"section.key" = { loguniform = [lo, hi] }` (or `uniform`, `int` (both ends '
        "included), `choice = [a, b, ...]`): a sampled key, drawn for each run",
    )
    budget: Budget | None = None

    @property
    def active(self) -> bool:
        return bool(self.samples or self.keys)

    def to_sweep_entries(self) -> dict[str, Any]:
        """The entries it came from in ``[sweep]`` (for writing a preset back)."""
        out: dict[str, Any] = {}
        if self.active:
            out = {**self.keys, "samples": self.samples, "seed": self.seed}
        if self.budget is not None:
            out["budget"] = self.budget.model_dump(exclude_none=True)
        return out


def split(sweep: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``[sweep]`` as written -> (its grid entries, the :class:`SweepSpace` fields): a dotted key whose
    value is a table is sampled, ``samples`` and ``seed`` are the space's; everything else is the
    grid's (where a non-dotted key is an error, as before)."""
    grid: dict[str, Any] = {}
    space: dict[str, Any] = {}
    for key, value in sweep.items():
        if key in RESERVED:
            space[key] = value
        elif "." in key and isinstance(value, Mapping):
            space.setdefault("keys", {})[key] = dict(value)
        else:
            grid[key] = value
    return grid, space


def problem(spec: Mapping[str, list[Any]]) -> str | None:
    """What is wrong with one sampled key's ``{kind: args}``, or ``None``."""
    if len(spec) != 1 or next(iter(spec)) not in KINDS:
        return "expected one of " + ", ".join(f"{{ {k} = {a.split(':')[0]} }}" for k, a in KINDS.items())
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        return None if args else "choice: expected a non-empty list of values"
    numbers = all(isinstance(a, int | float) and not isinstance(a, bool) for a in args)
    if len(args) != 2 or not numbers:
        return f"{kind}: expected {KINDS[kind]}, got {args!r}"
    lo, hi = args
    if kind == "int" and not all(isinstance(a, int) for a in args):
        return f"int: expected two integers, got {args!r}"
    if not all(math.isfinite(a) for a in args):
        return f"{kind}: expected finite numbers, got {args!r}"
    if kind == "loguniform" and lo <= 0:
        return f"loguniform: low must be > 0, got {lo!r}"
    if (kind == "int" and lo > hi) or (kind != "int" and lo >= hi):
        return f"{kind}: expected {KINDS[kind]}, got {args!r}"
    return None


def extremes(spec: Mapping[str, list[Any]]) -> list[Any]:
    """Values that stand for the whole range when a preset checks a sampled key: both ends, or every choice."""
    kind, args = next(iter(spec.items()))
    return list(args) if kind == "choice" else [args[0], args[1]]


def _one(rng: random.Random, kind: str, args: list[Any]) -> Any:
    if kind == "choice":
        return args[rng.randrange(len(args))]
    lo, hi = args
    if kind == "int":
        return rng.randint(lo, hi)
    if kind == "uniform":
        return rng.uniform(lo, hi)
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def draw(space: SweepSpace, count: int) -> list[dict[str, Any]]:
    """``count`` draws of the sampled keys, in the order they are written; the same seed, keys and
    count give the same values on every machine (Python's Mersenne Twister, seeded by an int)."""
    rng = random.Random(space.seed)
    return [{key: _one(rng, *next(iter(spec.items()))) for key, spec in space.keys.items()} for _ in range(count)]


def shown(value: Any) -> str:
    """A drawn value in a run's name: floats to 3 significant digits (the full value is in its preset)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
