"""Change a few keys of a TOML document and keep everything else as the user wrote it.

Used by the preset editor's form and by the freeze map's write-back: comments,
key order and formatting survive (``tomlkit``). Pure text in, text out; no Textual.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.container import OutOfOrderTableProxy
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, InlineTable, Table

from tltui.core.errors import TltuiError
from tltui.core.workspace import atomic_write


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


#: Pass as a value to remove the key (the preset then uses the default).
DELETE: Any = _Delete()


class TomlEditError(TltuiError, ValueError):
    """The text is not TOML (or a key's parent is not a table); one line."""


def set_keys(text: str, changes: Mapping[str, Any]) -> str:
    """``text`` with each dotted key of ``changes`` set (or removed with :data:`DELETE`).

    ``"sweep"`` takes a whole dict (``{"freeze.depth": [0, 1]}``); an empty dict
    removes the ``[sweep]`` table. A ``[sweep]`` table stays the last table. ``"phases.N"`` takes
    the dotted keys phase ``N`` (from 1) sets (``{"train.epochs": 3}``; its name is kept).
    """
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as e:
        raise TomlEditError(f"not valid TOML: {e}") from None
    for key, value in changes.items():
        parts = key.split(".")
        if key == "sweep":
            _set_sweep(doc, value)
        elif len(parts) == 2 and parts[0] == "phases" and parts[1].isdigit():
            _set_phase(doc, int(parts[1]), {} if value is DELETE else value)
        else:
            _set_dotted(doc, parts, value)
    return tomlkit.dumps(doc)


def _set_phase(doc: tomlkit.TOMLDocument, n: int, value: Mapping[str, Any]) -> None:
    """``[[phases]]`` entry ``n`` (from 1) sets exactly the dotted keys of ``value`` (its name
    stays): the others go, the ones it has change in place, new ones are added as dotted keys."""
    phases = doc.get("phases")
    if not isinstance(phases, AoT) or not 1 <= n <= len(phases):
        have = len(phases) if isinstance(phases, AoT) else 0
        raise TomlEditError(f"phases.{n}: the preset has {have} phases (as [[phases]] tables)")
    phase = phases[n - 1]
    want = {k: v for k, v in value.items() if k != "name"}
    for group in [k for k in phase if k != "name"]:
        item = phase[group]
        if _is_table(item):
            for leaf in [leaf for leaf in item if f"{group}.{leaf}" not in want]:
                del item[leaf]
            if not item:
                del phase[group]
        elif group not in want:
            del phase[group]
    for key, v in want.items():
        head, _, leaf = key.partition(".")
        if not leaf:
            _assign(phase, head, v)
        elif head in phase and _is_table(phase[head]):
            _assign(phase[head], leaf, v)
        else:
            phase.add(tomlkit.key(key.split(".")), v)


def _is_table(item: Any) -> bool:
    """A table however written: ``[t]``, ``t = { ... }`` or dotted keys (``t.a = 1``: a proxy in tomlkit)."""
    return isinstance(item, Table | InlineTable | OutOfOrderTableProxy)


def _same(item: Any, value: Any) -> bool:
    """``item`` (tomlkit) already holds ``value``, of the same type (``1`` is not ``true``, ``1e-3`` is ``0.001``)."""
    plain = item.unwrap() if hasattr(item, "unwrap") else item
    return type(plain) is type(value) and bool(plain == value)


def _assign(container: Any, key: str, value: Any) -> None:
    """Set ``key`` unless it already holds ``value`` (its text stays as written: ``1e-3``), keeping the
    comment of the line it replaces."""
    old = container.get(key)
    if old is not None and _same(old, value):
        return
    new = tomlkit.item(value)
    if old is not None and hasattr(old, "trivia") and hasattr(new, "trivia"):
        new.trivia.comment_ws, new.trivia.comment = old.trivia.comment_ws, old.trivia.comment
    container[key] = new


def _set_dotted(doc: tomlkit.TOMLDocument, parts: list[str], value: Any) -> None:
    head, *rest = parts
    container: Any = doc
    if rest:
        if head not in doc:
            if value is DELETE:
                return
            _add_table(doc, head)
        container = doc[head]
        for p in rest[:-1]:
            if p not in container:
                if value is DELETE:
                    return
                container[p] = tomlkit.table()
            container = container[p]
        if not hasattr(container, "__setitem__") or isinstance(container, (str, int, float, list)):
            raise TomlEditError(f"{'.'.join(parts[:-1])} is not a table")
    leaf = parts[-1]
    if value is DELETE:
        if leaf in container:
            del container[leaf]
        return
    _assign(container, leaf, value)


def _add_table(doc: tomlkit.TOMLDocument, name: str) -> None:
    """A new ``[name]`` table, placed before ``[sweep]`` so the sweep stays last."""
    sweep = doc.pop("sweep") if "sweep" in doc else None
    doc[name] = tomlkit.table()
    if sweep is not None:
        doc["sweep"] = sweep


def _set_sweep(doc: tomlkit.TOMLDocument, value: Mapping[str, list[Any]]) -> None:
    if value is DELETE or not value:
        if "sweep" in doc:
            del doc["sweep"]
        return
    table = doc.get("sweep")
    if not isinstance(table, Table):
        if table is not None:
            del doc["sweep"]
        table = tomlkit.table()
        doc["sweep"] = table
    for k in [k for k in table if k not in value]:
        del table[k]
    for k, v in value.items():
        table[k] = v


def update_file(path: str | Path, changes: Mapping[str, Any]) -> str:
    """Apply :func:`set_keys` to a file atomically; returns the new text."""
    path = Path(path)
    text = set_keys(path.read_text(encoding="utf-8"), changes)
    atomic_write(path, text, mode=path.stat().st_mode & 0o777)
    return text
