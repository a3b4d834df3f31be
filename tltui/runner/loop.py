"""The queue runner: a detached process (no TensorFlow) that owns the workers.

``python -m tltui.runner.loop --workspace DIR`` (started on demand by
:func:`tltui.client.queue_ops.ensure_runner`, in its own session, output to
``<ws>/runner.log``). One per workspace: it holds an exclusive ``flock`` on
``<ws>/runner.lock`` for its whole life and describes itself in
``<ws>/runner.json`` (pid + start time).

Each tick (at most :attr:`RunnerSettings.tick` seconds, sooner when a worker pipe,
a child exit or a client's ``SIGUSR1`` wakes it) it:

1. reads worker pipes and keeps the registry's summary columns current;
2. records the exit of every worker that ended (``finished`` event, else
   failed with the signal, last epoch and log tail);
3. adopts running runs whose supervisor died (worker alive: keep watching it
   by pid + start time; dead: ``interrupted``), and honours cancel requests
   (SIGTERM to the worker's process group, SIGKILL after the grace period);
4. starts queued runs in queue order while slots are free and the queue is
   not paused.

It exits after :attr:`RunnerSettings.idle_timeout` seconds with no worker to watch
and nothing startable (an empty or paused queue), and on
SIGTERM (leaving workers running for the next runner to adopt). SIGHUP is
ignored. Every registry change is a compare-and-set on the run's status, so a
client's cancel racing a start, or this process dying mid-way, never loses or
duplicates a run.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tltui.core import gpus as gpus_mod
from tltui.core import runstate
from tltui.core.errors import PresetError, TltuiError
from tltui.core.protocol import EpochEnd, Event, Started
from tltui.core.settings import RunnerSettings, Settings
from tltui.core.status import RunStatus, SchedState
from tltui.core.workspace import RunRecord, Workspace, write_json
from tltui.runner import asha, notify, supervisor
from tltui.runner.executor import EXECUTORS, AdoptedJob, Executor, Job, JobStatus, LocalExecutor

log = logging.getLogger("tltui.runner")

# ---------------------------------------------------------------------------- settings


def load_settings(ws: Workspace, env: Mapping[str, str] | None = None) -> RunnerSettings:
    """The ``[runner]`` table (:class:`tltui.core.settings.RunnerSettings`, env ``TLTUI_RUNNER_<KEY>``
    wins). Read once, when the runner starts; it never dies of a bad ``settings.toml``: each problem
    (an executor plugin's table's too) is logged in one line and that value keeps its default
    (``tltui queue add`` refuses the file)."""
    settings = Settings.load(ws, env, strict=False)
    issues = settings.issues
    try:
        EXECUTORS.check_settings(settings)
    except PresetError as e:  # such a table fails the runs of its executor, when they start
        issues += e.issues
    for issue in issues:
        ours = issue.field is None or issue.field.split(".")[0] == "runner"
        log.warning("%s%s", issue, " (the runner uses the default)" if ours else "")
    return settings.runner


# ---------------------------------------------------------------------------- slots


def free_gpus(
    inventory: Mapping[int, gpus_mod.GpuInfo], usage: Mapping[int, int], settings: RunnerSettings, held: set[int]
) -> list[int]:
    """GPUs a run may get now, least-used first.

    A GPU is free when fewer than ``max_runs_per_gpu`` of our runs use it and it
    is not in ``held`` (kept for an earlier run in the queue); a GPU none of our
    runs use must also not be busy with someone else's work.
    """
    free = [
        i
        for i, g in inventory.items()
        if i not in held
        and usage.get(i, 0) < settings.max_runs_per_gpu
        and (usage.get(i, 0) > 0 or not gpus_mod.is_busy(g, settings.gpu_busy_util, settings.gpu_busy_memory))
    ]
    return sorted(free, key=lambda i: (usage.get(i, 0), i))


def pick_gpus(
    need: int,
    inventory: Mapping[int, gpus_mod.GpuInfo],
    usage: Mapping[int, int],
    settings: RunnerSettings,
    held: set[int],
) -> list[int] | None:
    """``need`` devices from :func:`free_gpus`, or ``None`` if not enough are free now."""
    free = free_gpus(inventory, usage, settings, held)
    return free[:need] if len(free) >= need else None


# ---------------------------------------------------------------------------- the runner


@dataclass
class _Tracked:
    job: Job
    executor: Executor
    state: runstate.RunState
    term_sent: float | None = None
    kill_sent: bool = False
    fd: int | None = None  # the descriptor registered with the selector, until unwatched (the runner owns it)
    sched: tuple[str | None, str | None] = (None, None)  # the scheduler's (state, reason) as last recorded
    node: str | None = None  # the node the scheduler named, as last recorded
    #: events.jsonl's size before this job's worker started: a ``finished`` before it is an earlier worker's
    #: (``None``: unknown, an adopted job)
    since: int | None = None


class Runner:
    """The scheduling loop. ``clock`` and the GPU inventory are injectable for tests."""

    def __init__(self, ws: Workspace, settings: RunnerSettings | None = None, *, clock: Any = time.monotonic) -> None:
        self.ws = ws
        self.settings = settings or load_settings(ws)
        self.clock = clock
        self.me = os.getpid()
        self.me_start = supervisor.process_start_time(self.me)
        self.host = socket.gethostname()
        self.jobs: dict[str, _Tracked] = {}
        self.executors: dict[str, Executor] = {}
        self.stopping = False
        self.sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, None)
        self.gpu_indexes = [g.index for g in gpus_mod.discover()]
        self._gpu_sample: dict[int, gpus_mod.GpuInfo] = {}
        self._gpu_sampled_at = float("-inf")
        self._last_scan = float("-inf")
        self._woken = True
        self._startable = False  # queued runs and not paused, as of the last registry scan
        self.notifier = notify.Notifier(ws)  # [notify]: a failed run, a sweep's end, the queue emptied
        self.stopper = asha.SweepStopper(ws)  # [sweep.budget]: promote or stop the runs paused at a rung

    # ------------------------------------------------------------ process plumbing

    def install_signals(self) -> None:
        """Signals wake the loop through a pipe (``set_wakeup_fd``); handlers only set flags."""
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, lambda *_: None)  # a client changed the queue
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a worker ended

    def _on_term(self, *_: object) -> None:
        self.stopping = True

    def executor(self, name: str) -> Executor:
        if name not in self.executors:
            self.executors[name] = EXECUTORS[name](self.ws)
        return self.executors[name]

    def run(self) -> int:
        log.info("runner %d up for %s (gpus: %s; %s)", self.me, self.ws.root, self.gpu_indexes or "none", self.settings)
        idle_since: float | None = None
        while not self.stopping:
            self.wait(self.settings.tick)
            try:
                self.step()
            except Exception:  # e.g. a full disk under the registry: say so, keep supervising
                log.exception("runner step failed; retrying in a second")
                time.sleep(1.0)
            if self.stopping:
                break
            if self.jobs or self._startable:
                idle_since = None
            elif idle_since is None:
                idle_since = self.clock()
            elif self.clock() - idle_since >= self.settings.idle_timeout:
                if self._retire():
                    log.info("idle for %.0f s: exiting", self.settings.idle_timeout)
                    break
                idle_since = None
        self.notifier.close()
        if self.jobs:
            log.info("leaving %d worker(s) running for the next runner: %s", len(self.jobs), ", ".join(self.jobs))
        for t in self.jobs.values():
            self._unwatch(t)
            t.job.close()
        return 0

    def publish(self) -> None:
        """Tell clients this runner is up (``runner.json``, written atomically)."""
        write_json(
            self.ws.runner_info,
            {
                "pid": self.me,
                "pid_start": self.me_start,
                "started": time.time(),
                "host": self.host,
                "workspace": str(self.ws.root),
            },
        )

    def unpublish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self.ws.runner_info.read_text()).get("pid") == self.me:
                self.ws.runner_info.unlink()

    def _retire(self) -> bool:
        """Leave on idle without stranding work: a client that saw ``runner.json`` before
        it went has already committed its runs, so one last look finds them."""
        self.unpublish()
        self._startable = not self.ws.is_paused() and bool(self.ws.queue())
        if self._startable or self.jobs:
            self.publish()
            return False
        return True

    def wait(self, timeout: float) -> None:
        """Sleep until a pipe has data, a signal arrives, or ``timeout``; then read every pipe."""
        for key, _ in self.sel.select(timeout):
            if key.data is None:
                with contextlib.suppress(BlockingIOError, OSError):
                    while os.read(self._wake_r, 512):
                        pass
                self._woken = True
        for rid, t in list(self.jobs.items()):
            self._pump(rid, t)

    def _watch(self, run_id: str, t: _Tracked) -> None:
        """Track a job (from now on this runner owns it: it alone closes it) and select on its descriptor."""
        self.jobs[run_id] = t
        fd = t.job.fileno()
        if fd is None:
            return
        try:
            self.sel.register(fd, selectors.EVENT_READ, run_id)
        except KeyError:  # a number left registered by a job closed without unwatching: never lose this job for it
            log.warning("%s: descriptor %d was still registered; taking it over", run_id, fd)
            self.sel.unregister(fd)
            self.sel.register(fd, selectors.EVENT_READ, run_id)
        t.fd = fd

    def _unwatch(self, t: _Tracked) -> None:
        """Stop selecting on the descriptor registered for ``t`` (whatever its job's ``fileno()`` says now:
        a finished job may answer ``None`` already), before the job closes it and the number is reused."""
        if t.fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(t.fd)
            t.fd = None

    def _pump(self, run_id: str, t: _Tracked) -> None:
        evs = t.job.events()
        if t.fd is not None and t.job.fileno() != t.fd:  # the pipe hit EOF: stop selecting on it
            self._unwatch(t)
        self._apply(run_id, t.state, evs)
        if t.executor.places_devices:  # a cluster run: record the node it landed on
            host = next((ev.host for ev in reversed(evs) if isinstance(ev, Started) and ev.host), None)
            if host:
                self.ws.update(run_id, host=host)

    def _apply(self, run_id: str, state: runstate.RunState, evs: Sequence[Event]) -> None:
        last_started: Started | None = None
        last_epoch: EpochEnd | None = None
        for ev in evs:
            state.apply(ev)
            if isinstance(ev, Started):
                last_started = ev
            elif isinstance(ev, EpochEnd):
                last_epoch = ev
        for last in (last_started, last_epoch):
            if last is not None:
                supervisor.record_event(self.ws, run_id, last, state)

    def step(self) -> None:
        self.reap()
        self._woken |= self.stopper.step()  # a promoted run is queued again: schedule now
        now = self.clock()
        if self._woken or now - self._last_scan >= 0.5:
            self._woken = False
            self._last_scan = now
            self.adopt_orphans()
            self.handle_cancels()
            self._startable = not self.ws.is_paused() and bool(self.ws.queue())
            if self._startable and not self.stopping:
                self.schedule()
        self.notifier.step(busy=bool(self.jobs))

    # ------------------------------------------------------------ workers ending

    def reap(self) -> None:
        for rid, t in list(self.jobs.items()):
            st = t.job.status()
            if st.alive:
                if (
                    t.term_sent is not None
                    and not t.kill_sent
                    and self.clock() - t.term_sent >= self.settings.cancel_grace
                ):
                    log.info("%s: still running %.0f s after SIGTERM: SIGKILL", rid, self.settings.cancel_grace)
                    t.job.cancel(force=True)
                    t.kill_sent = True
                self._record_sched(rid, t, st)
                continue
            self._pump(rid, t)
            status = supervisor.record_exit(
                self.ws,
                rid,
                st.returncode,
                cancelled=t.term_sent is not None,
                interrupted=st.lost,
                cause=st.cause,
                since=t.since,
            )
            if status == RunStatus.CANCELLED and t.sched[0] == SchedState.PENDING:
                self.ws.update(rid, reason="cancelled while waiting in the scheduler's queue (it never started)")
            self._unwatch(t)
            t.job.close()
            del self.jobs[rid]
            log.info("%s: worker %s ended (code %s): %s", rid, t.job.pid, st.returncode, status)
            self.notifier.ended(rid, status)
            self._woken = True  # a slot is free

    def _record_sched(self, run_id: str, t: _Tracked, st: JobStatus) -> None:
        """Keep the run's ``sched_*`` (pending and why, an unreachable scheduler and since when) and its node
        as the executor last heard them: written when they change, so clients show them at once."""
        if (st.sched_state, st.reason) != t.sched:
            since = (st.since or time.time()) if st.sched_state else None
            self.ws.update(run_id, sched_state=st.sched_state, sched_reason=st.reason, sched_since=since)
            if st.sched_state or t.sched[0]:
                log.info("%s: scheduler: %s", run_id, " ".join(filter(None, (st.sched_state or "running", st.reason))))
            t.sched = (st.sched_state, st.reason)
        if st.node and st.node != t.node:
            self.ws.update(run_id, host=st.node)
            t.node = st.node

    # ------------------------------------------------------------ adoption and cancel

    def adopt_orphans(self) -> None:
        for rec in self.ws.list_runs([RunStatus.RUNNING]):
            if rec.id in self.jobs:
                continue
            if rec.owner_pid != self.me and supervisor.is_alive(rec.owner_pid, rec.owner_start):
                continue  # a live `tltui run` (or another supervisor) watches it
            try:  # an executor this process does not know: watch its worker as a local one, by pid
                ex = self.executor(rec.executor if rec.executor in EXECUTORS else LocalExecutor.name)
            except Exception as e:  # noqa: BLE001 - e.g. a broken [ray] table: keep supervising the other runs
                log.warning("%s: cannot watch its %s job: %s", rec.id, rec.executor, e)
                continue
            rec = self._with_worker_pid(rec)
            job = ex.adopt(rec)
            claimed = self.ws.update(rec.id, expect=[RunStatus.RUNNING], owner_pid=self.me, owner_start=self.me_start)
            if claimed is None:
                continue
            if job is None:
                status = supervisor.record_exit(self.ws, rec.id, None, interrupted=True)
                log.info("%s: worker gone while unsupervised: %s", rec.id, status)
                continue
            # a local worker's state so far comes from the run's summary, not a replay of every event
            adopted = job.state if isinstance(job, AdoptedJob) else None
            state = adopted if adopted is not None else runstate.RunState()
            t = _Tracked(job, ex, state, sched=(rec.sched_state, rec.sched_reason))
            if adopted is not None:  # the registry, as a replay of those events would have left it
                supervisor.record_state(self.ws, rec.id, adopted)
            # a pending cancel is sent by handle_cancels
            self._watch(rec.id, t)
            self._pump(rec.id, t)
            log.info("%s: adopted worker %s", rec.id, job.pid)

    def _with_worker_pid(self, rec: RunRecord) -> RunRecord:
        """A run claimed by a runner that died before recording the worker's pid:
        find the worker from its ``started`` event (its pid and run dir must match)."""
        if rec.pid is not None:
            return rec
        st = runstate.load(self.ws.run_paths(rec.id).events)
        pid = st.pid
        if not pid or not supervisor.is_alive(pid, None):
            return rec
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return rec
        if os.fsencode(str(self.ws.run_paths(rec.id).dir)) not in cmdline:
            return rec
        return replace(rec, pid=pid, pid_start=supervisor.process_start_time(pid))

    def handle_cancels(self) -> None:
        for rec in self.ws.list_runs([RunStatus.RUNNING]):
            t = self.jobs.get(rec.id)
            if t is None or not rec.cancel_requested or t.term_sent is not None:
                continue
            log.info("%s: cancel requested: SIGTERM to worker %s", rec.id, t.job.pid)
            t.job.cancel()
            t.term_sent = self.clock()

    # ------------------------------------------------------------ starting runs

    def _gpu_now(self) -> dict[int, gpus_mod.GpuInfo]:
        if self.clock() - self._gpu_sampled_at >= 1.0:
            self._gpu_sample = {i: g for i, g in gpus_mod.sample().items() if i in self.gpu_indexes}
            self._gpu_sampled_at = self.clock()
        return self._gpu_sample

    def schedule(self) -> None:
        queue = self.ws.queue()
        if not queue:
            return
        # this machine's slots: what the running runs of every executor that does not place its own devices hold
        running = [r for r in self.ws.list_runs([RunStatus.RUNNING]) if not EXECUTORS.places_devices(r.executor)]
        usage = collections.Counter(g for r in running for g in (r.gpus or []))
        cpu_used = sum(1 for r in running if not r.gpus)
        inventory = self._gpu_now() if self.gpu_indexes else {}
        held: set[int] = set()
        arrays: dict[tuple[str, str], list[RunRecord]] = {}  # runs a cluster takes as one job array
        for rec in queue:
            try:
                places_devices = rec.executor in EXECUTORS and EXECUTORS[rec.executor].places_devices
            except TltuiError as e:  # a plugin that does not load
                self._fail_queued(rec, f"could not start the worker: {e}")
                continue
            if places_devices:
                key = self._array_key(rec)
                if key is None:
                    self.start(rec, [])  # a cluster schedules its own devices: submit now, it queues the job
                else:
                    arrays.setdefault((rec.executor, key), []).append(rec)
                continue
            want = self.ws.requested_gpus(rec.id)
            need = (1 if self.gpu_indexes else 0) if want is None else want
            if need > len(self.gpu_indexes):
                have = len(self.gpu_indexes)
                self._fail_queued(
                    rec,
                    f"train.gpus = {need} but this machine has {have} GPU{'s' if have != 1 else ''}; "
                    f"set train.gpus = {have if have else 0} and `tltui resume {rec.id}`",
                )
                continue
            if rec.executor not in EXECUTORS:
                self._fail_queued(rec, f"unknown executor {rec.executor!r} (known: {', '.join(EXECUTORS)})")
                continue
            if need == 0:
                if cpu_used < self.settings.cpu_slots and self.start(rec, []):
                    cpu_used += 1
                continue
            devices = pick_gpus(need, inventory, usage, self.settings, held)
            if devices is None:
                # keep what is free for this run, so later small runs cannot starve it
                held.update(free_gpus(inventory, usage, self.settings, held))
                continue
            if self.start(rec, devices):
                usage.update(devices)
        for group in arrays.values():
            self.start_array(group)

    def _array_key(self, rec: RunRecord) -> str | None:
        """Which job array of its executor a queued run joins (``None``: it goes alone; a resume always does)."""
        if rec.resume or rec.sweep is None:
            return None
        try:
            return self.executor(rec.executor).array_key(rec)
        except Exception:  # noqa: BLE001 - the executor does not load: start() fails the run, saying why
            return None

    def _fail_queued(self, rec: RunRecord, reason: str) -> None:
        if self.ws.update(
            rec.id,
            expect=[RunStatus.QUEUED],
            status=RunStatus.FAILED,
            reason=reason,
            queue_pos=None,
            finished=time.time(),
        ):
            log.info("%s: not started: %s", rec.id, reason)
            self.notifier.ended(rec.id, RunStatus.FAILED)

    def start(self, rec: RunRecord, devices: list[int]) -> bool:
        """Claim a queued run (compare-and-set) and launch its worker. False if it was not ours to start."""
        claimed = self._claim(rec, devices)
        if claimed is None:
            return False
        since = supervisor.events_size(self.ws.run_paths(rec.id).events)
        try:
            ex = self.executor(rec.executor)
            job = ex.submit(rec.id, gpus=devices, resume=claimed.resume)
        except Exception as e:  # noqa: BLE001 - e.g. a bad TLTUI_WORKER_CMD or a full process table (logged)
            self._not_started(rec.id, e)
            return True
        self._started(ex, job, claimed, devices, since)
        return True

    def start_array(self, recs: Sequence[RunRecord]) -> None:
        """Claim new queued runs of one cluster and submit them as one job array (one run: as :meth:`start`)."""
        if len(recs) == 1:
            self.start(recs[0], [])
            return
        claimed = [c for c in (self._claim(rec, []) for rec in recs) if c is not None]
        if not claimed:
            return
        since = [supervisor.events_size(self.ws.run_paths(c.id).events) for c in claimed]
        try:
            ex = self.executor(claimed[0].executor)
            jobs = ex.submit_array([c.id for c in claimed])
        except Exception as e:  # noqa: BLE001 - sbatch refused the array: every run of it says why
            for c in claimed:
                self._not_started(c.id, e)
            return
        for c, job, size in zip(claimed, jobs, since, strict=True):
            self._started(ex, job, c, [], size)

    def _claim(self, rec: RunRecord, devices: list[int]) -> RunRecord | None:
        places_devices = EXECUTORS.places_devices(rec.executor)
        return self.ws.update(
            rec.id,
            expect=[RunStatus.QUEUED],
            status=RunStatus.RUNNING,
            queue_pos=None,
            gpus=devices,
            pid=None,
            pid_start=None,
            owner_pid=self.me,
            owner_start=self.me_start,
            host=None if places_devices else self.host,  # a cluster names the node when the job lands
            started=time.time(),
            finished=None,
            reason=None,
            sched_state=None,
            sched_reason=None,
            sched_since=None,
        )

    def _not_started(self, run_id: str, e: Exception) -> None:
        why = "; ".join(e.lines()) if isinstance(e, TltuiError) else str(e)  # e.g. a bad [ray] table
        self.ws.update(
            run_id, status=RunStatus.FAILED, reason=f"could not start the worker: {why}", finished=time.time()
        )
        log.exception("%s: could not start", run_id)
        self.notifier.ended(run_id, RunStatus.FAILED)

    def _started(self, ex: Executor, job: Job, claimed: RunRecord, devices: list[int], since: int | None) -> None:
        t = _Tracked(job, ex, runstate.RunState(), since=since)
        self._watch(claimed.id, t)  # first: a failure below must not orphan it
        supervisor.record_started(self.ws, claimed.id, job.pid or 0, devices, here=not ex.places_devices)
        log.info(
            "%s: started worker %s on %s%s",
            claimed.id,
            job.pid,
            devices or "CPU",
            " (resume)" if claimed.resume else "",
        )


# ---------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tltui.runner.loop", description="tltui queue runner (normally started by tltui)"
    )
    ap.add_argument("--workspace", required=True, metavar="DIR")
    ap.add_argument("--idle-timeout", type=float, help="seconds idle before exiting (default 60)")
    ap.add_argument("--cancel-grace", type=float, help="seconds from SIGTERM to SIGKILL on cancel (default 30)")
    ap.add_argument("--lock-wait", type=float, default=3.0, help="seconds to wait for another runner to leave")
    args = ap.parse_args(argv)
    os.umask(0o077)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format=f"%(asctime)s runner[{os.getpid()}] %(message)s")
    ws = Workspace(args.workspace)
    fd = os.open(ws.runner_lock, os.O_RDWR | os.O_CREAT, 0o600)
    # wait a little: a runner that is retiring right now still holds the lock
    deadline = time.monotonic() + args.lock_wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                log.info("another queue runner holds %s: exiting", ws.runner_lock)
                return 0
            time.sleep(0.05)
    settings = load_settings(ws)
    if args.idle_timeout is not None:
        settings = settings.model_copy(update={"idle_timeout": args.idle_timeout})
    if args.cancel_grace is not None:
        settings = settings.model_copy(update={"cancel_grace": args.cancel_grace})
    runner = Runner(ws, settings)
    runner.install_signals()
    runner.publish()
    try:
        return runner.run()
    finally:
        runner.unpublish()
        ws.close()


if __name__ == "__main__":
    sys.exit(main())
