"""TF Hub handles and the workspace's model cache, without TensorFlow.

A preset's ``model.backbone = "hub:HANDLE"`` names a SavedModel four ways:

- a local SavedModel folder (absolute, or relative to the preset file), used as it is;
- a URL to a ``.tar.gz``/``.tgz``/``.tar`` (``http(s)://`` or ``file://``, or a local
  archive path), downloaded and unpacked here;
- a Kaggle Models page URL (``https://www.kaggle.com/models/OWNER/MODEL/FRAMEWORK/VARIATION/VERSION``),
  downloaded from Kaggle's archive endpoint here;
- a tfhub.dev (or other model) URL, which the worker hands to ``tensorflow_hub.resolve``.

Everything downloaded lives in ``<workspace>/cache/tfhub`` (``TFHUB_CACHE_DIR`` for
workers), one folder per handle named like TF Hub names it (``sha1(handle)``), so
``tensorflow_hub`` and tltui share one cache. TF Hub's known failure is a folder
that exists but lost its ``saved_model.pb`` (a half-deleted cache, an interrupted
copy): TF Hub then returns it as if it were complete. :func:`inspect` detects that
(and stale ``.lock`` files), :func:`repair` removes what is broken so the next fetch
starts clean, or says which folder to delete when it cannot.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast

from tltui.core import catalog
from tltui.core.errors import TltuiError

TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
KAGGLE_API = "https://www.kaggle.com/api/v1/models/{owner}/{model}/{framework}/{variation}/{version}/download"
#: Seconds a download may stall before it counts as "no network".
DEFAULT_TIMEOUT = 30.0

Kind = Literal["local", "tarball", "kaggle", "tfhub"]
State = Literal["missing", "ready", "incomplete", "downloading", "stale_lock"]


class HubError(TltuiError):
    """A problem with a hub handle or the cache a user can fix (one line)."""


@dataclass(frozen=True)
class Handle:
    """A parsed ``hub:`` handle.

    ``raw`` is the handle as written (without ``hub:``); ``url`` is what to
    download (``None`` for a local folder); ``path`` the local folder (``None``
    for downloads).
    """

    raw: str
    kind: Kind
    url: str | None = None
    path: Path | None = None

    @property
    def label(self) -> str:
        return f"{catalog.HUB_PREFIX}{self.raw}"


def parse(handle: str) -> Handle:
    """Classify a handle (with or without the ``hub:`` prefix). Raises :class:`HubError`."""
    raw = handle[len(catalog.HUB_PREFIX) :] if handle.startswith(catalog.HUB_PREFIX) else handle
    raw = raw.strip()
    if not raw:
        raise HubError('model.backbone: expected "hub:URL_OR_PATH" with a handle after "hub:"')
    if "://" not in raw:
        path = Path(raw).expanduser()
        if raw.endswith(TARBALL_SUFFIXES):
            return Handle(raw, "tarball", url=path.resolve().as_uri())
        return Handle(raw, "local", path=path)
    parts = urllib.parse.urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
        if parts.path.endswith(TARBALL_SUFFIXES):
            return Handle(raw, "tarball", url=raw)
        return Handle(raw, "local", path=path)
    if scheme not in ("http", "https"):
        raise HubError(f"hub:{raw}: unsupported URL scheme {scheme!r}; use https://, file:// or a local folder")
    if parts.path.endswith(TARBALL_SUFFIXES):
        return Handle(raw, "tarball", url=raw)
    host = (parts.hostname or "").lower()
    if host == "kaggle.com" or host.endswith(".kaggle.com"):
        return Handle(raw, "kaggle", url=kaggle_download_url(raw))
    return Handle(raw, "tfhub", url=raw)


def kaggle_download_url(page: str) -> str:
    """The archive URL of a Kaggle Models page URL (``.../models/OWNER/MODEL/FRAMEWORK/VARIATION/VERSION``)."""
    segs = [s for s in urllib.parse.urlsplit(page).path.split("/") if s]
    if len(segs) >= 2 and segs[-2] == "versions":  # ".../VARIATION/versions/2" as some pages write it
        segs = [*segs[:-2], segs[-1]]
    if len(segs) != 6 or segs[0] != "models" or not segs[5].isdigit():
        raise HubError(
            f"hub:{page}: expected a Kaggle Models URL like "
            "https://www.kaggle.com/models/google/inception-v3/tensorFlow2/feature-vector/2"
        )
    _, owner, model, framework, variation, version = segs
    return KAGGLE_API.format(owner=owner, model=model, framework=framework, variation=variation, version=version)


# --------------------------------------------------------------------------- cache layout


def cache_root(workspace_root: str | os.PathLike[str]) -> Path:
    """The persistent hub cache of a workspace: ``<workspace>/cache/tfhub``."""
    return Path(workspace_root) / "cache" / "tfhub"


def workspace_root_of_run(run_dir: str | os.PathLike[str]) -> Path | None:
    """The workspace a run folder belongs to (``<workspace>/runs/<id>``), if it looks like one."""
    run_dir = Path(run_dir).resolve()
    if run_dir.parent.name == "runs":
        return run_dir.parent.parent
    return None


def module_folder(cache: Path, handle: Handle) -> Path:
    """Where a downloaded handle lives: ``sha1(handle)``, as ``tensorflow_hub`` names it."""
    return cache / hashlib.sha1(handle.raw.encode("utf8")).hexdigest()


def lock_file(folder: Path) -> Path:
    return folder.with_name(folder.name + ".lock")


def descriptor_file(folder: Path) -> Path:
    return folder.with_name(folder.name + ".descriptor.txt")


def is_saved_model(folder: Path) -> bool:
    return any((folder / f).is_file() for f in SAVED_MODEL_FILES)


@dataclass(frozen=True)
class CacheStatus:
    state: State
    folder: Path
    detail: str = ""


def _lock_owner(lock: Path) -> tuple[str, int] | None:
    """(hostname, pid) from a lock file TF Hub or tltui wrote (``HOST.PID.UID``)."""
    try:
        text = lock.read_text(errors="replace").strip()
        host, pid, _uid = text.rsplit(".", 2)
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def inspect(folder: Path) -> CacheStatus:
    """The state of one cache folder. Never raises."""
    lock = lock_file(folder)
    if lock.exists():
        owner = _lock_owner(lock)
        if owner and owner[0] == socket.gethostname() and not _pid_alive(owner[1]):
            return CacheStatus("stale_lock", folder, f"{lock} was left by process {owner[1]}, which is gone")
        if owner is None or owner[0] == socket.gethostname():
            return CacheStatus("downloading", folder, f"{lock} exists: another download is in progress")
        return CacheStatus("downloading", folder, f"{lock} exists: host {owner[0]} is downloading")
    if not folder.exists():
        return CacheStatus("missing", folder)
    if not folder.is_dir():
        return CacheStatus("incomplete", folder, f"{folder} is not a folder")
    if not is_saved_model(folder):
        what = "is empty" if not any(folder.iterdir()) else "has no saved_model.pb"
        return CacheStatus("incomplete", folder, f"{folder} {what} (a half-deleted or interrupted download)")
    return CacheStatus("ready", folder)


def repair(status: CacheStatus, handle: Handle) -> None:
    """Remove what makes a cache folder unusable (incomplete folder, stale lock, its temp dirs).

    Raises :class:`HubError` naming the folder to delete when that fails.
    """
    folder = status.folder
    try:
        if status.state == "stale_lock":
            lock_file(folder).unlink(missing_ok=True)
            for tmp in folder.parent.glob(folder.name + ".*.tmp"):
                shutil.rmtree(tmp)
        if status.state == "incomplete" or (
            status.state == "stale_lock" and folder.exists() and not is_saved_model(folder)
        ):
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)
            else:
                folder.unlink()
            descriptor_file(folder).unlink(missing_ok=True)
    except OSError as e:
        raise HubError(
            f"{handle.label}: the cached copy in {folder} is broken ({status.detail}) and could not be removed "
            f"({e.strerror or e}); delete {folder} and run `tltui hub fetch {handle.raw}` again"
        ) from None


def offline_message(handle: Handle, cache: Path, reason: str) -> str:
    """The one line shown when a handle cannot be downloaded."""
    folder = module_folder(cache, handle)
    return (
        f"{handle.label}: cannot download ({reason}); on a machine with network run "
        f"`tltui hub fetch {handle.raw}` and copy its folder {folder.name} into {cache} here, "
        f'or point the preset at a local SavedModel folder (model.backbone = "hub:/path/to/saved_model")'
    )


def describe_error(e: BaseException) -> str:
    """A short reason for a failed download (no traceback)."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        r = e.reason
        return str(r.strerror if isinstance(r, OSError) and r.strerror else r)
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


