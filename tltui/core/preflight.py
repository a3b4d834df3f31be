"""Checks a preset must pass before any training starts, and recipe warnings.

Errors: things that would make a run fail (a missing folder, a ``run:`` that
did not complete, a missing weights file). Warnings: legal but probably not
what the user wants (one line each, with why it matters).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tltui.core import accel, catalog, presets
from tltui.core.errors import PresetError
from tltui.core.presets import Preset, PresetIssue
from tltui.core.status import RunStatus
from tltui.core.workspace import Workspace, WorkspaceError


@dataclass(frozen=True)
class Report:
    errors: list[PresetIssue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check(preset: Preset, file: str, ws: Workspace | None = None, overrides: Mapping[str, Any] | None = None) -> Report:
    """What would make the preset's runs fail (errors) and what is probably not meant (warnings). An
    error in a field that one of ``overrides`` (the ``--set`` values) set names that ``--set``."""
    report = _check(preset, file, ws)
    return Report([_origin(i, overrides or {}) for i in report.errors], report.warnings)


def _origin(issue: PresetIssue, overrides: Mapping[str, Any]) -> PresetIssue:
    """``issue``, named by the ``--set KEY=VALUE`` that set its field (or a table holding it)."""
    field = issue.field or ""
    given = [k for k in overrides if field and (field == k or field.startswith(k + "."))]
    return replace(issue, file=presets.set_origin(given[0], overrides[given[0]]), line=None) if given else issue


def folder_problem(root: Path) -> str | None:
    """Why a ``folder:`` source would fail its run's scan (``tltui.worker.data.scan_folder``): it is
    missing, has fewer than 2 class subfolders, or a class folder without an image. Cheap on a big
    folder (the app checks every preset it lists): it stops at each class's first image file."""
    from tltui.core import images  # Pillow: only for a folder source

    if not root.is_dir():
        return f"folder {root} does not exist"
    try:
        with os.scandir(root) as it:
            classes = sorted(e.name for e in it if not e.name.startswith(".") and _is_dir(e))
    except OSError as e:
        return f"folder {root} cannot be read: {e.strerror}"
    if len(classes) < 2:
        return f"folder {root} needs at least 2 class subfolders, found {len(classes)}"
    empty = [c for c in classes if not _has_image(root / c)]
    if empty:
        return (
            f"class folder(s) {', '.join(empty)} in {root} hold no images "
            f"({', '.join(sorted(images.IMAGE_EXTENSIONS))}); add images or remove the folder"
        )
    return None


def _is_dir(e: os.DirEntry[str]) -> bool:
    try:
        return e.is_dir()
    except OSError:
        return False


def _has_image(folder: Path) -> bool:
    """Whether ``folder`` holds (at any depth, outside hidden entries) a non-folder named like an image,
    as :func:`tltui.core.images.walk_files` finds them for the worker's scan."""
    from tltui.core.images import is_image_name

    stack: list[Path] = [folder]
    seen: set[tuple[int, int]] = set()
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(d) as it:
                for e in it:
                    if e.name.startswith("."):
                        continue
                    if _is_dir(e):
                        stack.append(Path(e.path))
                    elif is_image_name(e.name):  # a broken link too: the worker's decoder says why
                        return True
        except OSError:
            continue
    return False


def _check(preset: Preset, file: str, ws: Workspace | None = None) -> Report:
    errors: list[PresetIssue] = []
    d, m = preset.data, preset.model
    if d.kind == "folder" and (problem := folder_problem(Path(d.target))) is not None:
        errors.append(PresetIssue(file, None, "data.source", problem))
    if m.weights.endswith(".weights.h5") and not Path(m.weights).is_file():
        errors.append(PresetIssue(file, None, "model.weights", f"weights file {m.weights} does not exist"))
    if m.weights.startswith("run:"):
        ref = m.weights[4:]
        if ws is None:
            errors.append(PresetIssue(file, None, "model.weights", "run: weights need a workspace"))
        else:
            try:
                rec = ws.get(ref)
            except WorkspaceError as e:
                errors.append(PresetIssue(file, None, "model.weights", str(e)))
            else:
                if rec.status != RunStatus.COMPLETED or not ws.run_paths(rec.id).model.exists():
                    errors.append(
                        PresetIssue(
                            file, None, "model.weights", f"run {rec.id} is {rec.status}, not completed with a model"
                        )
                    )
    if catalog.is_hub(m.backbone):
        handle = m.backbone[len(catalog.HUB_PREFIX) :]
        if "://" not in handle and not Path(handle).is_dir():
            errors.append(PresetIssue(file, None, "model.backbone", f"hub SavedModel folder {handle} does not exist"))
    else:
        spec = catalog.lookup(m.backbone)
        if spec is not None and min(d.image_size) < spec.min_size:
            errors.append(
                PresetIssue(
                    file,
                    None,
                    "data.image_size",
                    f"{m.backbone} needs inputs of at least {spec.min_size}x{spec.min_size}, got {d.image_size}",
                )
            )
    errors.extend(freeze_depth_errors(preset, file))
    errors.extend(replica_errors(preset, file))
    errors.extend(data_errors(preset, file))
    warnings = recipe_warnings(preset) + download_warnings(preset)
    if catalog.is_hub(m.backbone) and ws is not None:
        from tltui.core import hubcache

        hub_errors, hub_warnings = hubcache.preflight(m.backbone, hubcache.cache_root(ws.root))
        if not any(i.field == "model.backbone" for i in errors):  # one line per field
            errors.extend(PresetIssue(file, None, "model.backbone", e) for e in hub_errors)
        warnings.extend(hub_warnings)
    return Report(errors, warnings)


