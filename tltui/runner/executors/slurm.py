"""Runs as Slurm jobs, submitted through submitit (``[slurm]`` of ``<ws>/settings.toml``).

Each run is one job (``sbatch`` via :class:`submitit.AutoExecutor`) running the
usual worker on the run folder itself: a Slurm cluster shares its filesystem
(submitit needs that for its own files), so the worker writes
``events.jsonl`` where the TUI tails it and the runner follows it the same way
(:class:`SlurmJob` reads new lines every runner tick).

- Resources: ``partition``, ``time_limit`` (minutes), ``gpus`` (when a preset
  leaves ``train.gpus`` unset; default 0), ``cpus_per_task`` (default 4),
  ``mem_gb``, ``account``, ``qos``, ``constraint``, ``additional`` (a table of
  extra ``#SBATCH`` options), ``setup`` (shell lines before the worker, e.g.
  ``module load cuda``), ``python`` (the interpreter on the nodes).
- Time limits: Slurm sends USR2 ``signal_delay`` seconds (default 90) before
  the limit; submitit calls :meth:`WorkerTask.checkpoint`, which stops the
  worker (SIGTERM: it saves its BackupAndRestore state; SIGKILL if it has not
  stopped within half of ``signal_delay``) and requeues the same job with
  ``--resume``, so it goes on from the last completed epoch, or from the start
  when none completed. A job Slurm ends at its limit without that (its warning
  came before the job could take it) is requeued by the runner. The rule, in
  :class:`TimeLimit`: a job that reaches its limit requeues while
  ``max_requeues`` (default 3) lasts, whether or not it completed an epoch; the
  run ends ``failed``, saying why, when the budget is spent or when it reaches
  the limit again with no epoch completed since its last requeue.
- Preemption and ``scontrol requeue``: Slurm restarts the job's script
  (``SLURM_RESTART_COUNT`` > 0), and the worker resumes from the last completed
  epoch; these do not count against ``max_requeues``.
- Status is asked of the scheduler (``squeue``; ``sacct`` for jobs the
  controller has forgotten, where there is accounting) at most every
  ``poll_interval`` seconds (default 30; once a second after the worker's
  ``finished`` event). Node failures (``NODE_FAIL``, ``BOOT_FAIL``, an
  unrequeued ``PREEMPTED``...) make the run ``interrupted``; so does a scheduler
  that does not answer while the worker writes nothing for ``scheduler_grace``
  seconds (default 600). ``tltui resume`` continues it.
- ``tltui cancel``: ``scancel --signal=TERM`` (the worker saves and ends
  ``cancelled``), plain ``scancel`` for a job still pending or one that does not
  stop.
- Job arrays (opt-in, ``[cluster.slurm] array`` / ``array_limit`` of a preset): the runs of one sweep queued
  together go as one ``sbatch --array=0-N%K`` (submitit's ``batch()``); each run is a task, known as
  ``ARRAYJOBID_i`` to squeue, scancel and its job history; requeues and resumes are jobs of their own.
- ``cluster``: ``"slurm"`` (default); ``"local"`` runs the same submitit job as
  a local process (the tests without a scheduler use it).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tltui.core import cluster_config, cluster_jobs, protocol, runstate
from tltui.core.cluster_jobs import ClusterJob
from tltui.core.protocol import Event, Finished, Started
from tltui.core.settings import SlurmSettings
from tltui.core.status import RunStatus, SchedState
from tltui.core.workspace import RunPaths, RunRecord, WorkspaceError, write_json
from tltui.runner import supervisor
from tltui.runner.executor import Executor, Job, JobStatus
from tltui.runner.executors import missing_extra

log = logging.getLogger("tltui.runner.executors.slurm")

JOB_FILE = "slurm_job.json"
LIMIT_FILE = "slurm_time_limit.json"  # the TimeLimit of the run's job: which time-limit requeue it is
LOST_STATES = {"NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "DEADLINE", "REVOKED", "INTERRUPTED", "NO PROCESS AND NO RESULT"}
ALIVE_STATES = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "SUSPENDED",
    "CONFIGURING",
    "COMPLETING",
    "STAGE_OUT",
    "SIGNALING",
    "UNKNOWN",
    "READY",
}
PENDING_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}  # waiting in the queue: no node yet
UNREACHABLE = "UNREACHABLE"  # squeue could not reach the controller
GONE = "GONE"  # the controller no longer knows the job (MinJobAge) and there is no accounting to ask
TIMED_OUT = "timed-out too many times"  # submitit's words when its count of timeouts is spent (older jobs)
SUBMITIT_TIMEOUTS = 1_000_000  # submitit's own count never ends a job: TimeLimit decides
QUERY_TIMEOUT = 30.0  # seconds for one squeue / sacct
QUERY_WAIT = 0.2  # what a runner tick waits for squeue; a controller that is down takes ~20 s to say so
COMPLETED_WAIT = 3.0  # seconds squeue may take to confirm a job whose worker wrote `completed`
SLOW_ANSWER = 5.0  # seconds without an answer from squeue before the run shows `cluster unreachable`
_QUERIES = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="squeue")


def _submitit() -> Any:
    try:
        import submitit
    except ImportError as e:
        raise missing_extra("slurm", "slurm", e) from e
    return submitit


class TimeLimitReached(RuntimeError):
    """Raised in a job by :meth:`WorkerTask.checkpoint` when the time limit ends the run (no requeue)."""


@dataclass(frozen=True)
class TimeLimit:
    """A job's time limit, the requeues it has cost the run so far, and the rule for a job that reaches it.

    The job requeues, resuming from its last completed epoch, while ``max_requeues`` lasts, whether
    or not it completed an epoch: on a busy cluster a job may be signalled before its first epoch
    ends (a slow start, data to decode), and the next one starts better off. The run fails when the
    budget is spent, or when the job reaches the limit again with no epoch completed since its last
    requeue: the next one would do the same. A new submission (a new run, ``tltui resume``) starts
    with the whole budget.
    """

    minutes: int
    max_requeues: int
    requeues: int = 0  # time-limit requeues since the run was submitted
    epochs_at_requeue: int = 0  # epochs done at the last of them

    def reason(self, epochs_done: int, run_id: str) -> str | None:
        """``None``: requeue; else why the run fails here, in one line."""
        head = f"Slurm time limit of {self.minutes} min reached"
        where = f"after epoch {epochs_done}" if epochs_done else "before the first epoch ended"
        then = f"then `tltui resume {run_id}` (checkpoints kept)"
        if self.requeues >= self.max_requeues:
            if not self.requeues:
                return f"{head} {where} (max_requeues = 0): raise [slurm] time_limit or max_requeues, {then}"
            return (
                f"{head} again after {self.requeues} requeue(s) (max_requeues = {self.max_requeues}), {where}: "
                f"raise [slurm] time_limit or max_requeues, {then}"
            )
        if self.requeues and epochs_done <= self.epochs_at_requeue:
            return (
                f"{head} again with no epoch completed since requeue {self.requeues} "
                f"(max_requeues = {self.max_requeues}), {where}: raise [slurm] time_limit, {then}"
            )
        return None

    def requeued(self, epochs_done: int) -> TimeLimit:
        return replace(self, requeues=self.requeues + 1, epochs_at_requeue=epochs_done)

    def counts(self, seconds_run: float) -> bool:
        """Whether a USR2 after ``seconds_run`` s of the job is its time limit's warning, not a preemption
        (a site's ``preempt_send_user_signal``; those requeue without counting): submitit's own test."""
        limit = self.minutes * 60
        return seconds_run >= min(0.8 * limit, limit - 600)

    def save(self, run_dir: str | Path) -> None:
        write_json(Path(run_dir) / LIMIT_FILE, asdict(self))

    @classmethod
    def load(cls, run_dir: str | Path) -> TimeLimit | None:
        try:
            return cls(**json.loads((Path(run_dir) / LIMIT_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None


def _ignore_usr2() -> None:
    """In the worker, before exec: Slurm signals every process of the job, and USR2 would kill the
    worker at once; the job's task stops it with SIGTERM instead (it ends the epoch's batch and says so)."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class WorkerTask:
    """What a Slurm job runs: the worker on the run folder; on its time limit's warning (or a preemption)
    it stops the worker and requeues itself with ``--resume``, as :class:`TimeLimit` allows."""

    def __init__(
        self, cmd: Sequence[str], run_dir: str, resume: bool, stop_wait: float = 60.0, limit: TimeLimit | None = None
    ) -> None:
        self.cmd = list(cmd)
        self.run_dir = run_dir
        self.resume = resume
        self.stop_wait = stop_wait  # seconds between SIGTERM and SIGKILL when the job must stop
        self.limit = limit  # None: a job from before the rule (submitit's count decides)
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = time.monotonic()

    def argv(self, resume: bool | None = None) -> list[str]:
        resume = self.resume if resume is None else resume
        return [*self.cmd, "train", self.run_dir, *(["--resume"] if resume else [])]

    def __call__(self) -> int:
        self._started = time.monotonic()
        if self.limit is not None:  # which time-limit requeue this job is, for the runner (it may end at the limit)
            self.limit.save(self.run_dir)
        # Slurm restarted this job's script (preemption, `scontrol requeue`, a node failure with
        # --requeue): the run has begun, so it resumes instead of starting over
        restarted = _int(os.environ.get("SLURM_RESTART_COUNT")) or 0
        argv = self.argv(self.resume or restarted > 0)
        with open(Path(self.run_dir) / "worker.log", "ab") as out:  # the shared run folder, as for local runs
            if restarted:  # the same job id again: say so in the run's job history
                with contextlib.suppress(OSError):
                    cluster_jobs.record(self.run_dir, _cluster_job(_own_job_id(), "restarted"))
            if restarted and not self.resume:
                out.write(
                    f"=== slurm restarted job {_own_job_id()} (SLURM_RESTART_COUNT={restarted}): resuming\n".encode()
                )
                out.flush()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=_ignore_usr2,
            )
            rc = self._proc.wait()
        if rc != 0:
            raise RuntimeError(f"worker exited with code {rc}")
        return rc

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on the time limit's warning or a preemption: stop the worker, then requeue
        the job resuming; raises :class:`TimeLimitReached` when :class:`TimeLimit` ends the run instead."""
        self._stop_worker()
        limit = self.limit
        if limit is not None and limit.counts(time.monotonic() - self._started):
            done = runstate.load(RunPaths(Path(self.run_dir)).events).epochs_done
            reason = limit.reason(done, Path(self.run_dir).name)
            if reason is not None:
                raise TimeLimitReached(reason)
            limit = limit.requeued(done)
            with open(Path(self.run_dir) / "worker.log", "a", encoding="utf-8") as f:
                f.write(
                    f"=== slurm job {_own_job_id()}: time limit: requeue {limit.requeues} "
                    f"of {limit.max_requeues}, resuming after epoch {done}\n"
                )
        submitit = _submitit()
        return submitit.helpers.DelayedSubmission(WorkerTask(self.cmd, self.run_dir, True, self.stop_wait, limit))

    def _stop_worker(self) -> None:
        """SIGTERM (the worker saves and ends ``cancelled``), SIGKILL after ``stop_wait``: the resume
        starts from the last saved epoch either way."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        # not proc.wait(): the interrupted __call__ holds the Popen's wait lock; a zombie counts as gone
        deadline = time.monotonic() + self.stop_wait
        while supervisor.is_alive(proc.pid, None) and time.monotonic() < deadline:
            time.sleep(0.1)
        if supervisor.is_alive(proc.pid, None):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "cmd": self.cmd,
            "run_dir": self.run_dir,
            "resume": self.resume,
            "stop_wait": self.stop_wait,
            "limit": self.limit,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["cmd"], state["run_dir"], state["resume"], state.get("stop_wait", 60.0), state.get("limit")
        )


