"""Preset schema, TOML load/save, ``--set`` overrides and sweep expansion.

A preset is data, never code: TOML parsed with ``tomllib`` and validated by
pydantic models that forbid unknown keys. Every problem becomes a
:class:`PresetIssue` that names the file, line and field, one short line each.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tltui.core import catalog, tomlpos, validation
from tltui.core import sweep_space as sampling
from tltui.core.cluster_config import ClusterConfig
from tltui.core.errors import PresetError, PresetIssue, TltuiError

if TYPE_CHECKING:
    from tltui.core.workspace import Workspace

MAX_PRESET_BYTES = 1_000_000
MAX_SWEEP_RUNS = 1000
MAX_NAME_CHARS = 120
#: What a preset's (and a run's) name is made of.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-\[\]=, ]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataConfig(_Strict):
    source: str = Field(
        description='`"tfds:NAME"` (a TFDS dataset) or `"folder:PATH"` (one subfolder per class, searched '
        "recursively; relative to the preset file)"
    )
    train_split: str = Field("train[:90%]", description="TFDS split to train on (any TFDS slicing)")
    val_split: str = Field(
        "train[90%:]",
        description="TFDS split validated on every epoch: early stopping and the best epoch are chosen on it "
        "(`check` warns when it is the test split)",
    )
    test_split: str = Field(
        "test",
        description="TFDS split evaluated once after training, on the weights `model.keras` holds (see "
        '`train.restore_best`); reported apart as `test_acc` / `test_top5_acc`; `""` for none. Folders have no '
        "test split",
    )
    download: bool = Field(
        True,
        description="a TFDS dataset not prepared in `data_dir` is downloaded and prepared first (once per data "
        "dir); `false`: the run fails with one line saying what is missing and how to bring it",
    )
    validation_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="`folder:` sources: share of each class held out for validation (stratified, deterministic "
        "for a given `train.seed`)",
    )
    data_dir: str | None = Field(
        None, description="where the prepared TFDS data lives (unset: `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`)"
    )
    image_size: list[int] = Field(
        default_factory=lambda: [224, 224],
        description="model input `[height, width]`; images stay at their native size (uint8) in the pipeline and "
        "are resized inside the model",
    )
    batch_size: int = Field(32, ge=1, le=65536, description="images per training step")
    augment: bool = Field(
        True,
        description="random horizontal flip, shift (10%) and brightness (15%) per image, training only, in the "
        "training step on the GPU (never in the saved model); drawn anew every epoch from `(seed, batch index in the "
        "run)`, so two runs with one seed see the same augmentations and a resumed run the ones it would have seen",
    )
    train_limit: int | None = Field(None, ge=1, description="use at most this many training images")
    val_limit: int | None = Field(None, ge=1, description="use at most this many validation images")
    test_limit: int | None = Field(None, ge=1, description="use at most this many test images")
    shuffle_buffer: int = Field(
        10_000,
        ge=0,
        description="0 turns shuffling off. A folder (in memory or memory-mapped) and a TFDS split that fits in "
        "memory (`[cache] in_memory_fraction`) are fully reshuffled every epoch by `(seed, epoch)`; a larger TFDS "
        "split streams through a shuffle buffer of this many examples",
    )

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        kind, sep, rest = v.partition(":")
        if not sep or kind not in ("tfds", "folder") or not rest.strip():
            raise ValueError(f'expected "tfds:NAME" or "folder:PATH", got {v!r}')
        return v

    @field_validator("image_size")
    @classmethod
    def _image_size(cls, v: list[int]) -> list[int]:
        if len(v) != 2 or any(not (8 <= x <= 4096) for x in v):
            raise ValueError(f"expected [height, width] with sides in 8..4096, got {v!r}")
        return v

    @property
    def kind(self) -> str:
        return self.source.partition(":")[0]

    @property
    def target(self) -> str:
        return self.source.partition(":")[2]


class ModelConfig(_Strict):
    backbone: str = Field(description="a `keras.applications` backbone (below), or `hub:HANDLE_OR_PATH`")
    weights: str = Field(
        "imagenet",
        description='`"imagenet"` (the file `keras.applications` fetches, into `$KERAS_HOME/models`), `"none"` '
        '(random), `"PATH.weights.h5"`, `"run:RUN_ID"` (the backbone of a completed run)',
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the Dense head")
    alpha: float | None = Field(
        None, gt=0.0, le=2.0, description="width multiplier, MobileNet backbones only (unset: the backbone's)"
    )
    hub_output_dim: int | None = Field(
        None, ge=1, description="feature size of a `hub:` backbone (checked against the module's signature)"
    )
    bn_momentum: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="BatchNorm moving-average momentum of the backbone (unset: its own); short runs from scratch "
        "want ~0.9",
    )

    @field_validator("backbone")
    @classmethod
    def _backbone(cls, v: str) -> str:
        if catalog.is_hub(v):
            if not v[len(catalog.HUB_PREFIX) :].strip():
                raise ValueError('expected "hub:HANDLE_OR_PATH" with a handle after "hub:"')
            return v
        if catalog.lookup(v) is None:
            close = difflib.get_close_matches(v, list(catalog.BACKBONES), n=1)
            if close:
                raise ValueError(f"unknown backbone {v!r}; did you mean {close[0]!r}?")
            names = ", ".join(sorted(catalog.BACKBONES))
            raise ValueError(f"unknown backbone {v!r}; known: {names}, or hub:HANDLE")
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: str) -> str:
        if v in ("imagenet", "none") or v.startswith("run:") or v.endswith(".weights.h5"):
            return v
        raise ValueError(f'expected "imagenet", "none", "PATH.weights.h5" or "run:RUN_ID", got {v!r}')


class FreezeConfig(_Strict):
    depth: int | str = Field(
        0,
        description='macro-blocks frozen from the input, `0..N`, or `"all"` (ResNet: 1 = stem + conv2, 2 = + conv3, '
        "3 = + conv4, 4 = + conv5)",
    )
    batchnorm: Literal["frozen", "inference", "trainable"] = Field(
        "frozen",
        description='`"frozen"`: every BatchNorm layer stays frozen (statistics and gamma/beta; inference mode), '
        'whatever the depth; `"inference"`: every BatchNorm layer runs in inference mode, its gamma/beta train as '
        'its stage says (the keras.io recipe); `"trainable"`: BatchNorm trains with batch statistics, even inside '
        'frozen blocks (the notebook\'s policy). Training from scratch needs `"trainable"`',
    )

    @field_validator("depth", mode="plain")
    @classmethod
    def _depth(cls, v: object) -> int | str:
        if v == "all" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return v  # type: ignore[return-value]
        raise ValueError(f'expected a number of macro-blocks 0..N or "all", got {v!r}')


class TrainConfig(_Strict):
    epochs: int = Field(10, ge=1, le=100_000, description="epochs to train (a phase that sets none trains this many)")
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = Field("adam", description="the Keras optimizer")
    learning_rate: float = Field(1e-3, gt=0.0, le=10.0, description="the optimizer's learning rate")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD and RMSprop")
    nesterov: bool = Field(False, description="SGD")
    weight_decay: float = Field(0.0, ge=0.0, description="decoupled weight decay")
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="> 0 trains on one-hot labels with CategoricalCrossentropy"
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description='`"cosine"` decays to 0 over all epochs (of the phase)'
    )
    early_stopping_patience: int = Field(
        0,
        ge=0,
        description="epochs without a better `val_acc` before stopping; on stopping, the phase's best weights are "
        "restored (the next phase starts from them); a phase that trains all its epochs keeps its last; 0 = off",
    )
    restore_best: bool = Field(
        True,
        description="`model.keras` (and the test split) gets the weights of the epoch with the best `val_acc` of the "
        'whole run, all phases together (ties: the earlier), as Keras\'s `ModelCheckpoint(monitor="val_acc", '
        "save_best_only=True)` keeps them; training itself is unchanged. `false`: the last epoch's (early "
        "stopping's best, when it ended the last phase). Every place that shows the run's result says which epoch "
        "that is",
    )
    checkpoint_every: int = Field(
        5,
        ge=0,
        description="save `checkpoints/epoch-NNNN.keras` every N epochs (atomically; written in the background "
        "while the next epoch trains); 0 = off",
    )
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Python/NumPy/TF seeds, shuffling, the folder split")
    mixed_precision: bool | Literal["auto", "mixed_float16", "mixed_bfloat16"] = Field(
        "auto",
        description='`"auto"`: `"mixed_bfloat16"` on GPUs with compute capability >= 8.0, `"mixed_float16"` on >= 7.0, '
        'off on a CPU and older GPUs; `true` (= `"mixed_float16"`), `"mixed_bfloat16"` or `false`; the softmax and '
        "the loss stay float32",
    )
    jit_compile: bool | Literal["auto"] = Field(
        "auto",
        description='XLA-compile the train step; `"auto"`: as Keras decides (on with one GPU, off on a CPU and with '
        "`gpus` > 1); `true` cannot run with `gpus` > 1",
    )
    gpus: int | None = Field(
        None, ge=0, le=64, description="unset: one GPU if any, else CPU; 0: CPU; N > 1: MirroredStrategy over N GPUs"
    )
    feature_cache: Literal["auto", "off"] = Field(
        "auto",
        description="with a completely frozen backbone (BatchNorm in inference mode, no augmentation), compute its "
        "features once and train the head on them",
    )
    steps_per_epoch: int | None = Field(
        None, ge=1, description="fixed steps per epoch (the training data repeats; unset: the whole dataset)"
    )


MAX_PHASES = 10


class PhaseFreeze(_Strict):
    depth: int | str | None = None
    batchnorm: Literal["frozen", "inference", "trainable"] | None = None

    @field_validator("depth", mode="plain")
    @classmethod
    def _depth(cls, v: object) -> int | str | None:
        return None if v is None else FreezeConfig._depth(v)


class PhaseTrain(_Strict):
    epochs: int | None = Field(None, ge=1, le=100_000)
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] | None = None
    learning_rate: float | None = Field(None, gt=0.0, le=10.0)
    lr_schedule: Literal["constant", "cosine"] | None = None
    early_stopping_patience: int | None = Field(None, ge=0)


#: What a ``[[phases]]`` entry may set (besides its name); every other field stays at the preset's value.
PHASE_FIELDS = tuple(
    f"{section}.{key}"
    for section, model in (("freeze", PhaseFreeze), ("train", PhaseTrain))
    for key in model.model_fields
)


class PhaseConfig(_Strict):
    """One ``[[phases]]`` entry: a stretch of the run with its own freeze and optimizer. The model
    is re-compiled at its start (a new optimizer, as Keras requires after ``trainable`` changes)."""

    name: str = Field("", max_length=40, description="the phase's name, shown as `phase 2/2 NAME`")
    freeze: PhaseFreeze = PhaseFreeze()
    train: PhaseTrain = PhaseTrain()


class Preset(_Strict):
    name: str = Field(
        min_length=1,
        max_length=MAX_NAME_CHARS,
        description="preset name; sweep runs are named `name[key=value,...]` (other characters become `_`; a "
        "longer name is cut, ending in a short hash)",
    )
    description: str = Field("", description="free text")
    data: DataConfig
    model: ModelConfig
    freeze: FreezeConfig = FreezeConfig()
    train: TrainConfig = TrainConfig()
    cluster: ClusterConfig = Field(
        default_factory=ClusterConfig,
        description="`[cluster.slurm]`, `[cluster.ray]`: what these runs ask of a cluster (docs/guide/clusters.md)",
    )
    phases: list[PhaseConfig] = Field(
        default_factory=list,
        max_length=MAX_PHASES,
        description="`[[phases]]`: a run in phases, each trained after the previous one (the table below)",
    )
    sweep: dict[str, list[Any]] = Field(
        default_factory=dict,
        description='`"section.key" = [v1, v2, ...]`: one run per combination (cartesian product over all listed '
        'keys, at most 1000 runs); `"phases.N.section.key"` reaches phase N',
    )
    sweep_space: sampling.SweepSpace = Field(
        default_factory=sampling.SweepSpace,
        description='written inside `[sweep]`: `"section.key" = { loguniform = [lo, hi] }` (or uniform, int, '
        "choice) samples a key, `samples = N` draws per grid point, `seed = S` (docs/guide/sweeps.md)",
    )

    @model_validator(mode="before")
    @classmethod
    def _split_sweep(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("sweep"), dict):
            grid, space = sampling.split(data["sweep"])
            if space:
                data = {**data, "sweep": grid, "sweep_space": space}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.fullmatch(v):
            raise ValueError("use letters, digits and . _ - (start with a letter or digit)")
        return v

    @model_validator(mode="after")
    def _cross(self) -> Preset:
        for key, values in self.sweep.items():
            if not values:
                raise ValueError(f"sweep {key!r}: expected a non-empty list of values")
        return self

    def phase_presets(self) -> list[Preset]:
        """The preset each phase trains with (its overrides applied, no phases, no sweep); the preset
        itself, once, when it declares none."""
        if not self.phases:
            return [self]
        base = self.model_dump(mode="python")
        base["phases"], base["sweep"], base["sweep_space"] = [], {}, {}
        out = []
        for ph in self.phases:
            data = copy.deepcopy(base)
            for section, values in (("freeze", ph.freeze), ("train", ph.train)):
                for k, v in values.model_dump(exclude_none=True).items():
                    data[section][k] = v
            out.append(Preset.model_validate(data))
        return out

    @property
    def total_epochs(self) -> int:
        """Epochs of the whole run: the sum over its phases (early stopping may end a phase sooner)."""
        return sum(p.train.epochs for p in self.phase_presets())

    def phase_label(self, index: int) -> str:
        """``"2/2 fine-tune"`` for the second of two phases (``index`` counts from 0)."""
        name = self.phases[index].name if self.phases else ""
        return f"{index + 1}/{max(1, len(self.phases))}" + (f" {name}" if name else "")

    def to_toml_dict(self) -> dict[str, Any]:
        d = self.model_dump(mode="python", exclude_none=True)
        if not d.get("phases"):
            d.pop("phases", None)
        else:  # a phase's unset sections are left out
            d["phases"] = [{k: v for k, v in ph.items() if v not in ({}, "")} for ph in d["phases"]]
        d["sweep"] = {**d.get("sweep", {}), **self.sweep_space.to_sweep_entries()}
        d.pop("sweep_space", None)
        if not d.get("sweep"):
            d.pop("sweep", None)
        if not d.get("description"):
            d.pop("description", None)
        if self.cluster.is_empty():
            d.pop("cluster", None)
        return d


@dataclass(frozen=True)
class RunSpec:
    """One run of an expanded preset: its name, its sweep overrides, its resolved preset."""

    name: str
    overrides: dict[str, Any]
    preset: Preset


# --------------------------------------------------------------------------- locating lines


def locate(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Best-effort 1-based line of a field given its pydantic location (phases counted from 1);
    see :func:`tltui.core.tomlpos.locate`."""
    return tomlpos.locate(text, ".".join(str(p) for p in loc if isinstance(p, str)))


