"""Preset schema, TOML load/save, ``--set`` overrides and sweep expansion.

A preset is data, never code: TOML parsed with ``tomllib`` and validated by
pydantic models that forbid unknown keys. Every problem becomes a
:class:`PresetIssue` that names the file, line and field, one short line each.
"""

from __future__ import annotations

import copy
import difflib
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
from tltui.core.errors import PresetError, PresetIssue, TltuiError

if TYPE_CHECKING:
    from tltui.core.workspace import Workspace

MAX_PRESET_BYTES = 1_000_000
MAX_SWEEP_RUNS = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataConfig(_Strict):
    source: str = Field(description='"tfds:NAME" or "folder:PATH" (class subfolders)')
    train_split: str = "train[:90%]"
    val_split: str = "train[90%:]"
    test_split: str = Field("test", description='TFDS split evaluated once after training; "" for none')
    download: bool = Field(True, description="let TFDS download and prepare a dataset missing from data_dir")
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    data_dir: str | None = None
    image_size: list[int] = Field(default_factory=lambda: [224, 224])
    batch_size: int = Field(32, ge=1, le=65536)
    augment: bool = True
    train_limit: int | None = Field(None, ge=1, description="use at most this many training images")
    val_limit: int | None = Field(None, ge=1, description="use at most this many validation images")
    test_limit: int | None = Field(None, ge=1, description="use at most this many test images")
    shuffle_buffer: int = Field(10_000, ge=0)

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
    backbone: str
    weights: str = "imagenet"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    alpha: float | None = Field(None, gt=0.0, le=2.0, description="width multiplier (MobileNet)")
    hub_output_dim: int | None = Field(None, ge=1, description="feature size of a hub: backbone")
    bn_momentum: float | None = Field(
        None, gt=0.0, lt=1.0, description="BatchNorm moving-average momentum of the backbone (None: its own)"
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
    depth: int | str = 0
    batchnorm: Literal["frozen", "inference", "trainable"] = "frozen"

    @field_validator("depth", mode="plain")
    @classmethod
    def _depth(cls, v: object) -> int | str:
        if v == "all" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return v  # type: ignore[return-value]
        raise ValueError(f'expected a number of macro-blocks 0..N or "all", got {v!r}')


class TrainConfig(_Strict):
    epochs: int = Field(10, ge=1, le=100_000)
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-3, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    early_stopping_patience: int = Field(0, ge=0, description="0 turns early stopping off")
    restore_best: bool = Field(
        True, description="model.keras (and the test split) = the best val_acc epoch of the whole run; false: the last"
    )
    checkpoint_every: int = Field(5, ge=0, description="epochs; 0 turns periodic checkpoints off")
    seed: int = 42
    mixed_precision: bool | Literal["mixed_float16", "mixed_bfloat16"] = False
    jit_compile: bool = False
    gpus: int | None = Field(None, ge=0, le=64, description="None: one GPU if any, else CPU")
    feature_cache: Literal["auto", "off"] = "auto"
    steps_per_epoch: int | None = Field(None, ge=1)


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

    name: str = Field("", max_length=40)
    freeze: PhaseFreeze = PhaseFreeze()
    train: PhaseTrain = PhaseTrain()


class Preset(_Strict):
    name: str = Field(min_length=1, max_length=120)
    description: str = ""
    data: DataConfig
    model: ModelConfig
    freeze: FreezeConfig = FreezeConfig()
    train: TrainConfig = TrainConfig()
    phases: list[PhaseConfig] = Field(default_factory=list, max_length=MAX_PHASES)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-\[\]=, ]*", v):
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
        base["phases"], base["sweep"] = [], {}
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
        if not d.get("sweep"):
            d.pop("sweep", None)
        if not d.get("description"):
            d.pop("description", None)
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
    return ".".join(str(p) for p in loc if isinstance(p, str)) or "(preset)"


def _unknown_key(loc: validation.Loc) -> str:
    if loc[:1] == ("phases",):
        return "a phase may set only " + ", ".join(PHASE_FIELDS) + " (and name)"
    return "unknown key (check the spelling; see the preset reference in the README)"