class SlurmJob(Job):
    """A submitted job: events tailed from the shared ``events.jsonl``, status polled sparingly."""

    def __init__(
        self,
        ex: SlurmExecutor,
        run_id: str,
        job: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        since: int = 0,
    ) -> None:
        self.ex = ex
        self.run_id = run_id
        self.job = job
        self.pid = None
        self.clock = clock
        self.paths = ex.ws.run_paths(run_id)
        self.tail = protocol.EventTail(self.paths.events)
        self._since = since  # events.jsonl's size when submitted: what is before is an earlier worker's
        self._finished_seen = False
        self._last_poll = float("-inf")
        self._last_event = clock()
        self._unreachable_since: float | None = None
        self._final: JobStatus | None = None
        self._pending: concurrent.futures.Future[str] | None = None
        self._asked_at = float("-inf")
        self._alive = JobStatus(alive=True)  # what the scheduler last said of the live job
        self._reason: str | None = None  # squeue's reason for a pending job (%r), from the last answer
        self._node: str | None = None  # squeue's node list (%N) of a job that has one
        self._finished_status: str | None = None  # the worker's own `finished` status, once it wrote one
        self.polls = 0

    def events(self) -> list[Event]:
        earlier: list[Event] = []
        if self.tail.offset < self._since:  # an earlier worker's events (a resume's): its `finished` is not ours
            if supervisor.events_size(self.paths.events) < self._since:  # the file was replaced: all of it is new
                self._since = 0
            else:
                earlier = self.tail.read_new(self._since - self.tail.offset)
        evs = self.tail.read_new()
        if evs or earlier:
            self._last_event = self.clock()
        for e in evs:
            if isinstance(e, Finished):
                self._finished_seen = True
                self._finished_status = e.status
            elif isinstance(e, Started):  # a requeued job's worker began again
                self._finished_seen = False
                self._finished_status = None
        return earlier + evs

    def _state(self) -> str:
        """The state submitit reports (sacct); the local stand-in and tests use it."""
        self.polls += 1
        try:
            state = self.job.state
            return str(state).split()[0].upper() if state else "UNKNOWN"
        except Exception as e:  # noqa: BLE001 - sacct/squeue hiccup: ask again next time
            log.warning("%s: job state of %s unavailable: %s", self.run_id, self.job.job_id, e)
            return "UNKNOWN"

    def _query(self) -> str:
        """The job's state from the scheduler itself: squeue, then sacct for a job the controller
        has forgotten (where there is accounting; submitit asks only sacct, which many clusters
        lack); :data:`GONE` when neither knows it, :data:`UNREACHABLE` when squeue gets no answer."""
        self.polls += 1
        jid = str(self.job.job_id)
        out = _run(["squeue", "--noheader", "--states=all", f"--jobs={jid}", "--format=%T|%r|%N"])
        if out is None:
            return UNREACHABLE
        if out.returncode == 0 and out.stdout.strip():
            state, _, rest = out.stdout.strip().splitlines()[0].partition("|")
            reason, _, node = rest.partition("|")
            self._reason = None if reason.strip() in ("", "None") else reason.strip()
            self._node = node.strip() or None
            return state.strip().upper()
        if out.returncode != 0 and "invalid job id" not in out.stderr.lower():
            log.warning("%s: squeue for job %s: %s", self.run_id, jid, out.stderr.strip())
            return UNREACHABLE
        acct = _run(["sacct", "--noheader", "--allocations", "--parsable2", f"--jobs={jid}", "--format=State"])
        if acct is not None and acct.returncode == 0 and acct.stdout.strip():
            return acct.stdout.split()[0].upper()
        return GONE

    def _outcome(self) -> tuple[str, Any] | None:
        """submitit's result file of the job: ``("success", rc)`` or ``("error", traceback)``."""
        path = Path(self.job.paths.result_pickle)
        if not path.exists():
            return None
        try:
            from submitit.core.utils import pickle_load

            out = pickle_load(path)
            return (str(out[0]), out[1])
        except Exception as e:  # noqa: BLE001 - a torn write: the state decides
            log.warning("%s: unreadable %s: %s", self.run_id, path, e)
            return None

    def _end(self, *, rc: int | None, lost: bool = False, cause: str | None = None) -> JobStatus:
        self._final = JobStatus(alive=False, returncode=rc, lost=lost, cause=cause)
        return self._final

    def _note(self, line: str) -> None:
        with open(self.paths.log, "a", encoding="utf-8") as f:
            f.write(line.rstrip() + "\n")

    def status(self) -> JobStatus:
        if self._final is not None:
            return self._final
        if self._pending is not None:
            return self._answered()
        now = self.clock()
        interval = self.ex.settings.poll_interval
        if self._finished_seen:
            interval = min(1.0, interval)
        if now - self._last_poll < interval:
            return self._alive
        self._last_poll = now
        if self.ex.settings.cluster != "slurm":
            return self._local_status()
        # squeue in a thread, so a controller that does not answer never stalls the runner's loop
        self._asked_at = now
        self._pending = _QUERIES.submit(self._query)
        return self._answered()

    def _answered(self) -> JobStatus:
        assert self._pending is not None
        concurrent.futures.wait([self._pending], timeout=QUERY_WAIT)
        if not self._pending.done():
            if self._finished_status == RunStatus.COMPLETED and self.clock() - self._asked_at >= COMPLETED_WAIT:
                return self._end(rc=0)  # the worker completed; a controller that is down cannot change that
            waited = self.clock() - self._asked_at
            if waited >= SLOW_ANSWER and self._alive.sched_state != SchedState.UNREACHABLE:
                # squeue answers in a second when the controller is up: say so now, not when it gives up
                self._alive = replace(
                    self._alive, sched_state=SchedState.UNREACHABLE, reason=None, since=time.time() - waited
                )
            return self._alive
        state = self._pending.result()
        self._pending = None
        now = self.clock()
        if state == UNREACHABLE:
            if self._unreachable_since is None:
                self._unreachable_since = self._asked_at
                log.warning("%s: the Slurm controller does not answer about job %s", self.run_id, self.job.job_id)
                if self._alive.sched_state != SchedState.UNREACHABLE:
                    self._alive = replace(
                        self._alive,
                        sched_state=SchedState.UNREACHABLE,
                        reason=None,
                        since=time.time() - (now - self._asked_at),
                    )
            if self._finished_status == RunStatus.COMPLETED:  # nothing requeues a completed run: done, say so now
                return self._end(rc=0)
            quiet = now - max(self._unreachable_since, self._last_event)
            if quiet < self.ex.settings.scheduler_grace:
                return self._alive
            if self._finished_seen:  # the worker said how it ended; the scheduler cannot add to that
                return self._end(rc=0)
            self._note(
                f"slurm job {self.job.job_id}: no answer from the scheduler and no event from the worker "
                f"for {quiet:.0f} s (scheduler_grace = {self.ex.settings.scheduler_grace:g}): interrupted"
            )
            return self._end(rc=None, lost=True, cause=f"cluster unreachable for {quiet:.0f} s")
        self._unreachable_since = None
        if state in ALIVE_STATES:
            if state in PENDING_STATES:
                reason = self._reason or ("requeued" if state.startswith("REQUEUE") else None)
                self._alive = JobStatus(alive=True, sched_state=SchedState.PENDING, reason=reason)
            else:
                self._alive = JobStatus(alive=True, node=self._node)
            return self._alive
        outcome = self._outcome()
        if state == GONE:
            if outcome is None and not self._finished_seen:
                self._note(f"slurm job {self.job.job_id}: gone from the scheduler without a result: interrupted")
                return self._end(rc=None, lost=True, cause=f"Slurm job {self.job.job_id} is gone from the scheduler")
            state = "COMPLETED" if outcome is None or outcome[0] == "success" else "FAILED"
        if state in LOST_STATES and not self._finished_seen:
            return self._end(rc=None, lost=True, cause=f"Slurm job {self.job.job_id} ended {state}")
        rc = 0
        error = ""
        if outcome is not None and outcome[0] == "error":
            rc = 1
            error = str(outcome[1]).strip().splitlines()[-1] if str(outcome[1]).strip() else "error"
            self._note(f"slurm job {self.job.job_id} {state}: {error}")
        if state == "TIMEOUT" or _time_limit_error(error):
            return self._time_limit_reached(spent=TIMED_OUT in error)
        if state in ("FAILED", "OUT_OF_MEMORY", "CANCELLED", "PREEMPTED", "NODE_FAIL") and rc == 0:
            rc = 1
        return self._end(rc=rc)

    def _time_limit_reached(self, *, spent: bool = False) -> JobStatus:
        """The job ended at its time limit. Mostly it has applied :class:`TimeLimit` itself and ends the run
        (:class:`TimeLimitReached`); one that Slurm ended at the limit (``TIMEOUT``: the warning came before
        the job could take it, or never) is requeued here while the rule allows. ``spent``: submitit's own
        count ended a job from before the rule."""
        limit = TimeLimit.load(self.paths.dir) or self.ex.time_limit(self.run_id)
        if spent:
            limit = replace(limit, requeues=max(limit.requeues, limit.max_requeues))
        done = runstate.load(self.paths.events).epochs_done
        reason = limit.reason(done, self.run_id)
        if reason is None:
            limit = limit.requeued(done)
            self._note(
                f"=== slurm job {self.job.job_id} ended at its time limit: requeue {limit.requeues} of "
                f"{limit.max_requeues}, resuming after epoch {done}"
            )
            try:
                self.job = self.ex.sbatch(self.run_id, resume=True, limit=limit)
            except WorkspaceError as e:
                reason = f"Slurm time limit of {limit.minutes} min reached, after epoch {done}; the requeue failed: {e}"
            else:
                self._finished_seen = False
                self._last_event = self._last_poll = self.clock()
                return JobStatus(alive=True)
        with open(self.paths.events, "a", encoding="utf-8") as f:
            f.write(protocol.encode(Finished(time.time(), status=RunStatus.FAILED, reason=reason, epochs_done=done)))
        return self._end(rc=1)

    def _local_status(self) -> JobStatus:
        """submitit's local stand-in (no scheduler): its own job state and result."""
        raw = self.job.get_info().get("jobState", "UNKNOWN") if self.ex.settings.cluster == "local" else None
        state = str(raw).split()[0].upper() if raw else self._state()
        if raw is not None:
            self.polls += 1
            if raw == "NO PROCESS AND NO RESULT" and supervisor.is_alive(_int(self.job.job_id), None):
                state = "RUNNING"  # re-attached local job: its process is not our child
            else:
                state = {"FINISHED": "COMPLETED"}.get(state, state)
        if state in ALIVE_STATES:
            return JobStatus(alive=True)
        lost = state in LOST_STATES and not self._finished_seen
        rc: int | None = None
        if not lost:
            rc = 0
            error = ""
            with contextlib.suppress(Exception):
                exc = self.job.exception()
                if exc is not None:
                    rc = 1
                    # submitit's message: the traceback between two rules, then where the logs are
                    trace = str(exc).split("-" * 22)
                    error = (trace[1] if len(trace) > 2 else trace[0]).strip().splitlines()[-1]
                    self._note(f"slurm job {self.job.job_id} {state}: {error}")
            if state == "TIMEOUT" or _time_limit_error(error):
                return self._time_limit_reached(spent=TIMED_OUT in error)
            if state in ("FAILED", "OUT_OF_MEMORY", "CANCELLED") and rc == 0:
                rc = 1
        return self._end(rc=rc, lost=lost)

    def cancel(self, *, force: bool = False) -> None:
        if self.ex.settings.cluster != "slurm":  # the test stand-in: signal the worker process itself
            pid = runstate.load(self.paths.events).pid
            if pid and supervisor.is_alive(pid, None):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
            return
        jid = str(self.job.job_id)
        # a job still waiting in the queue has no worker to save anything: plain scancel (scancel --signal on a
        # pending job retries "Job can not be altered now" for as long as it is allowed to)
        if not force and self._alive.sched_state != SchedState.PENDING:
            # the job's steps only (the worker saves and ends `cancelled`); a pending job has none
            out = _run(["scancel", "--signal=TERM", jid], timeout=10.0)  # it blocks the runner's loop meanwhile
            if out is not None and out.returncode == 0 and not out.stderr.strip():
                return
        out = _run(["scancel", jid])
        if out is None or out.returncode != 0:
            log.warning("%s: scancel %s failed: %s", self.run_id, jid, out.stderr.strip() if out else "no answer")