def _field_name(loc: validation.Loc) -> str:
    """A field as the user writes it: dotted, without list indices, phases counted from 1 (as the
    runs table shows them)."""
    if len(loc) >= 2 and loc[0] == "phases" and isinstance(loc[1], int):
        loc = ("phases", str(loc[1] + 1), *loc[2:])
    if loc[:1] == ("sweep_space",):  # written inside [sweep]
        loc = ("sweep", *(loc[2:] if loc[1:2] == ("keys",) else loc[1:]))
    return ".".join(str(p) for p in loc if isinstance(p, str)) or "(preset)"


def _unknown_key(loc: validation.Loc) -> str:
    if loc[:1] == ("sweep",):
        return "expected a dotted preset key, samples or seed"
    if loc[:1] == ("phases",):
        return "a phase may set only " + ", ".join(PHASE_FIELDS) + " (and name)"
    close = validation.close_match(str(loc[-1]) if loc else "", _keys_at(loc))
    if close:
        return f"unknown key; did you mean {close!r}?"
    return f"unknown key (not a key of {_keys_where(loc)}; every key: docs/reference/presets.md)"


def _keys_at(loc: validation.Loc) -> list[str]:
    """The keys the schema has where ``loc``'s last key was found (``train.learnin_rate``: [train]'s)."""
    model: type[BaseModel] = Preset
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(part)
        if f is None or not (isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)):
            return []
        model = f.annotation
    return list(model.model_fields)


