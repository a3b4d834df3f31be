"""Where a field is in a TOML file: the line a preset or settings error points at. Stdlib only.

Best effort, on the text as written (``tomllib`` keeps no positions): the ``key =`` line under the
right ``[table]``, a dotted key (``train.epochs = 3``), an inline table's line, else the header of
the nearest enclosing table. ``[[phases]]`` tables count from 1 (``phases.2.train.epochs``), as the
phases are numbered everywhere else.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*\[\s*([^\]\[]+?)\s*\]\s*(#.*)?$")
_ARRAY_HEADER = re.compile(r"^\s*\[\[\s*([^\]\[]+?)\s*\]\]\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=""")


def _unquote(k: str) -> str:
    k = k.strip()
    if len(k) >= 2 and k[0] == k[-1] and k[0] in "\"'":
        return k[1:-1]
    return ".".join(p.strip().strip("\"'") for p in k.split("."))


def locate(text: str | None, field: str) -> int | None:
    """The 1-based line of the dotted ``field`` (``table.key``, ``phases.2.train.epochs``) in
    ``text``, or of the nearest enclosing table or key that is there; ``None``: nothing matches."""
    if text is None or not field:
        return None
    best, best_len, table = None, -1, ""
    arrays: dict[str, int] = {}
    for no, line in enumerate(text.splitlines(), 1):
        if m := _ARRAY_HEADER.match(line):
            name = _unquote(m.group(1))
            arrays[name] = arrays.get(name, 0) + 1
            table = here = f"{name}.{arrays[name]}"
        elif m := _HEADER.match(line):
            table = _unquote(m.group(1))
            parent = table.split(".", 1)[0]
            if parent in arrays and "." in table:  # [phases.train] after [[phases]]: that phase's table
                table = f"{parent}.{arrays[parent]}.{table.split('.', 1)[1]}"
            here = table
        elif m := _KEY.match(line):
            key = _unquote(m.group(1))
            here = f"{table}.{key}" if table else key
        else:
            continue
        if (field == here or field.startswith(here + ".") or field.startswith(here + "[")) and len(here) > best_len:
            best, best_len = no, len(here)
    return best
