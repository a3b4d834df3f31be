"""Pydantic's validation errors as one-line issues (``file:line: field: message``): the one translator
for presets and ``settings.toml``.

An issue points at its field's line in the TOML text (:func:`tltui.core.tomlpos.locate`) or, for a value
that came from elsewhere (a ``--set`` option, an environment variable), names where it came from. It
reads the errors as dicts (``ValidationError.errors()``), so this module imports no pydantic.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tltui.core.errors import PresetIssue
from tltui.core.tomlpos import locate

#: A pydantic error location: field names and list indices.
Loc = tuple[str | int, ...]

# What pydantic adds to a location for union members and validators ("int", "function-after[...]").
_TYPE_TAGS = frozenset(
    {"str", "int", "float", "bool", "none", "dict", "list", "function-plain", "function-after", "function-before"}
)


def issues(
    errors: Iterable[Mapping[str, Any]],
    *,
    file: str,
    text: str | None,
    field: Callable[[Loc], str],
    unknown: Callable[[Loc], str],
    origins: Mapping[str, str] | None = None,
) -> list[PresetIssue]:
    """One issue per field (a union reports its field once per member). ``field(loc)`` names a field
    as the user writes it (the dotted key :func:`~tltui.core.tomlpos.locate` finds in ``text``);
    ``unknown(loc)`` is the message for a key the schema does not have. A field in ``origins`` (or
    inside one) got its value from there, not from ``file``: ``{"train.epochs": "--set train.epochs=0"}``
    makes the issue name that, without a line."""
    out: dict[str, PresetIssue] = {}
    for err in errors:
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in _TYPE_TAGS)))
        name = field(loc)
        etype, inp = str(err["type"]), err.get("input")
        msg = str(err["msg"]).removeprefix("Value error, ")
        if etype == "extra_forbidden":
            msg = unknown(loc)
        elif etype == "missing":
            msg = "required field is missing"
        elif not isinstance(inp, dict | list) or etype.endswith("_type"):
            msg = msg if "got " in msg else f"{msg} (got {shown(inp)})"
        origin = _origin(name, origins or {})
        issue = PresetIssue(origin, None, name, msg) if origin else PresetIssue(file, locate(text, name), name, msg)
        out.setdefault(name, issue)
    return list(out.values())


def close_match(name: str, known: Sequence[str]) -> str | None:
    """The known name closest to a misspelt one (``learnin_rate`` -> ``learning_rate``), if any is close."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return close[0] if close else None


def unknown(name: str, known: Sequence[str], what: str = "key", plural: str = "keys") -> str:
    """The message for a key (or table) the schema does not have: a close match, then the known ones."""
    close = close_match(name, known)
    hint = f"; did you mean {close!r}?" if close else ""
    return f"unknown {what}{hint} (known {plural}: {', '.join(known)})" if known else f"unknown {what}"


def shown(value: object) -> str:
    """A value as an error message quotes it: its ``repr``, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _origin(name: str, origins: Mapping[str, str]) -> str | None:
    for key, origin in origins.items():
        if name == key or name.startswith((key + ".", key + "[")):
            return origin
    return None