def _keys_where(loc: validation.Loc) -> str:
    where = ".".join(p for p in loc[:-1] if isinstance(p, str))
    return f"[{where}]" if where else "a preset"


def _issues_from_validation(
    e: ValidationError, file: str, text: str | None, overrides: Mapping[str, Any] | None = None
) -> list[PresetIssue]:
    """The preset's validation errors, one issue per field; a field a ``--set`` gave names it."""
    origins = {key: f"--set {key}={_typed(value)}" for key, value in (overrides or {}).items()}
    return validation.issues(
        e.errors(include_url=False), file=file, text=text, field=_field_name, unknown=_unknown_key, origins=origins
    )


def set_origin(key: str, value: Any) -> str:
    """Where an override's value came from, as an issue names it: ``--set KEY=VALUE``."""
    return f"--set {key}={_typed(value)}"


def _typed(value: Any) -> str:
    """A ``--set`` value as it was typed (a TOML value; a bare string as it is)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


# --------------------------------------------------------------------------- parsing


def parse_value(raw: str) -> Any:
    """A ``--set`` value: a TOML value if it parses as one, else the bare string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return raw


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """``["train.epochs=3", "freeze.depth=all"]`` -> ``{"train.epochs": 3, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if sep and ('"' in key or "'" in key):  # a TOML quoted key: a preset's dotted name never needs one
            raise PresetError([PresetIssue("--set", None, None, _quoted_key(key, item))])
        if not sep or not key or not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*", key):
            raise PresetError([PresetIssue("--set", None, None, f"expected KEY=VALUE, got {item!r}")])
        if _swept_key(key):
            raise PresetError([PresetIssue("--set", None, None, _quoted_key(key, item))])
        out[key] = parse_value(raw.strip())
    return out


#: What ``--set sweep.X`` may set (a swept or sampled key is a quoted key of ``[sweep]``: the file's).
_SET_IN_SWEEP = ("samples", "seed", "budget")


def _swept_key(key: str) -> bool:
    """``sweep.train.learning_rate``: a key of ``[sweep]`` that ``--set`` cannot write (the file's
    ``"train.learning_rate"``)."""
    head, _, rest = key.partition(".")
    return head == "sweep" and bool(rest) and rest.split(".")[0] not in _SET_IN_SWEEP


def _quoted_key(key: str, item: str) -> str:
    bare = key.replace('"', "").replace("'", "")
    if _swept_key(bare):
        return (
            f"{item!r}: --set sets only sweep.samples, sweep.seed and sweep.budget.* of [sweep]; "
            f'write a swept or sampled key (like "train.learning_rate") in the preset\'s [sweep] table'
        )
    return f"{item!r}: KEY is a dotted name without quotes, like {bare}=..."


class KeyPathError(TltuiError, ValueError):
    """A dotted key that names no place in the preset (``phases.3`` of a two-phase preset)."""


def _phase_index(phases: Any, part: str, key: str) -> int:
    """The list index of ``phases.N`` (N counts from 1)."""
    n = len(phases) if isinstance(phases, list) else 0
    if not part.isdigit() or not 1 <= int(part) <= n:
        have = f"phases.1 .. phases.{n}" if n else "no [[phases]]"
        raise KeyPathError(f"{key}: no phase {part} (phases count from 1; the preset has {have})")
    return int(part) - 1


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur: Any = d
    for i, p in enumerate(parts[:-1]):
        if i == 1 and parts[0] == "phases":
            cur = cur[_phase_index(cur, p, key)]
            continue
        if not isinstance(cur, dict):
            raise KeyPathError(f"{key}: {'.'.join(parts[:i])} is not a table")
        nxt = cur.get(p)
        if not isinstance(nxt, dict | list):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    if not isinstance(cur, dict):
        if parts[0] == "phases" and len(parts) == 2:
            raise KeyPathError(f"{key}: expected a field inside a phase, like phases.1.train.epochs")
        raise KeyPathError(f"{key}: {'.'.join(parts[:-1])} is not a table")
    cur[parts[-1]] = value


def _get_dotted(d: Mapping[str, Any], key: str) -> Any:
    cur: Any = d
    for p in key.split("."):
        if isinstance(cur, list) and p.isdigit() and 1 <= int(p) <= len(cur):
            cur = cur[int(p) - 1]
            continue
        if not isinstance(cur, Mapping) or p not in cur:
            return None
        cur = cur[p]
    return cur


def loads(text: str, file: str = "<preset>", overrides: Mapping[str, Any] | None = None) -> Preset:
    """Parse and validate TOML text (plus ``--set`` overrides). Raises :class:`PresetError`."""
    if len(text) > MAX_PRESET_BYTES:
        raise PresetError([PresetIssue(file, None, None, f"file is larger than {MAX_PRESET_BYTES} bytes")])
    try:
        raw = tomllib.loads(text)
    except RecursionError:
        raise PresetError([PresetIssue(file, None, None, "TOML syntax error: nested too deeply")]) from None
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line = int(m.group(1)) if m else (text.count("\n") + 1 if "end of document" in str(e) else None)
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e)) or "invalid TOML"
        raise PresetError([PresetIssue(file, line, None, f"TOML syntax error: {msg}")]) from None
    return from_dict(raw, file=file, text=text, overrides=overrides)


def from_dict(
    raw: Mapping[str, Any],
    file: str = "<preset>",
    text: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Preset:
    data = copy.deepcopy(dict(raw))
    if "sweep_space" in data:  # the schema's name for what [sweep] holds, not a table of its own
        if text is not None:  # a preset file's [sweep_space] table: unknown, as in any TOML
            raise PresetError([PresetIssue(file, locate(text, ("sweep_space",)), "sweep_space", _unknown_key(()))])
        # a Preset.model_dump() handed back (no TOML text): its sampled keys go where a file writes them
        space = sampling.SweepSpace.model_validate(data.pop("sweep_space"))
        data["sweep"] = {**(data.get("sweep") or {}), **space.to_sweep_entries()}
    for key, value in (overrides or {}).items():
        try:
            _set_dotted(data, key, value)
        except KeyPathError as e:
            raise PresetError([PresetIssue("--set", None, None, str(e))]) from None
    try:
        preset = Preset.model_validate(data)
    except ValidationError as e:
        raise PresetError(_issues_from_validation(e, file, text, overrides)) from None
    _check_sweep(preset, data, file, text, overrides)
    return preset


def load(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Preset:
    """Load a preset file; a ``folder:`` source becomes absolute (relative to the file)."""
    path = Path(path)
    file = str(path)
    try:
        if path.stat().st_size > MAX_PRESET_BYTES:
            raise PresetError([PresetIssue(file, None, None, f"file is larger than {MAX_PRESET_BYTES} bytes")])
        blob = path.read_bytes()
    except FileNotFoundError:
        raise PresetError([PresetIssue(file, None, None, "no such preset file")]) from None
    except IsADirectoryError:
        raise PresetError([PresetIssue(file, None, None, "is a directory, expected a .toml file")]) from None
    except PermissionError:
        raise PresetError([PresetIssue(file, None, None, "permission denied")]) from None
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as e:
        line = blob[: e.start].count(b"\n") + 1
        raise PresetError([PresetIssue(file, line, None, "not UTF-8 text (is this a TOML preset?)")]) from None
    preset = loads(text, file=file, overrides=overrides)
    return resolve_paths(preset, path.parent)


def resolve_paths(preset: Preset, base: Path) -> Preset:
    """Make relative ``folder:`` sources, weights files and local hub paths absolute, in the preset and
    in its ``[sweep]`` values (a swept ``data.source = ["folder:a", "folder:b"]`` is relative to the file too)."""

    def source(v: Any) -> Any:
        if isinstance(v, str) and v.startswith("folder:"):
            return "folder:" + str((base / v[len("folder:") :]).expanduser().resolve())
        return v

    def data_dir(v: Any) -> Any:
        return str((base / v).expanduser().resolve()) if isinstance(v, str) and v else v

    def weights(v: Any) -> Any:
        return str((base / v).expanduser().resolve()) if isinstance(v, str) and v.endswith(".weights.h5") else v

    def backbone(v: Any) -> Any:
        if isinstance(v, str) and catalog.is_hub(v) and "://" not in v[len(catalog.HUB_PREFIX) :]:
            return catalog.HUB_PREFIX + str((base / v[len(catalog.HUB_PREFIX) :]).expanduser().resolve())
        return v

    paths = {"data.source": source, "data.data_dir": data_dir, "model.weights": weights, "model.backbone": backbone}
    data = preset.model_dump(mode="python")
    for key, fix in paths.items():
        table, leaf = key.split(".")
        data[table][leaf] = fix(data[table][leaf])
        if isinstance(data.get("sweep"), dict) and isinstance(data["sweep"].get(key), list):
            data["sweep"][key] = [fix(v) for v in data["sweep"][key]]
    return Preset.model_validate(data)


class _Where:
    """Where a ``[sweep]`` issue points: the field's line in the file, or the ``--set KEY=VALUE`` that
    gave the value (as :func:`_issues_from_validation` names it)."""

    def __init__(self, file: str, text: str | None, overrides: Mapping[str, Any] | None) -> None:
        self.file, self.text, self.overrides = file, text, dict(overrides or {})

    def issue(self, field: str, message: str, loc: tuple[str, ...] = (), causes: Iterable[str] = ()) -> PresetIssue:
        """``field``'s issue at ``loc`` in the file (default: the field's own line); an override of the
        field (or of a table holding it), else of one of ``causes`` (or inside one: keys whose value led
        to it), wins."""
        given = [k for k in self.overrides if field == k or field.startswith(k + ".")]
        given += [k for c in causes for k in self.overrides if k == c or k.startswith(c + ".")]
        if given:
            return PresetIssue(f"--set {given[0]}={_typed(self.overrides[given[0]])}", None, field, message)
        line = locate(self.text, loc or tuple(field.split("."))) if self.text else None
        return PresetIssue(self.file, line, field, message)


def _check_sweep(
    preset: Preset, data: Mapping[str, Any], file: str, text: str | None, overrides: Mapping[str, Any] | None = None
) -> None:
    issues: list[PresetIssue] = []
    where = _Where(file, text, overrides)
    total = 1
    space = preset.sweep_space
    swept = {key: list(values) for key, values in preset.sweep.items()}
    for key, spec in space.keys.items():
        if (why := sampling.problem(spec)) is not None:
            issues.append(where.issue(f"sweep.{key}", why, ("sweep", key)))
        else:
            swept[key] = sampling.extremes(spec)
    for key, values in swept.items():
        field = f"sweep.{key}"
        head = key.split(".")[0]
        if head not in ("data", "model", "freeze", "train", "phases") or "." not in key:
            issues.append(where.issue(field, 'expected a dotted key like "freeze.depth"', ("sweep", key)))
            continue
        total *= len(values) if key in preset.sweep else 1
        for v in values:
            if (problem := _sweep_value_problem(data, key, v)) is not None:
                issues.append(where.issue(field, problem, ("sweep", key)))
                break
    if space.keys and not space.samples:
        issues.append(where.issue("sweep.samples", "sampled keys need samples = N (N >= 1)", ("sweep",)))
    elif space.samples and not space.keys:
        issues.append(
            where.issue(
                "sweep.samples",
                'no key to sample: add one like "train.learning_rate" = { loguniform = [1e-4, 1e-2] }',
            )
        )
    total *= max(1, space.samples)
    if space.budget is not None:
        issues += _budget_issues(preset, data, swept, where)
    if total > MAX_SWEEP_RUNS:
        issues.append(
            where.issue("sweep", f"expands to {total} runs; at most {MAX_SWEEP_RUNS}", ("sweep",), ["sweep.samples"])
        )
    if issues:
        raise PresetError(issues)


#: A swept key that changes a run's epochs (and so its rungs).
_EPOCH_KEY = re.compile(r"train\.epochs|phases\.\d+\.train\.epochs")


def _budget_issues(
    preset: Preset, data: Mapping[str, Any], swept: Mapping[str, list[Any]], where: _Where
) -> list[PresetIssue]:
    """``[sweep.budget]`` against the preset: ``max_epochs`` replaces ``train.epochs`` (so not with phases
    or a swept ``train.epochs``); every run (each swept number of epochs) has a rung below its last epoch."""
    from tltui.core import asha

    budget = preset.sweep_space.budget
    assert budget is not None
    if budget.max_epochs is not None and preset.phases:
        return [
            where.issue("sweep.budget.max_epochs", "a phased preset sets each phase's epochs: leave max_epochs out")
        ]
    if budget.max_epochs is not None and "train.epochs" in swept:
        return [where.issue("sweep.budget.max_epochs", "sweeps train.epochs too: keep one of the two")]
    keys = [k for k in swept if _EPOCH_KEY.fullmatch(k)]
    for combo in itertools.islice(itertools.product(*(swept[k] for k in keys)), MAX_SWEEP_RUNS):
        trial = copy.deepcopy(dict(data))
        trial.pop("sweep", None)
        try:
            for k, v in zip(keys, combo, strict=True):
                _set_dotted(trial, k, v)
            run = Preset.model_validate(trial)
        except (KeyPathError, ValidationError):
            continue  # a bad swept value: said above
        last = budget.max_epochs or run.total_epochs
        phases = [p.train.epochs for p in run.phase_presets()]
        if asha.rungs(budget.min_epochs, budget.eta, last, phases, budget.rung_in_first_epoch):
            continue
        runs = " (the runs with " + ", ".join(f"{k}={v}" for k, v in zip(keys, combo, strict=True)) + ")"
        why = (
            f"below the runs' {last} epochs"
            if budget.min_epochs >= last
            else f"in the runs' {last} epochs: each falls on a phase's first epoch and moves one later, to the "
            "last epoch or past it (rung_in_first_epoch = true keeps a rung there)"
        )
        causes = ["sweep.budget.max_epochs", "train.epochs", "phases"]
        message = f"{budget.min_epochs} leaves no rung {why}{runs if keys else ''}"
        return [where.issue("sweep.budget.min_epochs", message, causes=causes)]
    return []


def _sweep_value_problem(data: Mapping[str, Any], key: str, value: Any) -> str | None:
    """Why the preset with ``key`` set to ``value`` does not validate, or ``None``."""
    trial = copy.deepcopy(dict(data))
    trial.pop("sweep", None)
    try:
        _set_dotted(trial, key, value)
        Preset.model_validate(trial)
    except KeyPathError as e:
        return str(e).partition(": ")[2]
    except ValidationError as e:
        msgs = _issues_from_validation(e, "", None)
        return f"value {value!r}: {msgs[0].message if msgs else 'invalid'}"
    return None


# --------------------------------------------------------------------------- sweeps


def _fmt(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _label(key: str) -> str:
    """A sweep key in a run name: ``depth`` for ``freeze.depth``, ``phase2.depth`` for ``phases.2.freeze.depth``."""
    parts = key.split(".")
    return f"phase{parts[1]}.{parts[-1]}" if parts[0] == "phases" and len(parts) > 2 else parts[-1]


def _run_name(name: str, label: str) -> str:
    """``name[label]``, made a valid preset name: characters a name cannot hold become ``_``, and one
    that does not fit ``MAX_NAME_CHARS`` is cut, ending in a hash of the whole (so the runs stay distinct)."""
    full = f"{name}[{label}]"
    if _NAME_RE.fullmatch(full) and len(full) <= MAX_NAME_CHARS:
        return full
    safe = re.sub(r"[^A-Za-z0-9._\-\[\]=, ]", "_", full)
    tail = f",{hashlib.sha256(full.encode()).hexdigest()[:8]}]"
    return safe[: len(safe) - 1][: MAX_NAME_CHARS - len(tail)] + tail


def _run_issue(preset: Preset, overrides: Mapping[str, Any], e: ValidationError) -> PresetIssue:
    """A run of the sweep that does not validate: its first error, named by the sweep key that gave it."""
    errs = e.errors(include_url=False)
    field = _field_name(errs[0]["loc"]) if errs else ""
    key = next((k for k in overrides if field == k or field.startswith(k + ".")), next(iter(overrides), ""))
    msgs = _issues_from_validation(e, "", None)
    message = msgs[0].message if msgs else "invalid"
    return PresetIssue(preset.name, None, f"sweep.{key}", f"value {overrides.get(key)!r}: {message}")


def expand(preset: Preset) -> list[RunSpec]:
    """One :class:`RunSpec` per run of the sweep: the grid's combinations (cartesian product, in key
    order), repeated ``samples`` times with the sampled keys drawn for each (same seed, same runs)."""
    base = preset.model_dump(mode="python")
    space = preset.sweep_space
    budget = space.budget
    # every run keeps the budget: its worker pauses at the rungs (core/asha.py)
    base["sweep"], base["sweep_space"] = {}, ({"budget": budget.model_dump()} if budget else {})
    if budget is not None and budget.max_epochs is not None:
        base["train"]["epochs"] = budget.max_epochs
    if not preset.sweep and not space.samples:
        return [RunSpec(preset.name, {}, Preset.model_validate(base))]
    keys = list(preset.sweep)
    grid = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(preset.sweep[k] for k in keys))]
    reps = max(1, space.samples)
    draws = sampling.draw(space, reps * len(grid)) if space.samples else [{}] * len(grid)
    runs: list[RunSpec] = []
    for i, drawn in enumerate(draws):
        data = copy.deepcopy(base)
        overrides = {**grid[i % len(grid)], **drawn}
        for k, v in overrides.items():
            try:
                _set_dotted(data, k, v)
            except KeyPathError as e:
                raise PresetError([PresetIssue(preset.name, None, f"sweep.{k}", str(e))]) from None
        label = ",".join(f"{_label(k)}={sampling.shown(v) if k in drawn else _fmt(v)}" for k, v in overrides.items())
        tag = f"sample={i // len(grid) + 1}," if space.samples else ""
        data["name"] = _run_name(preset.name, tag + label)
        try:
            runs.append(RunSpec(data["name"], overrides, Preset.model_validate(data)))
        except ValidationError as e:  # _check_sweep tries each value alone: a combination can still fail
            raise PresetError([_run_issue(preset, overrides, e)]) from None
    return runs


def run_presets(preset: Preset) -> list[Preset]:
    """The preset of every run it queues: its sweep's combinations, or the preset itself."""
    return [r.preset for r in expand(preset)] if preset.sweep or preset.sweep_space.samples else [preset]