def tfds_data_dir(data_dir: str | None = None) -> Path:
    """Where a TFDS dataset is read (and prepared): ``data_dir`` (a preset's ``data.data_dir`` or
    ``--data-dir``), else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``. The one rule the
    worker, ``check`` and ``tltui data`` share."""
    raw = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return Path(raw).expanduser()


def tfds_prepared(name: str, data_dir: Path) -> bool:
    """Whether ``tfds:name`` (``NAME[/CONFIG][:VERSION]``) has a complete prepared copy in
    ``data_dir`` (a ``dataset_info.json`` outside TFDS's ``*.incomplete*`` folders)."""
    base, _, version = name.partition(":")
    root = data_dir.joinpath(*base.split("/"))
    pattern = f"{version}/dataset_info.json" if version else "*/dataset_info.json"
    found = list(root.glob(pattern)) + ([] if "/" in base else list(root.glob(f"*/{pattern}")))
    return any("incomplete" not in p.parent.name for p in found)


def data_errors(preset: Preset, file: str) -> list[PresetIssue]:
    """A TFDS dataset that is not prepared while ``data.download = false``: the run would fail."""
    d = preset.data
    if d.kind != "tfds" or d.download or tfds_prepared(d.target, tfds_data_dir(d.data_dir)):
        return []
    return [
        PresetIssue(
            file,
            None,
            "data.source",
            f"tfds:{d.target} is not prepared in {tfds_data_dir(d.data_dir)} and "
            f"data.download = false; `tltui data fetch tfds:{d.target}` (where there is internet), or "
            "set data.download = true",
        )
    ]


def download_warnings(preset: Preset) -> list[str]:
    """One line per download a run (of the sweep) makes before it trains: an ImageNet weights file
    (which, from where, where Keras keeps it) or a TFDS dataset to download and prepare."""
    out: list[str] = []
    seen: set[str] = set()
    for p in presets.run_presets(preset):
        d = p.data
        if d.kind == "tfds" and d.download and d.target not in seen:
            seen.add(d.target)
            if not tfds_prepared(d.target, tfds_data_dir(d.data_dir)):
                out.append(
                    f"tfds:{d.target} is not prepared in {tfds_data_dir(d.data_dir)}: the run downloads and prepares it first "
                    f"(`tltui data fetch tfds:{d.target}` does it now)"
                )
        m = p.model
        if m.weights != "imagenet" or catalog.is_hub(m.backbone):
            continue
        wf = catalog.imagenet_weights(m.backbone, p.data.image_size, m.alpha)
        if wf is None or wf.fname in seen:
            continue
        seen.add(wf.fname)
        path = catalog.keras_cache_path(wf.fname)
        if not catalog.is_cached(path):
            out.append(
                f'model.weights = "imagenet": {m.backbone}\'s weights are downloaded before training ({wf.origin}); '
                f"`tltui weights fetch {m.backbone}` fetches them now; without internet, copy {wf.fname} to {path.parent}/"
            )
    return out


def backbone_stages(backbone: str) -> int | None:
    """How many stages ``freeze.depth`` ranges over for a backbone (``None``: unknown backbone)."""
    family = catalog.family_of(backbone)
    return family.num_stages if family is not None else None


def freeze_depth_errors(preset: Preset, file: str) -> list[PresetIssue]:
    """``freeze.depth`` beyond the backbone's stages, for the preset and every run of its sweep."""
    out: list[PresetIssue] = []
    runs = presets.run_presets(preset)
    seen: set[tuple[str, int]] = set()
    for run in runs:
        for i, p in enumerate(run.phase_presets()):
            depth, backbone = p.freeze.depth, p.model.backbone
            n = backbone_stages(backbone)
            if n is None or depth == "all" or not isinstance(depth, int) or depth <= n or (backbone, depth) in seen:
                continue
            seen.add((backbone, depth))
            key = "freeze.depth"
            if run.phases and run.phases[i].freeze.depth is not None:
                key = f"phases.{i + 1}.freeze.depth"
            field = f"sweep.{key}" if key in preset.sweep else key
            out.append(
                PresetIssue(file, None, field, f'{backbone} has {n} stages, got depth {depth}; use 0..{n} or "all"')
            )
    return out


