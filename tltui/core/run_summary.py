"""A run's events folded up to an epoch's end, on disk: readers cost what the epochs cost.

``events.jsonl`` holds every event, batch progress included (~10 a second: a 300-epoch run
writes ~300k lines). Folding it all for every view would cost what the batches cost, so beside it
``events.summary.json`` holds :class:`~tltui.core.runstate.RunState` as it stood after the first
``offset`` bytes of the log, with a digest of those bytes. A reader restores that state and folds
only what was appended since (:func:`load`): the result equals folding the whole log, by
construction, because the summary *is* that fold, serialised.

Who writes it:

- the worker (:class:`Recorder`, driven by its event writer) after every ``started``, phase, epoch
  end, test evaluation and ``finished`` event, atomically;
- a reader that had to fold much more than the summary held (a run from before summaries, a run
  whose events another process appended: a remote executor's relay, a ``finished`` written by the
  runner): it writes what it folded, once, so the next reader does not. Any fold of a prefix of the
  log is a valid summary, so concurrent writers cannot make a wrong one, at worst an older one.

A summary that does not match its log (missing, unreadable, from another version, a digest that
differs: the log was replaced) is ignored and rebuilt from the log. Of the latest batches it keeps
those of the epoch in progress (the only ones a chart draws); the raw log stays the record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tltui.core import protocol
from tltui.core.protocol import EpochEnd, Evaluated, EventTail, Finished, Started, TrainPhase
from tltui.core.runstate import RunState
from tltui.core.workspace import SUMMARY_NAME, atomic_write

#: The summary's format, and what :meth:`RunState.apply` keeps: bump it when either changes (older
#: summaries are then rebuilt from their logs).
VERSION = 1
#: A reader writes the summary when it folded at least this much beyond it for a run that finished ...
SAVE_FINISHED_BYTES = 64 * 1024
#: ... or this much for any run (its worker did not summarise it: a relay, an older worker).
SAVE_ANY_BYTES = 4 * 1024 * 1024
#: A whole log folds this many bytes at a time (bounded memory).
CHUNK_BYTES = 4 * 1024 * 1024
#: The digest covers this many bytes at the start of the folded prefix and at its end.
DIGEST_SPAN = 4096
#: The events after which the worker rewrites the summary.
SAVE_ON = (Started, TrainPhase, EpochEnd, Evaluated, Finished)


def summary_path(events_path: str | os.PathLike[str]) -> Path:
    return Path(events_path).parent / SUMMARY_NAME


def digest(events_path: str | os.PathLike[str], offset: int) -> str | None:
    """A digest of the first ``offset`` bytes' ends (and of ``offset``): tells a summary of this log
    from one of a log that was replaced. ``None`` when the log is shorter or unreadable."""
    try:
        with open(events_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < offset:
                return None
            head = os.pread(f.fileno(), min(offset, DIGEST_SPAN), 0)
            start = max(0, offset - DIGEST_SPAN)
            tail = os.pread(f.fileno(), offset - start, start)
    except OSError:
        return None
    if offset and not tail.endswith(b"\n"):
        return None  # a summary ends at a line's end
    h = hashlib.blake2b(digest_size=16)
    for part in (str(offset).encode(), head, tail):
        h.update(part)
    return h.hexdigest()


# ---------------------------------------------------------------- RunState <-> JSON


def _current_batches(st: RunState) -> list[tuple[float, int, int, dict[str, float]]]:
    """The batches of the epoch in progress (what a live chart draws); older ones only fill memory."""
    if not st.epoch or st.epoch <= st.epochs_done:
        return []
    start = len(st.batches)
    while start > 0 and st.batches[start - 1][1] == st.epoch:
        start -= 1
    return st.batches[start:]


def state_to_doc(st: RunState) -> dict[str, Any]:
    """``st`` as JSON-ready data (every field: :func:`state_from_doc` gives an equal state, but for
    batches of finished epochs, which it leaves out). Events, int-keyed dicts and tuples are tagged
    (``$event``, ``$int``, ``$tuple``) so a field of any of these kinds round-trips."""
    doc: dict[str, Any] = {}
    for f in dataclasses.fields(RunState):
        v = _current_batches(st) if f.name == "batches" else getattr(st, f.name)
        doc[f.name] = _enc(v)
    return doc


def state_from_doc(doc: dict[str, Any]) -> RunState:
    """The state :func:`state_to_doc` wrote; raises ``ValueError``/``TypeError``/``KeyError`` on a
    document that is not one (or misses a field: a summary from before that field existed)."""
    return RunState(**{f.name: _dec(doc[f.name]) for f in dataclasses.fields(RunState)})


def _enc(v: Any) -> Any:
    if isinstance(v, protocol.Event):
        return {"$event": v.to_dict()}
    if isinstance(v, tuple):
        return {"$tuple": [_enc(x) for x in v]}
    if isinstance(v, list):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        if v and all(isinstance(k, int) for k in v):
            return {"$int": [[k, _enc(x)] for k, x in v.items()]}
        return {str(k): _enc(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"a run summary cannot hold a {type(v).__name__}: {v!r:.80}")


def _dec(v: Any) -> Any:
    if isinstance(v, list):
        return [_dec(x) for x in v]
    if isinstance(v, dict):
        if len(v) == 1 and "$event" in v:
            ev = protocol.from_dict(v["$event"])
            if ev is None:
                raise ValueError(f"not an event: {v!r:.80}")
            return ev
        if len(v) == 1 and "$tuple" in v:
            return tuple(_dec(x) for x in v["$tuple"])
        if len(v) == 1 and "$int" in v:
            return {int(k): _dec(x) for k, x in v["$int"]}
        return {k: _dec(x) for k, x in v.items()}
    return v


def encode(st: RunState, offset: int, torn: int, check: str) -> bytes:
    doc = {"version": VERSION, "offset": offset, "torn": torn, "digest": check, "state": state_to_doc(st)}
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode("utf-8")


def write(events_path: str | os.PathLike[str], st: RunState, offset: int, torn: int) -> bool:
    """Save ``st``, the fold of the log's first ``offset`` bytes (``torn`` of its lines unreadable).
    ``False`` when it could not (the log changed under it, a read-only folder, a full disk): a
    summary is a cache, never worth failing for."""
    check = digest(events_path, offset)
    if check is None:
        return False
    try:
        blob = encode(st, offset, torn, check)
    except (TypeError, ValueError):  # a field this format cannot hold yet: readers fold the log instead
        return False
    try:
        atomic_write(summary_path(events_path), blob)
    except OSError:
        return False
    return True


# ---------------------------------------------------------------- readers


def _restore(events_path: Path) -> tuple[RunState, EventTail] | None:
    """The saved state and a tail positioned after it, if the summary matches the log."""
    try:
        doc = json.loads(summary_path(events_path).read_bytes())
        if doc.get("version") != VERSION:
            return None
        offset, torn = int(doc["offset"]), int(doc["torn"])
        if offset < 0 or digest(events_path, offset) != doc["digest"]:
            return None
        st = state_from_doc(doc["state"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    tail = EventTail(events_path)
    tail.offset, tail.torn = offset, torn
    return st, tail


def fold_into(st: RunState, tail: EventTail) -> int:
    """Fold everything ``tail`` has not read yet into ``st``, a chunk at a time; the bytes read."""
    start = tail.offset
    while True:
        before = tail.offset
        for ev in tail.read_new(CHUNK_BYTES):
            st.apply(ev)
        if tail.offset - before < CHUNK_BYTES:
            break
    st.skipped_lines = tail.torn + (1 if tail.pending else 0)
    return tail.offset - start


def load(events_path: str | os.PathLike[str], *, save: bool = True) -> tuple[RunState, EventTail]:
    """The run's state with every event written so far, and the tail to keep reading it with.

    Costs what the summary costs plus what was appended after it. With ``save``, a fold that went far
    beyond the summary is written back (see the module's docstring)."""
    path = Path(events_path)
    restored = _restore(path)
    st, tail = restored if restored is not None else (RunState(), EventTail(path))
    folded = fold_into(st, tail)
    if save and (folded >= SAVE_ANY_BYTES or (folded >= SAVE_FINISHED_BYTES and st.finished is not None)):
        write(path, st, tail.complete_offset, tail.torn)
    return st, tail


# ---------------------------------------------------------------- the worker's side


class Recorder:
    """Folds the lines one writer appends to ``events.jsonl`` and rewrites the summary at epoch
    boundaries (:data:`SAVE_ON`). Starts from the log as it is (a resume continues its summary).
    Stops summarising for good when the log grows by anything but its own lines (another writer):
    readers then rebuild from the log."""

    def __init__(self, events_path: str | os.PathLike[str]) -> None:
        self.path = Path(events_path)
        self.state, tail = load(self.path, save=False)
        self.offset, self.torn = tail.complete_offset, tail.torn
        self.active = not tail.pending  # a line without its newline would swallow our first one

    def add(self, line: bytes, end: int) -> None:
        """``line`` (one encoded event) was appended and the log now ends at ``end``."""
        if not self.active:
            return
        if end != self.offset + len(line):
            self.active = False
            return
        self.offset = end
        ev = protocol.decode(line)  # as readers decode it: the saved state is exactly theirs
        if ev is None:
            self.torn += 1
            return
        self.state.apply(ev)
        if isinstance(ev, SAVE_ON):
            write(self.path, self.state, self.offset, self.torn)
