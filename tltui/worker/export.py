"""``python -m tltui.worker export RUN_DIR --format F [--quantize Q] [--out DIR] [--max-drop P] --out-fd N``.

Exports a completed run's ``model.keras`` (:mod:`tltui.worker.export_formats`), then proves the
artifact still works (:mod:`tltui.worker.export_check`): it is loaded back with its own runtime and
run on the run's validation split (and test split when there is one), next to the Keras model on the
very same uint8 images. Top-1,
top-5, agreement with the Keras model and the largest probability difference are stored beside
the artifact (``verification.json``) with the manifest, the class names and the model card
(:mod:`tltui.worker.model_card`). Full-integer quantization is calibrated on
:data:`~tltui.core.exports.CALIBRATION_IMAGES` of the run's own training images, drawn with its seed.

Everything is written into a temporary folder beside ``--out`` and renamed into place at the end: a
converter that fails leaves nothing behind. Exit codes: 0 verified; 1 top-1 dropped more than
``--max-drop`` points on a split (the export is kept, marked ``VERIFICATION_FAILED``); 2 no export
(one ``{"type": "error"}`` line says why). Records go to the output channel
(:mod:`tltui.core.export_records`), never stdout: TensorFlow and the converters print there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tltui import __version__
from tltui.core import exports, presets, runstate
from tltui.core.errors import TltuiError, one_line
from tltui.core.export_records import ExportNote, ExportProgress, ExportResult, Record, SplitCheck, encode
from tltui.core.exports import ExportError, ExportPaths, Manifest
from tltui.core.workspace import RunPaths, atomic_write, fsync_dir, write_json
from tltui.worker import export_check as check


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tltui.worker export")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--format", required=True, choices=exports.FORMATS)
    p.add_argument("--quantize", choices=exports.QUANTIZATIONS)
    p.add_argument("--out", type=Path, help="the export folder (default RUN_DIR/exports/FORMAT[-QUANTIZE])")
    p.add_argument("--max-drop", type=float, default=exports.DEFAULT_MAX_DROP, metavar="POINTS")
    p.add_argument("--command", help="the command line that asked for this export (the model card quotes it)")
    chan = p.add_mutually_exclusive_group(required=True)
    chan.add_argument("--out-fd", type=int, help="write JSON records to this inherited file descriptor")
    chan.add_argument("--records", type=Path, help="write JSON records to this file")
    return p.parse_args(argv)


class Channel:
    """The record channel. A client that went away stops nobody: the export still completes."""

    def __init__(self, out: TextIO) -> None:
        self.out: TextIO | None = out

    def send(self, rec: Record | dict[str, Any]) -> None:
        if self.out is None:
            return
        try:
            self.out.write(encode(rec))
        except (BrokenPipeError, OSError, ValueError):
            self.out = None

    def close(self) -> None:
        if self.out is not None:
            with contextlib.suppress(OSError):
                self.out.close()


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like an error: the temporary folder goes, nothing half-written stays
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    out = os.fdopen(args.out_fd, "w", buffering=1) if args.out_fd is not None else open(args.records, "w", buffering=1)  # noqa: SIM115 - closed by Channel.close
    channel = Channel(out)
    try:
        result = Exporter(args, channel.send).run()
    except TltuiError as e:
        channel.send({"type": "error", "message": one_line(e)})
        return 2
    except Exception as e:  # noqa: BLE001 - a bug: its traceback to the log, one line to the user
        traceback.print_exc()
        log = args.run_dir / exports.LOG
        channel.send({"type": "error", "message": f"export failed: {one_line(e)} (the traceback is in {log})"})
        return 2
    finally:
        channel.close()
    return 0 if result.passed else 1


# ---------------------------------------------------------------------------- the run


@dataclass
class RunInfo:
    """What the export needs from a completed run's folder."""

    paths: RunPaths
    preset: presets.Preset
    classes: list[str]
    data: dict[str, Any]
    state: runstate.RunState

    @property
    def run_id(self) -> str:
        return self.paths.dir.name

    @classmethod
    def read(cls, run_dir: Path) -> RunInfo:
        paths = RunPaths(run_dir)
        if not paths.model.is_file():
            raise ExportError(f"{paths.model}: no model; only a completed run can be exported")
        try:
            preset = presets.load(paths.preset)
            classes = json.loads(paths.classes.read_text(encoding="utf-8"))
            data = json.loads(paths.data_info.read_text(encoding="utf-8"))
        except OSError as e:
            raise ExportError(f"{e.filename}: cannot read ({e.strerror})") from None
        except ValueError as e:
            raise ExportError(f"{run_dir}: a run file is not valid JSON ({e})") from None
        if not isinstance(classes, list) or not classes or not isinstance(data, dict):
            raise ExportError(f"{paths.classes}: expected a JSON list of class names")
        return cls(paths, preset, [str(c) for c in classes], data, runstate.load(paths.events))


