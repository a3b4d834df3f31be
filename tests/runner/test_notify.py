"""Notifications (``[notify]``): a local command and a loopback webhook get a failed run, a sweep's end and
the emptied queue from the real runner; a failing hook is one log line and never stops the runner."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests import helpers
from tests.helpers import SWEEP2, finished, script, write_preset
from tltui.client import queue_ops
from tltui.core import notifications
from tltui.core.notifications import Notification
from tltui.core.settings import NotifySettings
from tltui.core.workspace import Workspace
from tltui.runner import notify

HOOK = """import json, sys
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"text": sys.argv[2], "stdin": json.load(sys.stdin)}) + "\\n")
"""
NOTE = Notification("run_failed", "tltui@box: r0001 demo failed at epoch 1/2: boom", {"runs": ["r0001"]}, 1.0)


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.got.append((self.path, self.headers["Content-Type"], json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(self.server.code)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    srv = HTTPServer(("127.0.0.1", 0), _Hook)
    srv.got = []  # type: ignore[attr-defined]
    srv.code = 204  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv: HTTPServer, path: str = "/hooks/SECRET") -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def _hook(tmp_path: Path) -> tuple[list[str], Path]:
    (tmp_path / "hook.py").write_text(HOOK)
    out = tmp_path / "calls.jsonl"
    return [sys.executable, str(tmp_path / "hook.py"), str(out)], out


def _calls(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


# ---------------------------------------------------------------------------- sending


def test_the_command_gets_the_message_as_its_last_argument_and_the_digest_on_stdin(tmp_path: Path) -> None:
    command, out = _hook(tmp_path)
    assert notify.run_command(command, NOTE, timeout=20)
    [call] = _calls(out)
    assert call["text"] == NOTE.text
    assert call["stdin"] == {"event": "run_failed", "text": NOTE.text, "digest": {"runs": ["r0001"]}}


def test_the_webhook_gets_a_json_post(server: HTTPServer) -> None:
    assert notify.post(_url(server), NOTE, timeout=10)
    [(path, ctype, body)] = server.got  # type: ignore[attr-defined]
    assert (path, ctype) == ("/hooks/SECRET", "application/json")
    assert body == {"text": NOTE.text, "event": "run_failed", "digest": {"runs": ["r0001"]}}


def test_a_failing_hook_is_one_log_line_that_hides_the_webhook_path(
    tmp_path: Path, server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tltui.runner")
    server.code = 500  # type: ignore[attr-defined]
    assert not notify.post(_url(server), NOTE, timeout=10)
    assert not notify.run_command([str(tmp_path / "no-such-hook")], NOTE, timeout=10)
    assert not notify.run_command([sys.executable, "-c", "import sys; sys.exit('bad token')"], NOTE, timeout=20)
    assert not notify.run_command([sys.executable, "-c", "import time; time.sleep(30)"], NOTE, timeout=0.3)
    closed = HTTPServer(("127.0.0.1", 0), _Hook)
    port = closed.server_address[1]
    closed.server_close()
    assert not notify.post(f"http://127.0.0.1:{port}/x", NOTE, timeout=5)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == f"notify: webhook 127.0.0.1:{server.server_address[1]} answered 500 Internal Server Error"
    assert lines[1].startswith("notify: cannot run ") and "no-such-hook" in lines[1]
    assert lines[2].endswith("exited with code 1: bad token")
    assert lines[3].endswith("took more than 0.3 s: stopped")
    assert lines[4].startswith(f"notify: webhook 127.0.0.1:{port} failed: ")
    assert len(lines) == 5 and not any("SECRET" in line for line in lines)


def test_emit_sends_in_the_background_and_keeps_it_for_open_apps(
    ws: Workspace, tmp_path: Path, server: HTTPServer
) -> None:
    command, out = _hook(tmp_path)
    n = notify.Notifier(ws, NotifySettings(command=command, webhook=_url(server), on=["run_failed"]), where="box")
    n.emit(NOTE)
    n.emit(Notification("queue_empty", "not listed in [notify] on", {}, 2.0))
    n.close(wait=20)
    assert [c["text"] for c in _calls(out)] == [NOTE.text]
    assert [b["text"] for _, _, b in server.got] == [NOTE.text]  # type: ignore[attr-defined]
    notes, _ = notifications.read_new(ws.root, 0)
    assert notes == [NOTE]


# ---------------------------------------------------------------------------- the runner


@pytest.fixture
def qws(ws: Workspace, fake_worker_env: list[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setenv("TLTUI_FAKE_EPOCH_SECONDS", "0.05")
    monkeypatch.setenv("TLTUI_RUNNER_IDLE_TIMEOUT", "20")
    yield ws
    helpers.stop_runner_and_workers(ws)


def test_the_runner_notifies_a_failed_run_the_sweeps_end_and_the_empty_queue(
    qws: Workspace, tmp_path: Path, server: HTTPServer
) -> None:
    ws = qws
    command, out = _hook(tmp_path)
    ws.settings_file.write_text(f"[notify]\ncommand = {json.dumps(command)}\nwebhook = {json.dumps(_url(server))}\n")
    queue_ops.pause(ws)
    first, second = (r.id for r in queue_ops.add(ws, write_preset(tmp_path, epochs=2, extra=SWEEP2), {}))
    script(ws, first, crash_at=2, exit_code=7)
    queue_ops.unpause(ws)
    helpers.wait_for(lambda: finished(ws, first, second), "both runs to end")
    helpers.wait_for(lambda: len(_calls(out)) >= 3 and len(server.got) >= 3, "three notifications")  # type: ignore[attr-defined]
    calls = _calls(out)
    assert [c["stdin"]["event"] for c in calls] == ["run_failed", "sweep_done", "queue_empty"]
    failed, sweep, empty = (c["stdin"] for c in calls)
    assert (
        first in failed["text"] and "failed at epoch 1/2" in failed["text"] and "exited with code 7" in failed["text"]
    )
    for note in (sweep, empty):
        d = note["digest"]
        assert d["runs"] == [first, second] and d["counts"] == {"completed": 1, "failed": 1}
        assert d["best"]["id"] == second and d["best"]["val_acc"] == ws.get(second).best_val_acc
        assert [f["id"] for f in d["failures"]] == [first]
        assert f"best {second}" in note["text"] and f"failed: {first}" in note["text"]
    assert [b["event"] for _, _, b in server.got] == ["run_failed", "sweep_done", "queue_empty"]  # type: ignore[attr-defined]
    log = ws.runner_log.read_text()
    assert log.count("notify: ") == 3 and "SECRET" not in log


def test_a_broken_hook_never_stops_the_runner(qws: Workspace, tmp_path: Path) -> None:
    ws = qws
    ws.settings_file.write_text(f'[notify]\ncommand = ["{tmp_path / "no-such-hook"}"]\n')
    ids = [r.id for r in queue_ops.add(ws, write_preset(tmp_path, epochs=1, extra=SWEEP2), {})]
    helpers.wait_for(lambda: finished(ws, *ids), "both runs to end")
    helpers.wait_for(lambda: "notify: cannot run" in ws.runner_log.read_text(), "the hook's failure in the log")
    assert {ws.get(r).status for r in ids} == {"completed"}
    assert "Traceback" not in ws.runner_log.read_text()


def test_a_budgeted_sweep_is_not_done_while_a_run_waits_at_a_rung(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run paused at a rung waits for the runner's promotion: the sweep ends when the runs have, not before."""
    from types import SimpleNamespace

    runs = {
        "r1": SimpleNamespace(id="r1", sweep="s", status="completed", reason=None),
        "r2": SimpleNamespace(id="r2", sweep="s", status="paused", reason="paused at rung 1 (epoch 3)"),
        "r3": SimpleNamespace(id="r3", sweep="s", status="paused", reason="stopped early at rung 1 (epoch 3): ..."),
    }
    fake = SimpleNamespace(root=ws.root, get=runs.__getitem__, list_runs=lambda *a: list(runs.values()))
    n = notify.Notifier(fake, NotifySettings(on=["sweep_done"]), where="box")  # type: ignore[arg-type]
    sent: list[Notification] = []
    n.emit = sent.append  # type: ignore[method-assign]
    done = Notification("sweep_done", "sweep s done", {}, 1.0)
    monkeypatch.setattr(notify.notifications, "sweep_done", lambda sweep, where: done)
    n.ended("r2", "paused")
    assert sent == []  # r2 waits for a decision
    runs["r2"].status, runs["r2"].reason = "completed", None  # promoted, trained to its end
    n.ended("r2", "completed")
    assert sent == [done]
    n.close(wait=5)


