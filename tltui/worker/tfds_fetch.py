"""Bring a TFDS dataset into ``data_dir``: downloaded and prepared once, under a lock, with
progress; or, with ``data.download = false`` (or no network), one line saying what is missing.

Several runs of a sweep may start together on an unprepared dataset: the first takes an
exclusive ``flock`` on ``DATA_DIR/.tltui-locks/NAME.lock`` and prepares; the others wait (and
say so), then find it prepared. TFDS writes a dataset into an ``*.incomplete*`` folder and
renames it when complete, and downloads into temporary files renamed when complete, so a
process that dies halfway never leaves a dataset that looks prepared: the next run starts over.

``python -m tltui.worker data-fetch NAME [--data-dir DIR]`` (``tltui data fetch``) prefetches.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tltui.worker.errors import WorkerError
from tltui.worker.progress import Emit, Reporter, polling, tree_bytes

LOCK_DIR = ".tltui-locks"
LogFn = Callable[[str, str], None]


class FetchError(WorkerError):
    """The dataset is not there and cannot be brought (one line: what, where, how)."""


class Stopped(Exception):
    """A stop was requested while waiting for another process's preparation."""


def lock_path(data_dir: str | os.PathLike[str], name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Path(data_dir) / LOCK_DIR / f"{safe}.lock"


@contextlib.contextmanager
def exclusive(path: Path, on_wait: Callable[[], None], stop: Callable[[], bool], poll: float = 0.5) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``; ``on_wait()`` once if another process holds it.
    Released when the block ends or the process dies (the kernel drops the lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    waited = True
                    on_wait()
                if stop():
                    raise Stopped() from None
                time.sleep(poll)
        yield
    finally:
        os.close(fd)


def not_prepared(name: str, data_dir: str, why: str = "data.download = false") -> str:
    base = name.split(":")[0].split("/")[0]
    return (
        f'data.source = "tfds:{name}": not prepared in {data_dir} ({why}); set data.download = true to let TFDS '
        f"download it, or on a machine with internet run `tltui data fetch tfds:{base} --data-dir DIR` (or "
        f"`tfds build {base} --data_dir DIR`) and copy DIR/{base} to {data_dir}/ (or set data.data_dir to where it is)"
    )


def ensure_prepared(
    name: str,
    data_dir: str,
    *,
    download: bool = True,
    emit: Emit | None = None,
    log: LogFn | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Make ``tfds:name`` loadable from ``data_dir``; ``True`` when this call prepared it.

    Raises :class:`FetchError` (unknown dataset, not prepared with ``download=False``, a failed
    download or preparation) and :class:`Stopped`."""
    import tensorflow_datasets as tfds

    def say(level: str, msg: str) -> None:
        if log is not None:
            log(level, msg)

    builder = _builder(tfds, name, data_dir)
    if builder.is_prepared():
        return False
    if not download:
        raise FetchError(not_prepared(name, data_dir))

    def waiting() -> None:
        say("info", f"waiting: another run is preparing tfds:{name} in {data_dir}")
        if emit is not None:
            Reporter(emit, "wait", None, message=f"waiting for another run preparing tfds:{name}").update(0, force=True)

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive(lock_path(data_dir, name), waiting, stop))
        except OSError as e:
            raise FetchError(
                f'data.source = "tfds:{name}": cannot prepare it in {data_dir} ({e.strerror or e}); '
                "set data.data_dir to a writable folder"
            ) from e
        builder = _builder(tfds, name, data_dir)  # what the other process left
        if builder.is_prepared():
            say("info", f"tfds:{name} was prepared by another run meanwhile")
            return False
        say("info", f"downloading and preparing tfds:{name} into {data_dir} (once; later runs reuse it)")
        try:
            with _progress(builder, name, Path(data_dir), emit):
                builder.download_and_prepare(download_dir=str(Path(data_dir) / "downloads"))
        except Exception as e:  # noqa: BLE001 - network, disk, a manual dataset: one line, nothing half-used
            reason = " ".join(str(e).split())[:300] or type(e).__name__
            raise FetchError(
                f'data.source = "tfds:{name}": could not download and prepare it into {data_dir} ({reason}); '
                f"without internet, {not_prepared(name, data_dir, 'no network').split('; ', 1)[1]}"
            ) from e
    return True


def _builder(tfds: Any, name: str, data_dir: str) -> Any:
    """``tfds.builder``, its errors as one line (unknown name, config or version)."""
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise FetchError(f'data.source = "tfds:{name}": unknown TFDS dataset ({str(e).splitlines()[0][:120]})') from e
    except (AssertionError, ValueError) as e:  # a bad config or version: TFDS asserts or raises
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise FetchError(f'data.source = "tfds:{name}": {detail}') from e


@contextlib.contextmanager
def _progress(builder: Any, name: str, data_dir: Path, emit: Emit | None, interval: float = 1.0) -> Iterator[None]:
    """Bytes downloaded (``DATA_DIR/downloads``), then bytes written into the dataset's incomplete
    folder, against the sizes the dataset's metadata gives (when it gives them)."""
    info = builder.info
    downloads = data_dir / "downloads"
    target = Path(builder.data_dir)  # DATA_DIR/NAME[/CONFIG]/VERSION (not there until renamed)
    before = tree_bytes(downloads, match=lambda p: p.name != "extracted")
    dl = Reporter(emit, "download", int(info.download_size or 0) or None, "bytes", f"downloading tfds:{name}")
    prep = Reporter(emit, "prepare", int(info.dataset_size or 0) or None, "bytes", f"preparing tfds:{name}")

    def incomplete() -> int:
        # TFDS 4.9 writes into VERSION_DIR/../incomplete.XXXXXX_VERSION (older: VERSION.incomplete...)
        return tree_bytes(
            target.parent,
            match=lambda p: (
                "incomplete" in p.name and (p.name.startswith(target.name) or p.name.endswith("_" + target.name))
            ),
        )

    def fetched() -> int:  # what TFDS downloaded, not what it extracted from it
        return max(0, tree_bytes(downloads, match=lambda p: p.name != "extracted") - before)

    def tick() -> None:
        written = incomplete()
        if written:
            prep.update(written)
        else:
            dl.update(fetched())

    dl.update(0, force=True)
    with polling(tick, interval, name="tfds-progress"):
        yield
    # the final state, measured (a small download finishes between two ticks)
    got = fetched()
    dl.total = dl.total or got or None
    dl.update(got, force=True)
    written = tree_bytes(target)
    prep.total = prep.total or written or None
    prep.update(written, force=True)


def main(argv: list[str]) -> int:
    """``data-fetch NAME [--data-dir DIR]``: progress lines on stderr, one JSON line on stdout:
    ``{"name", "data_dir", "prepared_now"}`` or ``{"error"}``."""
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(prog="tltui-worker data-fetch")
    p.add_argument("name")
    p.add_argument("--data-dir")
    args = p.parse_args(argv)
    from tltui.core.preflight import tfds_data_dir

    data_dir = str(tfds_data_dir(args.data_dir))

    def show(ev: Any) -> None:
        pct = f" {100 * ev.fraction:.0f}%" if ev.fraction is not None else ""
        done = f"{ev.done / 1e6:.1f} MB" if ev.unit == "bytes" else f"{ev.done:.0f}"
        print(f"{ev.message}: {done}{pct}", file=sys.stderr, flush=True)

    try:
        now = ensure_prepared(args.name, data_dir, emit=show, log=lambda lvl, m: print(m, file=sys.stderr))
    except FetchError as e:
        print(json.dumps({"error": str(e)}))
        return 2
    print(json.dumps({"name": args.name, "data_dir": data_dir, "prepared_now": now}))
    return 0
