"""Worker events: encode/decode round trips, torn lines, random bytes."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tltui.core import protocol
from tltui.core.protocol import Batch, EpochEnd, EventTail, Finished, Started


def test_round_trip_every_event_type() -> None:
    events = [
        Started(t=1.0, pid=12, host="box", devices=["CPU:0"], epochs=5, initial_epoch=2, steps_per_epoch=10),
        Batch(t=2.0, epoch=3, step=4, steps=10, metrics={"loss": 1.5, "acc": 0.25}),
        EpochEnd(t=3.0, epoch=3, metrics={"loss": 1.0, "val_acc": 0.5}, lr=0.01, epoch_seconds=2.5),
        Finished(t=4.0, status="failed", reason="loss became NaN", epochs_done=3),
    ]
    for ev in events:
        assert protocol.decode(protocol.encode(ev)) == ev
    for cls in protocol.EVENT_TYPES.values():
        ev = cls(t=0.5)
        assert protocol.decode(protocol.encode(ev)) == ev


def test_foreign_and_bad_lines_decode_to_none() -> None:
    for line in [
        b"",
        b"{",
        b"[]",
        b'{"type": "nope", "t": 1}',
        b'{"type": "batch"}',
        b'{"type": "batch", "t": "x"}',
        b"\xff\xfe",
        b'{"type": "batch", "t": 1, "step": 1, "bogus": 2}'[:-20],
    ]:
        assert protocol.decode(line) is None
    # unknown fields from a newer worker are ignored, not fatal
    ev = protocol.decode(b'{"type": "batch", "t": 1, "step": 3, "future_field": 1}')
    assert isinstance(ev, Batch) and ev.step == 3


def test_tail_holds_back_a_partial_last_line(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    tail = EventTail(p)
    assert tail.read_new() == []
    line = protocol.encode(EpochEnd(t=1.0, epoch=1, metrics={"loss": 1.0}))
    with open(p, "w") as f:
        f.write(line + line[:10])
    assert [e.epoch for e in tail.read_new()] == [1]  # type: ignore[attr-defined]
    with open(p, "a") as f:
        f.write(line[10:])
    assert [e.epoch for e in tail.read_new()] == [1]  # type: ignore[attr-defined]
    assert tail.torn == 0


def test_torn_line_in_the_middle_is_skipped_and_counted(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    good = protocol.encode(EpochEnd(t=1.0, epoch=1))
    p.write_text(good + good[:15] + "\n" + protocol.encode(EpochEnd(t=2.0, epoch=2)))
    tail = EventTail(p)
    assert [e.epoch for e in tail.read_new()] == [1, 2]  # type: ignore[attr-defined]
    assert tail.torn == 1


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    assert protocol.decode(data) is None or isinstance(protocol.decode(data), protocol.Event)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_tail_of_random_bytes_never_raises(tmp_path_factory, chunks: list[bytes]) -> None:
    p = tmp_path_factory.mktemp("tail") / "events.jsonl"
    tail = EventTail(p)
    for c in chunks:
        with open(p, "ab") as f:
            f.write(c)
        tail.read_new()


def test_top_k_is_na_exactly_when_every_class_is_in_every_top_k() -> None:
    assert protocol.top_k_na(3) == "top-5 n/a with 3 classes (it would be 100% by construction)"
    assert protocol.top_k_na(3, why=False) == "top-5 n/a with 3 classes"
    assert protocol.top_k_na(6, k=10) == "top-10 n/a with 6 classes (it would be 100% by construction)"
    assert protocol.top_k_na(6, k=5) is None and protocol.top_k_na(None) is None
    # the training metrics' threshold and the reports' wording agree
    assert [n for n in range(1, 10) if protocol.top_k_na(n) is None] == list(range(protocol.TOP5_MIN_CLASSES, 10))