def _issues_from_validation(
    e: ValidationError, file: str, text: str | None, overrides: Mapping[str, Any] | None = None
) -> list[PresetIssue]:
    """The preset's validation errors, one issue per field; a field a ``--set`` gave names it."""
    origins = {key: f"--set {key}={_typed(value)}" for key, value in (overrides or {}).items()}
    return validation.issues(
        e.errors(include_url=False), file=file, text=text, field=_field_name, unknown=_unknown_key, origins=origins
    )


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
    except tomllib.TOMLDecodeError:
        return raw


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """``["train.epochs=3", "freeze.depth=all"]`` -> ``{"train.epochs": 3, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not re.fullmatch(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_\"\.]+)*", key):
            raise PresetError([PresetIssue("--set", None, None, f"expected KEY=VALUE, got {item!r}")])
        out[key] = parse_value(raw.strip())
    return out


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
        nxt = cur.get(p)
        if not isinstance(nxt, dict | list):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    if not isinstance(cur, dict):
        raise KeyPathError(f"{key}: expected a field inside a phase, like phases.1.train.epochs")
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
    for key, value in (overrides or {}).items():
        try:
            _set_dotted(data, key, value)
        except KeyPathError as e:
            raise PresetError([PresetIssue("--set", None, None, str(e))]) from None
    try:
        preset = Preset.model_validate(data)
    except ValidationError as e:
        raise PresetError(_issues_from_validation(e, file, text, overrides)) from None
    _check_sweep(preset, data, file, text)
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
    """Make relative ``folder:`` sources, weights files and local hub paths absolute."""
    data = preset.model_dump(mode="python")
    d = data["data"]
    if preset.data.kind == "folder":
        d["source"] = "folder:" + str((base / preset.data.target).resolve())
    if d.get("data_dir"):
        d["data_dir"] = str((base / d["data_dir"]).expanduser().resolve())
    m = data["model"]
    if m["weights"].endswith(".weights.h5"):
        m["weights"] = str((base / m["weights"]).expanduser().resolve())
    if catalog.is_hub(m["backbone"]):
        handle = m["backbone"][len(catalog.HUB_PREFIX) :]
        if "://" not in handle:
            m["backbone"] = catalog.HUB_PREFIX + str((base / handle).expanduser().resolve())
    return Preset.model_validate(data)


def _check_sweep(preset: Preset, data: Mapping[str, Any], file: str, text: str | None) -> None:
    issues: list[PresetIssue] = []
    total = 1
    for key, values in preset.sweep.items():
        line = locate(text, ("sweep", key)) if text else None
        field = f"sweep.{key}"
        head = key.split(".")[0]
        if head not in ("data", "model", "freeze", "train", "phases") or "." not in key:
            issues.append(PresetIssue(file, line, field, 'expected a dotted key like "freeze.depth"'))
            continue
        total *= len(values)
        for v in values:
            trial = copy.deepcopy(dict(data))
            trial.pop("sweep", None)
            try:
                _set_dotted(trial, key, v)
                Preset.model_validate(trial)
            except KeyPathError as e:
                issues.append(PresetIssue(file, line, field, str(e).partition(": ")[2]))
                break
            except ValidationError as e:
                msgs = _issues_from_validation(e, file, None)
                detail = msgs[0].message if msgs else "invalid"
                issues.append(PresetIssue(file, line, field, f"value {v!r}: {detail}"))
                break
    if total > MAX_SWEEP_RUNS:
        issues.append(
            PresetIssue(
                file,
                locate(text, ("sweep",)) if text else None,
                "sweep",
                f"expands to {total} runs; at most {MAX_SWEEP_RUNS}",
            )
        )
    if issues:
        raise PresetError(issues)


# --------------------------------------------------------------------------- sweeps


def _fmt(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _label(key: str) -> str:
    """A sweep key in a run name: ``depth`` for ``freeze.depth``, ``phase2.depth`` for ``phases.2.freeze.depth``."""
    parts = key.split(".")
    return f"phase{parts[1]}.{parts[-1]}" if parts[0] == "phases" and len(parts) > 2 else parts[-1]


def expand(preset: Preset) -> list[RunSpec]:
    """One :class:`RunSpec` per combination of the sweep (cartesian product, in key order)."""
    base = preset.model_dump(mode="python")
    base["sweep"] = {}
    if not preset.sweep:
        return [RunSpec(preset.name, {}, Preset.model_validate(base))]
    keys = list(preset.sweep)
    runs: list[RunSpec] = []
    for combo in itertools.product(*(preset.sweep[k] for k in keys)):
        data = copy.deepcopy(base)
        overrides = dict(zip(keys, combo, strict=True))
        for k, v in overrides.items():
            _set_dotted(data, k, v)
        label = ",".join(f"{_label(k)}={_fmt(v)}" for k, v in overrides.items())
        data["name"] = f"{preset.name}[{label}]"
        runs.append(RunSpec(data["name"], overrides, Preset.model_validate(data)))
    return runs


def run_presets(preset: Preset) -> list[Preset]:
    """The preset of every run it queues: its sweep's combinations, or the preset itself."""
    return [r.preset for r in expand(preset)] if preset.sweep else [preset]


def dumps(preset: Preset) -> str:
    return tomli_w.dumps(preset.to_toml_dict())


def get(preset: Preset, key: str) -> Any:
    """Value of a dotted key (``"freeze.depth"``) in a preset."""
    return _get_dotted(preset.model_dump(mode="python"), key)


def find_preset(ref: str, ws: Workspace | None = None) -> Path:
    """A preset path from what the user typed: a file, or the name of a workspace or shipped preset
    (the workspace's first). A lookup: it writes nothing (a command that trains the demo asks for its
    data, :func:`tltui.core.demo.find_preset`)."""
    p = Path(ref).expanduser()
    if p.exists() or p.suffix == ".toml" or "/" in ref:
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
