"""A one-node Slurm cluster in a folder, for the tests that need a real scheduler.

It installs nothing (``.ci/run`` installs Debian's ``slurm-wlm`` and ``munge``): it writes a
munge key and a ``slurm.conf`` into ``root``, starts ``munged``, ``slurmctld`` and ``slurmd``
in the foreground as its own children (their own socket, state, spool, log and pid paths
under ``root``, so nothing in ``/etc`` or ``/var`` is touched), waits for ``sinfo`` to show
the node idle, and stops them by pid. Clients find it through ``SLURM_CONF``.

By hand (as root)::

    .venv/bin/python -m tests.slurm_cluster /tmp/slurm   # starts it, prints `export SLURM_CONF=...`
    # Ctrl-C stops it
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")


def missing() -> str | None:
    """Why no cluster can start here (one line), or ``None``."""
    absent = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if absent:
        return f"Slurm is not installed ({', '.join(absent)} missing): apt-get install -y slurm-wlm munge"
    if os.geteuid() != 0:
        return "a one-node Slurm cluster needs root (slurmd launches the jobs)"
    return None


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 1024


class ClusterError(RuntimeError):
    pass


class SlurmCluster:
    def __init__(self, root: Path, *, cpus: int | None = None) -> None:
        self.root = Path(root)
        self.cpus = cpus or os.cpu_count() or 1
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports = _free_ports(2)

    # ------------------------------------------------------------ configuration

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        r = self.root
        for d in ("munge", "state", "spool", "log", "run"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o700)
        key = r / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        # the node's memory as Slurm measures it (a bit under MemTotal); RealMemory above it drains the node
        mem = max(256, int(_mem_mb() * 0.9))
        self.conf.write_text(
            f"ClusterName=tltui\n"
            f"SlurmctldHost=localhost\n"
            f"SlurmUser=root\nSlurmdUser=root\n"
            f"AuthType=auth/munge\nCredType=cred/munge\n"
            f"AuthInfo=socket={self.munge_socket},cred_expire=5\n"  # a requeued job waits this long (default 120 s)
            f"ProctrackType=proctrack/linuxproc\n"
            f"TaskPlugin=task/none\n"
            f"JobAcctGatherType=jobacct_gather/none\n"
            f"AccountingStorageType=accounting_storage/none\n"
            f"SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n"
            f"SchedulerType=sched/backfill\n"
            f"StateSaveLocation={r / 'state'}\n"
            f"SlurmdSpoolDir={r / 'spool'}\n"
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}\n"
            f"SlurmdPidFile={r / 'run' / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}\n"
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}\n"
            f"SlurmctldPort={self.ports[0]}\nSlurmdPort={self.ports[1]}\n"
            f"MpiDefault=none\n"
            f"ReturnToService=2\n"
            f"MinJobAge=300\n"
            f"KillWait=10\n"
            f"SchedulerParameters=sched_interval=1\n"
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={mem} State=UNKNOWN\n"
            f"PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP\n"
        )

    # ------------------------------------------------------------ daemons

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 (kept by the child)
        self.procs[name] = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        log.close()

    def start(self, *, timeout: float = 60.0, idle: bool = True) -> None:
        """munged, slurmctld, slurmd; back once ``sinfo`` shows the node idle (else :class:`ClusterError`).
        ``idle=False`` (a restart): once it responds, though the controller may still count a job that
        died with the node as running (it finds out in a while)."""
        if not self.conf.exists():
            self.write_config()
        r = self.root
        if "munged" not in self.procs:
            self._spawn(
                "munged",
                [
                    _which("munged"),
                    "--foreground",
                    "--force",
                    f"--socket={self.munge_socket}",
                    f"--key-file={r / 'munge' / 'munge.key'}",
                    f"--pid-file={r / 'run' / 'munged.pid'}",
                    f"--log-file={r / 'log' / 'munged.log'}",
                    f"--seed-file={r / 'munge' / 'munged.seed'}",
                ],
            )
            self._wait(lambda: self.munge_socket.exists(), "munged's socket", 15.0, "munged")
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.conf)])
        self._wait(
            lambda: self._run(["scontrol", "ping"]).returncode == 0 and "UP" in self._run(["scontrol", "ping"]).stdout,
            "slurmctld to answer",
            timeout,
            "slurmctld",
        )
        self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf)])
        if idle:
            self.wait_idle(timeout)
        else:
            self._wait(
                lambda: self.node_state() in ("idle", "mixed", "allocated"), "the node to respond", timeout, "slurmd"
            )

    def node_state(self) -> str:
        out = self._run(["sinfo", "-h", "-N", "-o", "%T"])
        return out.stdout.strip() if out.returncode == 0 else f"sinfo failed: {out.stderr.strip()}"

    def wait_idle(self, timeout: float = 60.0) -> None:
        def idle() -> bool:
            state = self.node_state()
            if state.rstrip("*") in ("drained", "draining", "down"):
                self._run(["scontrol", "update", "nodename=localhost", "state=resume"])
            return state == "idle"

        self._wait(idle, "the node to be idle", timeout, "slurmd")

    def _wait(self, pred, what: str, timeout: float, daemon: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            p = self.procs.get(daemon)
            if p is not None and p.poll() is not None:
                raise ClusterError(
                    f"{daemon} exited with code {p.returncode} waiting for {what}: {self.log_tail(daemon)}"
                )
            time.sleep(0.2)
        raise ClusterError(
            f"timed out after {timeout:.0f} s waiting for {what} ({self.node_state()}): {self.log_tail(daemon)}"
        )

    def log_tail(self, daemon: str, lines: int = 5) -> str:
        text = ""
        for f in (self.root / "log" / f"{daemon}.log", self.root / "log" / f"{daemon}.out"):
            with contextlib.suppress(OSError):
                text += f.read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:])

    def _run(self, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(argv, 124, "", f"timed out: {e}")

    def run(self, *argv: str) -> str:
        """A client command against this cluster; its stdout (a failure is :class:`ClusterError`)."""
        out = self._run(list(argv))
        if out.returncode != 0:
            raise ClusterError(f"{' '.join(argv)}: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout

    def stop_daemons(self, names: tuple[str, ...] = ("slurmd", "slurmctld")) -> None:
        """SIGTERM (then SIGKILL) to the named daemons, by pid. Jobs' own processes are left alone."""
        for name in names:
            p = self.procs.pop(name, None)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def job_processes(self) -> list[int]:
        """The pids of this cluster's job processes: its ``slurmstepd`` and what they run (their
        environment names this cluster's ``SLURM_CONF`` and a ``SLURM_JOB_ID``). Not its daemons,
        nor the clients that merely point at it."""
        daemons = {p.pid for p in self.procs.values()}
        mark = f"SLURM_CONF={self.conf}".encode()
        pids = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) in daemons or int(d.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                env = (d / "environ").read_bytes().split(b"\0")
                if mark not in env:
                    continue
                stepd = Path(os.readlink(d / "exe")).name.startswith("slurmstepd")  # Debian: slurmstepd-wlm
                if stepd or any(v.startswith(b"SLURM_JOB_ID=") for v in env):
                    pids.append(int(d.name))
        return pids

    def kill_jobs(self, timeout: float = 30.0) -> None:
        """SIGKILL to every job process of this cluster (what a node crash does to them), until none is
        left: a dying step may still fork, however long a loaded machine takes to get there."""
        deadline = time.monotonic() + timeout
        while pids := [p for p in self.job_processes() if _alive(p)]:
            if time.monotonic() > deadline:
                raise ClusterError(f"job processes {pids} still alive {timeout:.0f} s after SIGKILL")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)

    def stop(self) -> None:
        """Cancel the jobs, stop the daemons, munged last; nothing of the cluster keeps running."""
        if "slurmctld" in self.procs:
            self._run(["scancel", "--full", "--user=root"], timeout=10)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self._run(["squeue", "-h"], timeout=10).stdout.strip():
                time.sleep(0.3)
        self.stop_daemons(("slurmd", "slurmctld"))
        self.kill_jobs()
        self.stop_daemons(("munged",))


def _free_ports(n: int) -> list[int]:
    """Ports nobody listens on now (so a cluster started by hand does not collide with the tests')."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.slurm_cluster DIR", file=sys.stderr)
        return 2
    why = missing()
    if why:
        print(why, file=sys.stderr)
        return 1
    cluster = SlurmCluster(Path(argv[0]).resolve())
    try:
        cluster.start()
        print(
            f"node {socket.gethostname()} (localhost) idle; in another shell:\n  export SLURM_CONF={cluster.conf}\n"
            f"Ctrl-C stops the cluster",
            flush=True,
        )
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except ClusterError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
