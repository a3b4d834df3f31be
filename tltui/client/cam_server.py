"""Grad-CAM on request: one ``cams`` worker per run, kept while the app's inference screen is open.

:class:`CamServer` starts ``python -m tltui.worker cams RUN_DIR --out-fd N`` (argv list, no shell)
on its first request and keeps it: the worker has loaded TensorFlow and the run's model, so each
further overlay costs one forward and backward pass, not a new process (the walk measured 18-24 s
per image with a predict worker each). Requests go to the worker's stdin, one JSON line each; the
answer is one record (:mod:`tltui.worker.cam_server`). A worker that died is started again by the
next request. :class:`CamServers` keeps one per run and resolution and closes them all;
:meth:`CamServers.warm` starts one ahead of its first request and stops the others (the inference
screen does so once a run's predictions show, so that the first ``g`` is as quick as the next ones).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from tltui.client.predict import PredictError
from tltui.client.worker_pipe import log_tail, spawn
from tltui.core.predict_records import PredictionRow, PredictStarted, Skipped, decode
from tltui.runner.supervisor import worker_command


class CamServer:
    """The ``cams`` worker of one run (``low_res``: as :class:`~tltui.client.predict.PredictJob`).

    :meth:`cam` is safe from any thread (one request at a time); :meth:`close` (any thread) stops
    the worker, and a request blocked on it then fails with :class:`PredictError`."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        low_res: bool | None = None,
        *,
        worker_cmd: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
    ) -> None:
        self.run_dir = Path(run_dir).absolute()
        self._options = [] if low_res is None else ["--low-res" if low_res else "--full-res"]
        self._cmd = list(worker_cmd or worker_command())
        self._env = env
        self._popen = popen
        self._proc: subprocess.Popen[bytes] | None = None
        self._answers: IO[bytes] | None = None
        self._log: Any = None
        self._lock = threading.Lock()  # one request at a time
        self._closed = False  # closed: no worker is started any more (a warm-up racing the close)
        self.starts = 0  #: workers started so far (one, unless a worker died)

    def start(self) -> None:
        """Start the worker now (any thread; blocks until it has loaded TensorFlow and the model),
        so that the first :meth:`cam` costs one pass too. Raises :class:`PredictError` as :meth:`cam`."""
        with self._lock:
            self._started()

    def cam(self, image: Path, out_file: Path, rel: str | None = None) -> str:
        """Write ``image``'s Grad-CAM overlay (its top-1 class) to ``out_file``; returns its path.
        Raises :class:`PredictError` (one line) when the image or the worker fails."""
        with self._lock:
            proc, answers = self._started()
            request = {"image": str(Path(image).absolute()), "out": str(Path(out_file).absolute()), "rel": rel}
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                raise self._died() from None
            rec = self._read(answers)
        if isinstance(rec, PredictionRow) and rec.cam:
            return rec.cam
        if isinstance(rec, Skipped):
            raise PredictError(f"{Path(image).name}: {rec.reason}")
        raise PredictError(f"{Path(image).name}: the worker returned no Grad-CAM")

    def _started(self) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
        """The running worker, started (and its ready record read) if there is none."""
        if self._proc is not None and self._proc.poll() is None and self._answers is not None:
            return self._proc, self._answers
        self._stop()
        if self._closed:
            raise PredictError("the Grad-CAM worker was closed")
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the worker's output, closed in _stop()
        proc, r = spawn(
            [*self._cmd, "cams"],
            [str(self.run_dir)],
            self._options,
            what="Grad-CAM",
            error_type=PredictError,
            log=self._log,
            env=self._env,
            popen=self._popen,
            stdin=subprocess.PIPE,
        )
        self._proc = proc
        self.starts += 1
        answers = self._answers = os.fdopen(r, "rb")
        if not isinstance(self._read(answers), PredictStarted):
            raise PredictError("the Grad-CAM worker did not start")
        return proc, answers

    def _read(self, answers: IO[bytes]) -> Any:
        """The worker's next record; its error line or its death as :class:`PredictError`."""
        for line in answers:
            rec = decode(line)
            if isinstance(rec, str):
                raise PredictError(rec)
            if rec is not None:
                return rec
        raise self._died()

    def _died(self) -> PredictError:
        proc = self._proc
        rc = proc.wait() if proc is not None else None
        tail = log_tail(self._log)
        how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with code {rc}"
        self._stop()
        return PredictError(f"the Grad-CAM worker {how}" + (f": {tail}" if tail else ""))

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            proc.wait()
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        for f in (self._answers, self._log):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        self._answers = self._log = None

    def close(self) -> None:
        """Stop the worker for good (any thread; a request in progress then fails)."""
        self._closed = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # unblocks a request waiting for its answer
        with self._lock:
            self._stop()


class CamServers:
    """One :class:`CamServer` per run and resolution, started on first use; the inference screen's
    Grad-CAM source (``servers(run_dir, image, out_file, low_res) -> overlay path``)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._servers: dict[tuple[Path, bool | None], CamServer] = {}
        self._lock = threading.Lock()
        self._closed = False

    def server(self, run_dir: Path, low_res: bool | None) -> CamServer:
        key = (Path(run_dir).absolute(), low_res)
        with self._lock:
            if self._closed:
                raise PredictError("the Grad-CAM workers were closed")
            if key not in self._servers:
                self._servers[key] = CamServer(run_dir, low_res, **self._options)
            return self._servers[key]

    def __call__(self, run_dir: Path, image: Path, out_file: Path, low_res: bool | None = None) -> str:
        return self.server(run_dir, low_res).cam(image, out_file)

    def warm(self, run_dir: Path, low_res: bool | None = None) -> None:
        """Start the run's worker ahead of its first request (blocks until it is ready; call it
        from a thread), and stop the others: the screen shows one run's results at a time, and each
        worker holds TensorFlow and a model in memory. A worker that cannot start raises here and
        again at the request."""
        key = (Path(run_dir).absolute(), low_res)
        with self._lock:
            others = [server for k, server in self._servers.items() if k != key]
            self._servers = {k: server for k, server in self._servers.items() if k == key}
        for server in others:
            server.close()
        self.server(run_dir, low_res).start()

    def close(self) -> None:
        """Stop every worker for good (the screen closes); a warm-up still running starts none."""
        with self._lock:
            self._closed = True
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.close()