# --------------------------------------------------------------------------- downloads

Opener = Callable[..., IO[bytes]]


def fetch_archive(
    handle: Handle,
    cache: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    opener: Opener | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download and unpack a tarball (or Kaggle archive) handle into the cache; return its folder.
    ``progress(bytes_done, bytes_total_or_None)`` is called as the download streams in.

    Atomic: unpacks into ``<folder>.<uid>.tmp`` under a ``<folder>.lock`` and renames
    when complete, so a crash never leaves a folder that looks complete. A ready
    folder is returned without network. Raises :class:`HubError` (one line).
    """
    if handle.url is None:
        raise ValueError(f"{handle.raw} is a local folder, not a download")
    folder = module_folder(cache, handle)
    status = inspect(folder)
    if status.state == "ready":
        return folder
    if status.state == "downloading":
        raise HubError(f"{handle.label}: {status.detail}; wait for it, or delete {lock_file(folder)} if it is stale")
    repair(status, handle)
    cache.mkdir(parents=True, exist_ok=True)
    uid = uuid.uuid4().hex
    lock = lock_file(folder)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise HubError(f"{handle.label}: another process is downloading it ({lock})") from None
    with os.fdopen(fd, "w") as f:
        f.write(f"{socket.gethostname()}.{os.getpid()}.{uid}")
    tmp = folder.with_name(f"{folder.name}.{uid}.tmp")
    try:
        open_url = opener or urllib.request.urlopen
        try:
            response = open_url(handle.url, timeout=timeout)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise HubError(offline_message(handle, cache, describe_error(e))) from None
        with response:
            try:
                _extract(cast(IO[bytes], _Counting(response, progress) if progress else response), tmp)
            except (tarfile.TarError, EOFError, OSError) as e:
                if isinstance(e, (socket.timeout, TimeoutError, ConnectionError)):
                    raise HubError(offline_message(handle, cache, describe_error(e))) from None
                raise HubError(
                    f"{handle.label}: the download is not a readable .tar.gz ({describe_error(e)})"
                ) from None
        root = _saved_model_root(tmp)
        if root is None:
            raise HubError(f"{handle.label}: the archive holds no saved_model.pb; is it a TF2 SavedModel?")
        if root != tmp:  # the archive wrapped the SavedModel in one folder: keep only that
            inner = tmp.with_name(tmp.name + ".inner")
            root.rename(inner)
            shutil.rmtree(tmp)
            inner.rename(tmp)
        descriptor_file(folder).write_text(
            f"Module: {handle.raw}\nDownload Time: {datetime.datetime.today()}\n"
            f"Downloader Hostname: {socket.gethostname()} (PID:{os.getpid()})"
        )
        os.replace(tmp, folder)
        return folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            lock.unlink()


class _Counting:
    """A response read through by ``tarfile``, reporting the bytes read so far."""

    def __init__(self, raw: IO[bytes], progress: Callable[[int, int | None], None]) -> None:
        self.raw, self.progress, self.done = raw, progress, 0
        length = getattr(raw, "headers", {}).get("Content-Length") if hasattr(raw, "headers") else None
        self.total = int(length) if length and str(length).isdigit() else None

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.done += len(data)
        self.progress(self.done, self.total)
        return data


def _extract(fileobj: IO[bytes], dest: Path) -> None:
    """Unpack a (gzipped) tar stream: regular files and folders only, never outside ``dest``."""
    dest.mkdir(parents=True)
    with tarfile.open(mode="r|*", fileobj=fileobj) as tar:
        for member in tar:
            if not (member.isfile() or member.isdir()):
                raise tarfile.TarError(f"unexpected {member.name!r} (links and devices are not allowed)")
            tar.extract(member, dest, filter="data")


def _saved_model_root(folder: Path) -> Path | None:
    if is_saved_model(folder):
        return folder
    children = [c for c in folder.iterdir() if c.is_dir()]
    if len(children) == 1 and is_saved_model(children[0]):
        return children[0]
    return None


def local_saved_model(handle: Handle) -> Path:
    """A local handle's folder, checked to be a SavedModel. Raises :class:`HubError`."""
    assert handle.path is not None
    path = handle.path
    if not path.exists():
        raise HubError(
            f"{handle.label}: no such folder {path} (a SavedModel folder, absolute or relative to the preset)"
        )
    if not path.is_dir():
        raise HubError(f"{handle.label}: {path} is a file; expected a SavedModel folder or a .tar.gz")
    if not is_saved_model(path):
        raise HubError(f"{handle.label}: {path} holds no saved_model.pb; is it a TF2 SavedModel folder?")
    return path


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class CachedModule:
    folder: Path
    handle: str | None  # from the descriptor TF Hub/tltui write next to the folder
    state: State
    size_bytes: int
    fetched: float | None  # mtime of the folder

    def to_dict(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "handle": self.handle,
            "state": self.state,
            "size_bytes": self.size_bytes,
            "fetched": self.fetched,
        }


def _read_handle(folder: Path) -> str | None:
    try:
        first = descriptor_file(folder).read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    return first.removeprefix("Module:").strip() or None


def _size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def list_cached(cache: Path) -> list[CachedModule]:
    """Every module folder in the cache (ready or broken), sorted by handle."""
    if not cache.is_dir():
        return []
    out: list[CachedModule] = []
    names = {p.name for p in cache.iterdir()}
    candidates = {n for n in names if len(n) == 40 and all(c in "0123456789abcdef" for c in n)}
    candidates |= {n[: -len(".lock")] for n in names if n.endswith(".lock")}
    for name in sorted(candidates):
        folder = cache / name
        status = inspect(folder)
        try:
            fetched = folder.stat().st_mtime if folder.exists() else None
        except OSError:
            fetched = None
        out.append(CachedModule(folder, _read_handle(folder), status.state, _size(folder), fetched))
    out.sort(key=lambda m: (m.handle or "~", m.folder.name))
    return out


def format_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def format_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


# --------------------------------------------------------------------------- before queueing


def preflight(backbone: str, cache: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a ``hub:`` backbone before a run is queued; no network.

    Errors: a handle that cannot work (bad URL, local folder that is not a SavedModel).
    Warnings: a download that has not happened yet (the run would block on it) or a
    broken cached copy (the run re-downloads it).
    """
    try:
        handle = parse(backbone)
        if handle.kind == "local":
            local_saved_model(handle)
            return [], []
    except HubError as e:
        return [str(e)], []
    status = inspect(module_folder(cache, handle))
    fetch = f"`tltui hub fetch {handle.raw}`"
    if status.state == "missing":
        return [], [
            f"{handle.label} is not in the hub cache yet: the run downloads it first; {fetch} now "
            "so queued runs never wait on the network"
        ]
    if status.state != "ready":
        return [], [
            f"{handle.label}: the cached copy is {status.state.replace('_', ' ')} ({status.detail}); "
            f"the run re-downloads it, or run {fetch} now"
        ]
    return [], []
