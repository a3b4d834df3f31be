"""The Ray job entrypoint (tltui.runner.executors.ray_relay) on its own, with the fake worker: no cluster needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tltui.core import protocol
from tltui.core.protocol import EpochEnd, Finished
from tltui.runner.executors import ray_relay as event_relay

FAKE = Path(__file__).resolve().parents[2] / "fake_worker.py"


def make_run(root: Path, epochs: int = 2, **fake: object) -> Path:
    d = root / "runs" / "r0001"
    d.mkdir(parents=True)
    (d / "preset.toml").write_text(f'name = "q"\n[train]\nepochs = {epochs}\n')
    if fake:
        (d / "fake.json").write_text(json.dumps(fake))
    return d


def relay(
    run_dir: Path, token: str, shared: str = "auto", env: dict[str, str] | None = None, resume: bool = False
) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "tltui.runner.executors.ray_relay",
        "--run-dir",
        str(run_dir),
        "--token",
        token,
        "--shared",
        shared,
        "--",
        sys.executable,
        str(FAKE),
        "train",
        "{run_dir}",
        "--events-fd",
        "0",
    ]
    if resume:
        cmd.append("--resume")
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TLTUI_FAKE_EPOCH_SECONDS": "0.02", **(env or {})},
    )


def split(stdout: str) -> tuple[dict[str, str], list[protocol.Event]]:
    mode: dict[str, str] = {}
    evs: list[protocol.Event] = []
    for line in stdout.splitlines():
        kind, payload = event_relay.parse_line(line)
        if kind == "mode":
            mode = json.loads(payload)
        elif kind == "event":
            ev = protocol.decode(payload)
            assert ev is not None, payload
            evs.append(ev)
    return mode, evs


def test_shared_folder_worker_writes_it_and_echoes_events(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    (run / event_relay.TOKEN_FILE).write_text("tok1")
    out = relay(run, "tok1")
    assert out.returncode == 0, out.stderr
    mode, evs = split(out.stdout)
    assert mode["mode"] == "shared" and mode["dir"] == str(run)
    assert [e.epoch for e in evs if isinstance(e, EpochEnd)] == [1, 2]
    assert isinstance(evs[-1], Finished) and evs[-1].status == "completed"
    # the echoed lines are exactly the worker's own record
    assert [protocol.encode(e) for e in evs] == [protocol.encode(e) for e in protocol.read_events(run / "events.jsonl")]


def test_relay_mode_builds_a_scratch_folder_from_shipped_files(tmp_path: Path) -> None:
    run = make_run(tmp_path, epochs=3)
    (run / event_relay.TOKEN_FILE).write_text("other-client")  # a different client's token: not our folder
    packed = event_relay.pack_files(run, with_events=False)
    env = {event_relay.FILES_ENV: packed, event_relay.SCRATCH_ENV: str(tmp_path / "node")}
    out = relay(run, "tok2", env=env)
    assert out.returncode == 0, out.stderr
    mode, evs = split(out.stdout)
    assert mode["mode"] == "relay" and Path(mode["dir"]).parent == tmp_path / "node"
    assert [e.epoch for e in evs if isinstance(e, EpochEnd)] == [1, 2, 3]
    assert not (run / "events.jsonl").exists()  # the client's folder is untouched
    # a resume ships the events (without batches) so the worker continues after the last epoch
    with open(run / "events.jsonl", "w") as f:
        for e in evs:
            if not (isinstance(e, EpochEnd) and e.epoch == 3) and not isinstance(e, Finished):
                f.write(protocol.encode(e))
    packed = event_relay.pack_files(run, with_events=True)
    shipped = json.loads(__import__("base64").b64decode(packed))
    assert '"batch"' not in shipped["events.jsonl"] and "preset.toml" in shipped
    out = relay(run, "tok3", env={**env, event_relay.FILES_ENV: packed}, resume=True)
    _, evs2 = split(out.stdout)
    assert [e.epoch for e in evs2 if isinstance(e, EpochEnd)] == [3]


def test_forced_shared_without_the_folder_fails_clearly(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    out = relay(run, "nope", shared="yes")
    assert out.returncode != 0 and "not shared with this node" in out.stderr


def test_worker_exit_code_passes_through(tmp_path: Path) -> None:
    run = make_run(tmp_path, epochs=3, crash_at=2, exit_code=7)
    (run / event_relay.TOKEN_FILE).write_text("t")
    out = relay(run, "t")
    assert out.returncode == 7
    assert "fake crash in epoch 2" in out.stdout