# ---------------------------------------------------------------------------- the job


class Exporter:
    """One export of one run: convert, verify, write, rename into place."""

    def __init__(self, args: argparse.Namespace, send: Any) -> None:
        self.args = args
        self.send = send
        self.fmt: str = args.format
        self.quantize: str | None = args.quantize
        self.variant = exports.variant(self.fmt, self.quantize)

    def progress(self, step: str, message: str, done: int | None = None, total: int | None = None) -> None:
        self.send(ExportProgress(step, message, done, total))

    def run(self) -> ExportResult:
        exports.check_combination(self.fmt, self.quantize)
        run = RunInfo.read(self.args.run_dir)
        out: Path = (self.args.out or exports.default_dir(run.paths.dir, self.fmt, self.quantize)).absolute()
        if out.exists() and not exports.is_export(out) and (not out.is_dir() or any(out.iterdir())):
            raise ExportError(f"--out {out}: exists and is not an export folder; give a new or empty folder")
        self.progress("load", f"loading {run.paths.model}")
        from tltui.worker.predict import load_model

        model = load_model(run.paths.model)
        dataset = self.load_data(run)
        size = (int(dataset.native_size[0]), int(dataset.native_size[1]))
        recorded = run.data.get("native_size")
        if recorded and list(recorded) != list(size):
            raise ExportError(
                f"{run.paths.data_info}: the run trained on {recorded[0]}x{recorded[1]} images but "
                f"{run.preset.data.source} now gives {size[0]}x{size[1]}; the data changed since training"
            )
        calibration = None
        cal_images = None
        if self.quantize == "int8":
            cal_images, _ = check.draw(dataset.train, exports.CALIBRATION_IMAGES, run.preset.train.seed)
            calibration = {"split": "train", "images": len(cal_images), "seed": run.preset.train.seed}
        new_parent = not out.parent.exists()
        out.parent.mkdir(parents=True, exist_ok=True)
        sweep(out)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            runner = self.convert(run, model, size, tmp, cal_images)
            checks, notes = self.verify(run, model, runner, dataset)
            result = self.write(run, out, tmp, size, checks, calibration, notes)
            replace_folder(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if new_parent and not out.exists():  # a failed first export leaves no empty exports/ either
                with contextlib.suppress(OSError):
                    out.parent.rmdir()
        self.send(result)
        return result

    def load_data(self, run: RunInfo) -> Any:
        import keras

        from tltui.core import decoded_store
        from tltui.core.protocol import Progress
        from tltui.worker import data as data_mod

        preset = run.preset
        self.progress("data", f"loading {preset.data.source}")
        keras.utils.set_random_seed(preset.train.seed)
        cache_root, cache_limit = decoded_store.cache_for(run.paths.dir)

        def emit(ev: Any) -> None:
            if isinstance(ev, Progress):
                done = int(ev.done) if ev.unit != "bytes" else None
                self.progress("data", ev.message, done, int(ev.total) if ev.total and done is not None else None)

        return data_mod.load(
            preset,
            log=lambda level, message: self.send(ExportNote(level, message)) if level == "warning" else None,
            emit=emit,
            decoded_cache=cache_root,
            decoded_limit_bytes=cache_limit,
        )

    def convert(self, run: RunInfo, model: Any, size: tuple[int, int], folder: Path, cal_images: Any) -> Any:
        """Write the artifact and open it with its runtime; one-line :class:`ExportError` when either fails."""
        from tltui.worker import export_formats as formats

        backbone = run.preset.model.backbone
        self.progress("convert", f"converting {run.run_id} ({backbone}) to {self.variant}")
        calibration = (lambda: iter(cal_images)) if cal_images is not None else None
        try:
            path = formats.write(self.fmt, self.quantize, model, size, folder, calibration)
        except formats.MissingRuntime as e:
            raise ExportError(str(e)) from None
        except formats.ConvertError as e:
            raise ExportError(f"{self.variant}: cannot convert {backbone}: {e}") from None
        try:
            return formats.open_artifact(self.fmt, path)
        except formats.MissingRuntime as e:
            raise ExportError(str(e)) from None
        except formats.ConvertError as e:
            raise ExportError(
                f"{self.variant}: {exports.RUNTIME[self.fmt]} cannot run the converted {backbone}: {e}"
            ) from None

    def verify(self, run: RunInfo, model: Any, runner: Any, dataset: Any) -> tuple[list[SplitCheck], list[str]]:
        """The artifact and the Keras model on every held-out split; warnings for what the user should know."""
        splits, notes = check.held_out(dataset, run.preset)
        try:
            checks = check.compare(model, runner, splits, len(run.classes), self.progress)
        except check.ShapeMismatch as e:
            raise ExportError(f"{self.variant}: {e}") from None
        changed = check.data_changed(checks[0], run.state.kept())
        if changed:
            notes.append(changed)
        for n in notes:
            self.send(ExportNote("warning", n))
        return checks, notes

    def write(
        self,
        run: RunInfo,
        out: Path,
        folder: Path,
        size: tuple[int, int],
        checks: list[SplitCheck],
        calibration: dict[str, Any] | None,
        notes: list[str],
    ) -> ExportResult:
        """The records beside the artifact in ``folder`` (renamed to ``out`` afterwards)."""
        from tltui.worker import export_formats as formats
        from tltui.worker import model_card

        self.progress("write", "writing the manifest, the verification and the model card")
        paths = ExportPaths(folder)
        max_drop = float(self.args.max_drop)
        passed = all(c.drop <= max_drop for c in checks)
        manifest = Manifest(
            format=self.fmt,
            quantize=self.quantize,
            artifact=exports.ARTIFACT[self.fmt],
            input_size=list(size),
            image_size=[int(x) for x in run.preset.data.image_size],
            classes=run.classes,
            run_id=run.run_id,
            run_dir=str(run.paths.dir.absolute()),
            passed=passed,
            max_drop=max_drop,
        )
        result = ExportResult(
            out=str(out),
            format=self.fmt,
            quantize=self.quantize,
            artifact=str(out / exports.ARTIFACT[self.fmt]),
            size_bytes=formats.size_on_disk(paths.artifact(self.fmt)),
            input_size=list(size),
            num_classes=len(run.classes),
            max_drop=max_drop,
            passed=passed,
            checks=checks,
            calibration=calibration,
            notes=notes,
        )
        versions = tool_versions(self.fmt)
        commands = {
            "train": f"tltui run {run.paths.preset}",
            "export": self.args.command or export_command(run.run_id, self.fmt, self.quantize, self.args.out, max_drop),
        }
        write_json(paths.classes, run.classes)
        atomic_write(paths.labels, "".join(f"{c}\n" for c in run.classes))
        write_json(paths.manifest, {**manifest.to_dict(), "tltui": __version__, "created": time.time()})
        verification = {
            "passed": passed,
            "max_drop": max_drop,
            "metric": "points of top-1 accuracy lost against the Keras model, per split",
            "runtime": exports.RUNTIME[self.fmt],
            "keras_model": str(run.paths.model),
            "checks": result.to_dict()["checks"],
            "calibration": calibration,
            "notes": notes,
        }
        write_json(paths.verification, verification)
        doc = model_card.card(
            preset=run.preset,
            state=run.state,
            data_info=run.data,
            manifest=manifest,
            result=result,
            versions=versions,
            commands=commands,
        )
        write_json(paths.card_json, doc)
        atomic_write(paths.card, model_card.markdown(doc, result))
        if not passed:
            atomic_write(paths.failed_marker, model_card.failure_line(result) + "\n")
        return result


def sweep(out: Path) -> None:
    """Remove what an export to ``out`` killed by SIGKILL left: its temporary folders, by dead pid."""
    for stale in [*out.parent.glob(f".{out.name}.tmp-*"), *out.parent.glob(f".{out.name}.old-*")]:
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


def replace_folder(tmp: Path, out: Path) -> None:
    """``tmp`` becomes ``out``; an earlier export at ``out`` goes only once the new one is in place."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    fsync_dir(out.parent)


def export_command(run_id: str, fmt: str, quantize: str | None, out: Path | None, max_drop: float) -> str:
    cmd = f"tltui export {run_id} --format {fmt}"
    if quantize:
        cmd += f" --quantize {quantize}"
    if out is not None:
        cmd += f" --out {out}"
    if max_drop != exports.DEFAULT_MAX_DROP:
        cmd += f" --max-drop {max_drop:g}"
    return cmd


def tool_versions(fmt: str) -> dict[str, str]:
    """tltui's, TensorFlow's, Keras's and the format's converter and runtime versions."""
    from importlib import metadata

    names = {"savedmodel": (), "litert": ("ai-edge-litert",), "onnx": ("tf2onnx", "onnxruntime")}[fmt]
    out = {"tltui": __version__}
    for dist in ("tensorflow", "keras", *names):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
