"""Run a worker on a cluster node and echo its events to stdout, for clients without its filesystem.

``python -m tltui.runner.executors.ray_relay --run-dir DIR --token T [--shared auto|yes|no] -- WORKER_CMD...``
is the entrypoint of a Ray job (stdlib only, no TensorFlow). It:

1. decides where the worker's run folder is: the client's own ``DIR`` when the
   node shares it (``DIR/.relay-token`` holds ``T``, written by the client just
   before submitting), else a node-local scratch copy built from the small run
   files the client shipped in ``$TLTUI_RELAY_FILES`` (base64 JSON
   ``{name: text}``; ``events.jsonl`` among them on resume), or, when they are
   too large for that, from the job's working directory (``$TLTUI_RELAY_SHIPPED``:
   Ray uploaded the folder :func:`stage_files` made);
2. prints one ``@@tltui-relay {"mode": "shared"|"relay", "host", "dir"}`` line;
3. runs ``WORKER_CMD train RUN_DIR --events-fd N [--resume]`` (``{run_dir}`` in
   the command is replaced) and prints every event from the pipe as
   ``@@tltui-event <json line>``, flushed, so the client reads them from the
   job's log stream within a fraction of a second;
4. forwards SIGTERM/SIGINT to the worker (which checkpoints and stops), in
   relay mode sends back the files the worker wrote (``model.keras``...) as
   ``@@tltui-file`` chunks (:func:`send_back`), and ends the way the worker
   ended (same exit code, or the same signal).

:func:`parse_line` is the client side: it splits a log line into an event
line or plain log text.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

EVENT_PREFIX = "@@tltui-event "
MODE_PREFIX = "@@tltui-relay "
FILE_PREFIX = "@@tltui-file "  # a chunk of a file the worker wrote, sent back to the client (relay mode)
TOKEN_FILE = ".relay-token"
FILES_ENV = "TLTUI_RELAY_FILES"
#: ``1``: the run's files are too large for :data:`FILES_ENV` and came as the job's working directory (Ray's
#: ``runtime_env`` ``working_dir``, uploaded by the client, unpacked on the node: the job's current directory).
SHIPPED_ENV = "TLTUI_RELAY_SHIPPED"
CHUNK = 48 * 1024  # bytes of a file per FILE_PREFIX line (64 KiB of base64)
SCRATCH_ENV = "TLTUI_RELAY_SCRATCH"
#: The client's own files of a run folder: never shipped to a node, never taken back from one.
#: ``events.summary.json`` (``core.workspace.SUMMARY_NAME``; this module is stdlib only) describes the client's log,
#: not the node's: the node's worker summarises its own.
CLIENT_FILES = {
    "log",
    "worker.log",
    TOKEN_FILE,
    "ray_job.json",
    "slurm_job.json",
    "events.summary.json",
    "cluster_jobs.jsonl",  # the client's record of the run's jobs (tltui.core.cluster_jobs)
}
#: Files the client never ships: its own, and the model (the worker writes it again; it came back from a node).
NOT_SHIPPED = CLIENT_FILES | {"model.keras"}
SHIP_LIMIT = 96 * 1024  # bytes of base64 in one environment variable (Linux allows 128 KiB)


def parse_line(line: str) -> tuple[str, str]:
    """``("event", json)``, ``("mode", json)`` or ``("log", text)`` for one line of a job's output."""
    if line.startswith(EVENT_PREFIX):
        return "event", line[len(EVENT_PREFIX) :].strip()
    if line.startswith(MODE_PREFIX):
        return "mode", line[len(MODE_PREFIX) :].strip()
    if line.startswith(FILE_PREFIX):
        return "file", line[len(FILE_PREFIX) :].strip()
    return "log", line


def pack_files(run_dir: Path, *, with_events: bool) -> str:
    """The small files of a run folder as the value of ``$TLTUI_RELAY_FILES``.

    ``events.jsonl`` goes only with ``with_events`` (a resume), without batch
    events, so the worker knows which epochs are done. Raises ``ValueError``
    (one line) when it all does not fit in an environment variable.
    """
    files: dict[str, str] = {}
    for p in sorted(run_dir.iterdir()):
        if not p.is_file() or p.name in NOT_SHIPPED or p.name.startswith("."):
            continue
        if p.name == "events.jsonl":
            if with_events:
                files[p.name] = "".join(
                    ln
                    for ln in p.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
                    if _event_type(ln) not in ("batch", None)
                )
            continue
        if p.stat().st_size > SHIP_LIMIT:  # never left out quietly: the caller ships the folder instead
            raise ValueError(f"{p}: too large for {FILES_ENV} ({p.stat().st_size} bytes)")
        try:
            files[p.name] = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{p}: not text, so not for {FILES_ENV}") from e
    packed = base64.b64encode(json.dumps(files).encode()).decode()
    if len(packed) > SHIP_LIMIT:
        raise ValueError(f"{run_dir}: run files too large for {FILES_ENV} ({len(packed)} bytes of base64)")
    return packed