def replica_errors(preset: Preset, file: str) -> list[PresetIssue]:
    """What ``train.gpus > 1`` cannot run (``tltui.core.accel.replica_problem``); the worker refuses it too."""
    problem = accel.replica_problem(
        batch_size=preset.data.batch_size, gpus=preset.train.gpus or 1, jit_compile=preset.train.jit_compile
    )
    return [] if problem is None else [PresetIssue(file, None, problem[0], problem[1])]


def require(
    preset: Preset, file: str, ws: Workspace | None = None, overrides: Mapping[str, Any] | None = None
) -> Report:
    """:func:`check`, raising :class:`PresetError` when it found errors; the warnings otherwise."""
    report = check(preset, file, ws, overrides)
    if report.errors:
        raise PresetError(report.errors)
    return report


def refuse_unrunnable(choices: Sequence[presets.PresetFile], ws: Workspace | None = None) -> list[presets.PresetFile]:
    """Presets as a picker lists them (:func:`tltui.core.presets.discover_presets`), each that
    :func:`check` refuses (a missing or empty folder, ...) marked with its first error, as
    ``tltui check`` and ``queue add`` would refuse it."""
    out = []
    for c in choices:
        if c.error is None:
            try:
                errors = check(presets.load(c.path), str(c.path), ws).errors
            except PresetError as e:  # changed on disk since it was listed
                errors = e.issues
            if errors:
                c = replace(c, error=str(errors[0]), runs=0)
        out.append(c)
    return out


def recipe_warnings(preset: Preset) -> list[str]:
    """Legal settings that usually hurt transfer learning, one line each with why (per phase, and
    between phases, for a preset with ``[[phases]]``)."""
    if not preset.phases:
        return _recipe_warnings(preset)
    out: list[str] = []
    phases = preset.phase_presets()
    for i, p in enumerate(phases):
        out += [f"phase {preset.phase_label(i)}: {w}" for w in _recipe_warnings(p)]
        if i == 0:
            continue
        prev = phases[i - 1]
        unfreezes = frozen_stages(p) < frozen_stages(prev)
        if unfreezes and p.model.weights != "none" and p.train.learning_rate > prev.train.learning_rate / 10:
            out.append(
                f"phase {preset.phase_label(i)}: learning_rate = {p.train.learning_rate:g} is not well below phase "
                f"{i}'s {prev.train.learning_rate:g} while it unfreezes pretrained stages: large updates wipe out "
                "their features (keras.io recipe: 10-100x lower, about 1e-5 with Adam)"
            )
    return out


def frozen_stages(preset: Preset) -> float:
    """How many of the backbone's stages ``freeze.depth`` freezes (``inf`` for "all")."""
    d = preset.freeze.depth
    return float("inf") if d == "all" else float(d)


def _recipe_warnings(preset: Preset) -> list[str]:
    out: list[str] = []
    f, t, m = preset.freeze, preset.train, preset.model
    frozen_some = f.depth == "all" or (isinstance(f.depth, int) and f.depth > 0)
    if m.weights == "none" and frozen_some:
        out.append(
            'weights = "none" with a frozen backbone: the head trains on random features; '
            'use weights = "imagenet" or freeze.depth = 0'
        )
    if m.weights == "none" and f.batchnorm in ("frozen", "inference") and not catalog.is_hub(m.backbone):
        out.append(
            f'weights = "none" with freeze.batchnorm = "{f.batchnorm}": BatchNorm keeps its initial statistics '
            '(mean 0, variance 1) and a network trained from scratch barely learns; set freeze.batchnorm = "trainable"'
        )
    # A frozen hub module runs in inference mode whatever the policy (HubModule.call): no drift.
    if f.batchnorm == "trainable" and frozen_some and m.weights != "none" and not catalog.is_hub(m.backbone):
        stages = backbone_stages(m.backbone)
        whole = f.depth == "all" or (stages is not None and isinstance(f.depth, int) and f.depth >= stages)
        out.append(
            f'freeze.batchnorm = "trainable" while the backbone is {"frozen" if whole else "partly frozen"}: BatchNorm '
            "statistics drift on a small dataset and destroy pretrained features (keras.io recipe: keep BatchNorm "
            'in inference mode, "frozen" or "inference")'
        )
    d = preset.data
    if d.kind == "tfds" and d.test_split and d.test_split == d.val_split:
        out.append(
            f"data.val_split = data.test_split = {d.val_split!r}: early stopping and the kept epoch are chosen "
            'on the test set, so test_acc is optimistic; hold out part of train (e.g. val_split = "train[90%:]")'
        )
    n = backbone_stages(m.backbone)
    all_frozen = f.depth == "all" or (n is not None and isinstance(f.depth, int) and f.depth >= n)
    unfrozen_pretrained = m.weights != "none" and not all_frozen
    if unfrozen_pretrained and t.optimizer in ("adam", "adamw", "rmsprop") and t.learning_rate > 1e-3:
        out.append(
            f"learning_rate = {t.learning_rate:g} with {t.optimizer} on unfrozen pretrained stages: "
            "large updates wipe out pretrained features (keras.io recipe: about 1e-5 when fine-tuning)"
        )
    return out
