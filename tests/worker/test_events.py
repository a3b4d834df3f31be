"""The event writer (tltui/worker/events.py): file + pipe, a broken pipe. No training."""

from __future__ import annotations

import os
from pathlib import Path

from tltui.core import protocol
from tltui.core.protocol import EpochEnd, Log, Started
from tltui.worker.events import EventWriter, ignore_sigpipe


def test_events_go_to_the_file_and_the_pipe(tmp_path: Path) -> None:
    r, w = os.pipe()
    with EventWriter(tmp_path, w) as writer:
        writer.emit(Started(t=1.0, epochs=3))
        writer.emit(EpochEnd(t=2.0, epoch=1, metrics={"loss": 0.5}), sync=True)
    on_pipe = os.read(r, 65536).decode().splitlines()
    os.close(r)
    in_file = (tmp_path / "events.jsonl").read_text().splitlines()
    assert on_pipe == in_file
    assert [e.type for e in protocol.read_events(tmp_path / "events.jsonl")] == ["started", "epoch_end"]


def test_a_closed_reader_disables_the_pipe_but_not_the_file(tmp_path: Path) -> None:
    ignore_sigpipe()
    r, w = os.pipe()
    os.close(r)
    writer = EventWriter(tmp_path, w)
    writer.emit(Log(t=1.0, message="first"))
    assert not writer.pipe_open
    writer.emit(Log(t=2.0, message="second"))
    writer.close()
    assert [e.message for e in protocol.read_events(tmp_path / "events.jsonl")] == ["first", "second"]


def test_events_append_across_writers(tmp_path: Path) -> None:
    for i in range(2):
        with EventWriter(tmp_path) as writer:
            writer.emit(Log(t=float(i), message=str(i)))
    assert [e.message for e in protocol.read_events(tmp_path / "events.jsonl")] == ["0", "1"]