def stage_files(run_dir: Path, stage: Path, *, with_events: bool) -> Path:
    """The run's files for a node without the shared folder, however large, as a folder (``stage``, made anew):
    what :func:`pack_files` ships, without its size limits, plus the per-epoch ``backup/`` (and a phased run's
    ``phases/``) on a resume, so it continues on any node. The client hands it to Ray as the job's
    ``working_dir``; :func:`prepare` copies it into the node's scratch folder."""
    import shutil

    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for p in sorted(run_dir.iterdir()):
        if p.name in NOT_SHIPPED or p.name.startswith(".") or p.resolve() == stage.resolve():
            continue
        if p.is_dir():
            if with_events and p.name in ("backup", "phases"):
                shutil.copytree(p, stage / p.name)
        elif p.name == "events.jsonl":
            if with_events:
                text = p.read_text(encoding="utf-8", errors="replace")
                kept = (ln for ln in text.splitlines(keepends=True) if _event_type(ln) not in ("batch", None))
                (stage / p.name).write_text("".join(kept), encoding="utf-8")
        elif p.is_file():
            shutil.copy2(p, stage / p.name)
    return stage


def _event_type(line: str) -> str | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj.get("type") if isinstance(obj, dict) else None


def scratch_dir(run_dir: str) -> Path:
    """A stable node-local folder for a run (so a resume on the same node finds its backup)."""
    base = Path(os.environ.get(SCRATCH_ENV) or Path(tempfile.gettempdir()) / f"tltui-relay-{os.getuid()}")
    key = hashlib.sha256(run_dir.encode()).hexdigest()[:12]
    return base / f"{Path(run_dir).name}-{key}"


def _is_shared(run_dir: Path, token: str) -> bool:
    try:
        return (run_dir / TOKEN_FILE).read_text(encoding="utf-8").strip() == token
    except OSError:
        return False


def prepare(run_dir: str, token: str, shared: str) -> tuple[str, Path]:
    """``(mode, folder the worker uses)``."""
    if shared != "no" and _is_shared(Path(run_dir), token):
        return "shared", Path(run_dir)
    if shared == "yes":
        raise SystemExit(f"tltui relay: {run_dir} is not shared with this node ({socket.gethostname()})")
    d = scratch_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = json.loads(base64.b64decode(os.environ.get(FILES_ENV, "") or b"e30=").decode())
    if "events.jsonl" not in files:  # a fresh start: no stale events from an earlier attempt here
        with contextlib.suppress(FileNotFoundError):
            (d / "events.jsonl").unlink()
    for name, text in files.items():
        if "/" in name or name.startswith("."):
            continue
        (d / name).write_text(text, encoding="utf-8")
    if os.environ.get(SHIPPED_ENV) == "1":  # the files came as the job's working directory (any size)
        import shutil

        if not (Path.cwd() / "events.jsonl").exists():
            with contextlib.suppress(FileNotFoundError):
                (d / "events.jsonl").unlink()
        shutil.copytree(Path.cwd(), d, dirs_exist_ok=True)
    return "relay", d


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """The top-level files of a folder: name -> (mtime in ns, size)."""
    out: dict[str, tuple[int, int]] = {}
    for p in folder.iterdir():
        with contextlib.suppress(OSError):
            if p.is_file():
                st = p.stat()
                out[p.name] = (st.st_mtime_ns, st.st_size)
    return out


def send_back(folder: Path, before: dict[str, tuple[int, int]]) -> None:
    """Every top-level file the worker wrote in the node's scratch folder (``model.keras``, ``classes.json``,
    ``data.json``, the layer map...: new or changed since ``before``), as :data:`FILE_PREFIX` lines the client
    reassembles in the run folder: without a shared folder, the trained model comes back to the client. Events
    came already; the backup and the checkpoints stay on the node (a resume there finds them)."""
    for name, seen in sorted(_files(folder).items()):
        if name.startswith(("events", ".")) or name in CLIENT_FILES or before.get(name) == seen:
            continue
        try:
            data = (folder / name).read_bytes()
        except OSError:
            continue
        n = max(1, -(-len(data) // CHUNK))
        for i in range(n):
            chunk = base64.b64encode(data[i * CHUNK : (i + 1) * CHUNK]).decode()
            _emit(FILE_PREFIX, json.dumps({"name": name, "i": i, "n": n, "data": chunk}))


def _emit(prefix: str, payload: str) -> None:
    sys.stdout.write(prefix + payload + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print(
            "usage: python -m tltui.runner.executors.ray_relay --run-dir DIR --token T [--shared auto|yes|no] -- CMD...",
            file=sys.stderr,
        )
        return 2
    cut = argv.index("--")
    ap = argparse.ArgumentParser(prog="python -m tltui.runner.executors.ray_relay")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--shared", choices=["auto", "yes", "no"], default="auto")
    args = ap.parse_args(argv[:cut])
    cmd = argv[cut + 1 :]
    mode, folder = prepare(args.run_dir, args.token, args.shared)
    before = _files(folder)  # what the worker then writes or changes goes back to the client
    _emit(MODE_PREFIX, json.dumps({"mode": mode, "host": socket.gethostname(), "dir": str(folder)}))
    r, w = os.pipe()
    cmd = [c.replace("{run_dir}", str(folder)) for c in cmd]
    cmd[cmd.index("--events-fd") + 1] = str(w)
    proc = subprocess.Popen(cmd, pass_fds=(w,), stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(w)

    def forward(sig: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    buf = b""
    with os.fdopen(r, "rb", buffering=0) as pipe:
        while True:
            try:
                chunk = pipe.read(65536)
            except InterruptedError:
                continue
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    _emit(EVENT_PREFIX, line.decode("utf-8", "replace"))
    rc = proc.wait()
    if mode == "relay":
        send_back(folder, before)
    if rc < 0:  # end the way the worker ended, so the client reads the same signal
        if -rc not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