def test_a_budgeted_sweep_whose_last_runs_are_stopped_at_a_rung_is_done_once(
    qws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last worker to end pauses at a rung; the runner stops it (and the other waiting one) at its next step,
    where no worker ends: the sweep is done then, and says so once."""
    ws = qws
    monkeypatch.setenv("TLTUI_RUNNER_CPU_SLOTS", "1")  # r1 pauses, r2 pauses (r1 goes on, completes), r3 pauses
    queue_ops.pause(ws)
    three = '[sweep]\n"train.seed" = [1, 2, 3]\n[sweep.budget]\nmin_epochs = 1\neta = 2\n'
    ids = [r.id for r in queue_ops.add(ws, write_preset(tmp_path, epochs=2, extra=three), {}, start_runner=False)]
    for rid, score in zip(ids, [0.05, 0.02, 0.01], strict=True):
        script(ws, rid, score=score)
    queue_ops.unpause(ws)

    def events() -> list[str]:
        return [n.event for n in notifications.read_new(ws.root, 0)[0]]

    helpers.wait_for(lambda: "queue_empty" in events(), "the queue's end")
    assert [ws.get(r).status for r in ids] == ["completed", "paused", "paused"]
    assert all((ws.get(r).reason or "").startswith("stopped early") for r in ids[1:])
    assert events().count("sweep_done") == 1
    assert events().index("sweep_done") < events().index("queue_empty")