def _own_job_id() -> str:
    """In a job: its id as squeue and scancel take it (``ARRAYJOBID_TASK`` for a task of a job array)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "?")


def _refusal(e: Exception) -> str:
    """sbatch's own line of why it refused a submission."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else repr(e))


def _cluster_job(job_id: str, event: str) -> ClusterJob:
    return ClusterJob("slurm", job_id, time.time(), event, accounting=f"sacct -j {job_id}")


def _time_limit_error(error: str) -> bool:
    return TimeLimitReached.__name__ in error or TIMED_OUT in error


def _run(argv: list[str], timeout: float = QUERY_TIMEOUT) -> subprocess.CompletedProcess[str] | None:
    """A Slurm client command; ``None`` when it cannot run or does not answer in time."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("%s: %s", " ".join(argv), e)
        return None


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


class SlurmExecutor(Executor):
    """Runs as Slurm jobs through submitit, as ``[slurm]`` of ``<ws>/settings.toml`` says
    (:class:`tltui.core.settings.SlurmSettings`; a problem with it fails the run that needed it)."""

    name = "slurm"
    places_devices = True  # Slurm places each job on a node with its GPUs
    settings_model = SlurmSettings
    settings: SlurmSettings

    def _worker_command(self) -> list[str]:
        if os.environ.get(supervisor.WORKER_CMD_ENV):
            return supervisor.worker_command()
        return [self.settings.python or sys.executable, "-m", "tltui.worker"]

    def _folder(self, run_id: str) -> Path:
        return self.ws.run_paths(run_id).dir / "slurm"

    def parameters(self, run_id: str) -> dict[str, Any]:
        """submitit parameters for a run (generic names; ``slurm_*`` ones only reach Slurm): ``[slurm]`` of
        settings.toml, with what the run's preset sets in ``[cluster.slurm]`` instead."""
        want = self.ws.requested_gpus(run_id)
        t = self.settings
        own = cluster_config.for_run(self.ws.run_paths(run_id).preset).slurm
        mine = {k: v for k, v in own.model_dump().items() if v is not None}
        params: dict[str, Any] = {
            "name": f"tltui-{run_id}",
            "timeout_min": mine.get("time_limit", t.time_limit),
            "gpus_per_node": t.gpus if want is None else want,
            "cpus_per_task": mine.get("cpus_per_task", t.cpus_per_task),
            "nodes": 1,
            "tasks_per_node": 1,
        }
        if t.cluster == "slurm":
            params["slurm_signal_delay_s"] = t.signal_delay
        mem_gb = mine.get("mem_gb", t.mem_gb)
        if mem_gb is not None:
            params["mem_gb"] = mem_gb
        for key in ("partition", "account", "qos", "constraint"):
            value = mine.get(key, getattr(t, key))
            if value:
                params[f"slurm_{key}"] = value
        if own.gres:  # the GPUs are in it: no --gpus-per-node beside it
            params["slurm_gres"] = own.gres
            params.pop("gpus_per_node")
        # --requeue: a job preempted or on a failed node starts again (and resumes) without the site's JobRequeue=1;
        # `additional = { requeue = false }` opts out
        extra = {"requeue": True, **t.additional}
        params["slurm_additional_parameters"] = {k: v for k, v in extra.items() if v is not False}
        if t.setup:
            params["slurm_setup"] = list(t.setup)
        return params

    def cluster_gpus(self) -> int | None:
        """The most GPUs one node has, from ``sinfo``'s generic resources (``gpu:a100:4(S:0-1)``); ``None`` when
        sinfo does not answer (or this is submitit's local stand-in)."""
        if self.settings.cluster != "slurm":
            return None
        out = _run(["sinfo", "--noheader", "--format=%G"], timeout=5.0)  # `queue add` waits for it
        if out is None or out.returncode != 0:
            return None
        most = 0
        for line in out.stdout.split():
            for gres in line.split(","):
                fields = gres.split("(")[0].split(":")
                if fields[0] == "gpu" and len(fields) > 1 and fields[-1].isdigit():
                    most = max(most, int(fields[-1]))
        return most

    def capacity_warnings(self, gpus: int | None) -> list[str]:
        n = self.settings.gpus if gpus is None else gpus
        if not n:
            return []
        most = self.cluster_gpus()
        if most is None or most >= n:
            return []
        has = f"no node has {n} GPUs (the most: {most})" if most else "no node has a GPU (sinfo: no gpu gres)"
        return [f"train.gpus = {n}, but on this Slurm cluster {has}; the job would wait in Slurm's queue (`pending`)"]

    def _executor(self, run_id: str) -> Any:
        submitit = _submitit()
        ex = submitit.AutoExecutor(
            folder=self._folder(run_id),
            cluster=self.settings.cluster,
            slurm_max_num_timeout=SUBMITIT_TIMEOUTS,
            local_max_num_timeout=SUBMITIT_TIMEOUTS,
        )
        ex.update_parameters(**self.parameters(run_id))
        return ex

    def _cancel_previous(self, run_id: str) -> None:
        """A run's earlier job that Slurm still runs (requeued after the node came back, say, while
        the run was given up as interrupted): cancelled before a new one, so one worker writes the run."""
        try:
            info = json.loads((self.ws.run_paths(run_id).dir / JOB_FILE).read_text())
        except (OSError, ValueError):
            return
        if info.get("cluster") != "slurm" or not info.get("job_id"):
            return
        jid = str(info["job_id"])

        def alive() -> bool:
            out = _run(["squeue", "--noheader", "--states=all", f"--jobs={jid}", "--format=%T %j"])
            if out is None or out.returncode != 0 or not out.stdout.strip():
                return False
            state, _, name = out.stdout.strip().partition(" ")
            ours = info.get("name", f"tltui-{run_id}")  # an array task has its array's name
            return name.strip() == ours and state.upper() in ALIVE_STATES  # ours, not a reused id

        if not alive():
            return
        log.info("%s: its earlier slurm job %s still runs: scancel", run_id, jid)
        with open(self.ws.run_paths(run_id).log, "a", encoding="utf-8") as f:
            f.write(f"=== earlier slurm job {jid} still in the queue: cancelled before submitting again\n")
        _run(["scancel", jid])
        deadline = time.monotonic() + 30
        while alive() and time.monotonic() < deadline:
            time.sleep(1.0)

    def submit(self, run_id: str, *, gpus: Sequence[int], resume: bool) -> Job:
        if self.settings.cluster == "slurm":
            self._cancel_previous(run_id)
        since = supervisor.events_size(self.ws.run_paths(run_id).events)
        job = self.sbatch(run_id, resume=resume, limit=self.time_limit(run_id))
        return SlurmJob(self, run_id, job, since=since)

    def time_limit(self, run_id: str) -> TimeLimit:
        """A new submission's :class:`TimeLimit`: the run's own ``time_limit`` (its preset's, else ``[slurm]``'s)."""
        return TimeLimit(self.parameters(run_id)["timeout_min"], self.settings.max_requeues)

    def _task(self, run_id: str, *, resume: bool, limit: TimeLimit) -> WorkerTask:
        paths = self.ws.run_paths(run_id)
        limit.save(paths.dir)
        return WorkerTask(
            self._worker_command(),
            str(paths.dir),
            resume,
            stop_wait=max(5.0, self.settings.signal_delay / 2),
            limit=limit,
        )

    def sbatch(self, run_id: str, *, resume: bool, limit: TimeLimit) -> Any:
        """One submitit job of the run; its id, and which time-limit requeue it is, go to the run folder."""
        task = self._task(run_id, resume=resume, limit=limit)
        try:
            job = self._executor(run_id).submit(task)
        except WorkspaceError:
            raise
        except Exception as e:  # sbatch's refusal, e.g. more CPUs than a node has
            raise WorkspaceError(f"slurm submission failed: {_refusal(e)}") from e
        self._submitted(run_id, job, task, self._folder(run_id), f"tltui-{run_id}", limit)
        return job

    def array_key(self, rec: RunRecord) -> str | None:
        """The runs of one sweep whose ``[cluster.slurm]`` asks for ``array`` go as one job array when Slurm would
        get the same options for each (the key holds them)."""
        own = cluster_config.for_run(self.ws.run_paths(rec.id).preset).slurm
        if rec.sweep is None or not own.wants_array():
            return None
        params = self.parameters(rec.id)
        params.pop("name", None)
        return json.dumps([rec.sweep, own.array_limit, params], sort_keys=True, default=str)

    def submit_array(self, run_ids: Sequence[str]) -> list[Job]:
        """New runs as one job array (``sbatch --array=0-N%K``, K = ``array_limit``): task i runs ``run_ids[i]``
        (``SLURM_ARRAY_TASK_ID``); each run knows its task as ``ARRAYJOBID_i``, which squeue and scancel take
        alone. A time-limit requeue or a resume later is a job of its own."""
        first = run_ids[0]
        own = cluster_config.for_run(self.ws.run_paths(first).preset).slurm
        folder = self.ws.root / "slurm-arrays" / "%j"  # one task's submitit files each (%j: ARRAYJOBID_i)
        name = f"tltui-array-{first}"
        submitit = _submitit()
        ex = submitit.AutoExecutor(
            folder=folder,
            cluster=self.settings.cluster,
            slurm_max_num_timeout=SUBMITIT_TIMEOUTS,
            local_max_num_timeout=SUBMITIT_TIMEOUTS,
        )
        params = {**self.parameters(first), "name": name}
        if self.settings.cluster == "slurm":
            params["slurm_array_parallelism"] = own.array_limit or len(run_ids)
        ex.update_parameters(**params)
        limits = {rid: self.time_limit(rid) for rid in run_ids}
        tasks = [self._task(rid, resume=False, limit=limits[rid]) for rid in run_ids]
        try:
            with ex.batch():
                jobs = [ex.submit(task) for task in tasks]
        except Exception as e:  # sbatch's refusal
            raise WorkspaceError(f"slurm array submission failed: {_refusal(e)}") from e
        for rid, job, task in zip(run_ids, jobs, tasks, strict=True):
            self._submitted(rid, job, task, folder, name, limits[rid])
        return [SlurmJob(self, rid, job) for rid, job in zip(run_ids, jobs, strict=True)]

    def _submitted(self, run_id: str, job: Any, task: WorkerTask, folder: Path, name: str, limit: TimeLimit) -> None:
        """A job of the run is in the queue: its id to the run folder, its log and its job history."""
        paths = self.ws.run_paths(run_id)
        write_json(
            paths.dir / JOB_FILE,
            {
                "job_id": str(job.job_id),
                "cluster": self.settings.cluster,
                "folder": str(folder),
                "name": name,
                "submitted": time.time(),
            },
        )
        with open(paths.log, "a", encoding="utf-8") as f:
            f.write(
                f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} slurm job {job.job_id} ({self.settings.cluster}): "
                f"{' '.join(task.argv())}\n"
            )
        event = "requeued" if limit.requeues else "resumed" if task.resume else "submitted"
        cluster_jobs.record(paths.dir, _cluster_job(str(job.job_id), event))

    def adopt(self, rec: RunRecord) -> Job | None:
        try:
            info = json.loads((self.ws.run_paths(rec.id).dir / JOB_FILE).read_text())
        except (OSError, ValueError):
            return None
        submitit = _submitit()
        job: Any  # submitit's LocalJob or SlurmJob
        if info.get("cluster") in ("local", "debug"):
            from submitit.local.local import LocalJob

            if not supervisor.is_alive(_int(info.get("job_id")), None):
                return None
            job = LocalJob(info["folder"], info["job_id"])
        else:
            job = submitit.SlurmJob(info["folder"], info["job_id"])
        return SlurmJob(self, rec.id, job)

    def logs(self, run_id: str, lines: int = supervisor.LOG_TAIL_LINES) -> str:
        return super().logs(run_id, lines)