def dumps(preset: Preset) -> str:
    return tomli_w.dumps(preset.to_toml_dict())


def get(preset: Preset, key: str) -> Any:
    """Value of a dotted key (``"freeze.depth"``) in a preset."""
    return _get_dotted(preset.model_dump(mode="python"), key)


def find_preset(ref: str, ws: Workspace | None = None) -> Path:
    """A preset path from what the user typed: a file, or the name of a workspace or shipped preset
    (the workspace's first). A preset name wins over a folder of that name in the current directory
    (``tltui check photos`` beside a ``photos/`` folder of images); a path (``./photos``, ``x.toml``) is
    taken as one. A lookup: it writes nothing (a command that trains the demo asks for its data,
    :func:`tltui.core.demo.find_preset`)."""
    p = Path(ref).expanduser()
    if (p.exists() and not p.is_dir()) or p.suffix == ".toml" or "/" in ref:
        return p
    candidates = []
    if ws is not None:
        candidates.append(ws.presets_dir / f"{ref}.toml")
    candidates.append(shipped_presets_dir() / f"{ref}.toml")
    for c in candidates:
        if c.exists():
            return c
    return p


@dataclass(frozen=True)
class PresetFile:
    """A preset file found in a presets folder, as the app's picker lists it; ``error`` (its first
    issue) is set when it does not validate."""

    path: Path
    origin: str  #: the folder's name: "workspace", "shipped", ...
    name: str
    description: str
    runs: int  #: how many runs its sweep expands to (0 when it does not validate)
    error: str | None = None


def discover_presets(folders: Iterable[tuple[str, Path]]) -> list[PresetFile]:
    """Every ``*.toml`` in the ``(origin, folder)`` pairs, by name within a folder, each validated.

    A name found in an earlier folder hides the same name in later ones, as :func:`find_preset`
    resolves names (pass the workspace's folder before the shipped one). A missing folder has none.
    """
    out = []
    seen: set[str] = set()
    for origin, folder in folders:
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            if path.stem in seen:
                continue
            seen.add(path.stem)
            try:
                p = load(path)
                out.append(PresetFile(path, origin, p.name, p.description, len(expand(p))))
            except PresetError as e:
                first = str(e.issues[0]) if e.issues else "invalid preset"
                out.append(PresetFile(path, origin, path.stem, "", 0, error=first))
    return out


def shipped_presets_dir() -> Path:
    """The presets shipped inside the package (``tltui/presets/``): one folder, found the same way
    from a checkout, an editable install and a wheel. Read-only as far as tltui is concerned."""
    return Path(str(resources.files("tltui") / "presets"))
