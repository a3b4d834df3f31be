"""Small helpers shared by the presets, freeze-map and inference screens."""

from __future__ import annotations

from typing import Any

from tltui.workspace import Workspace


def workspace_for(app: Any, explicit: Workspace | None) -> Workspace:
    """The workspace a screen works on: the one it was given, the app's, or the default one."""
    if explicit is not None:
        return explicit
    ws = getattr(app, "ws", None)
    if isinstance(ws, Workspace):
        return ws
    return Workspace()


def one_line(exc: BaseException) -> str:
    """A failure as the one line a user sees (the first issue of a preset error)."""
    issues = getattr(exc, "issues", None)
    if issues:
        return str(issues[0]) + (f" (+{len(issues) - 1} more)" if len(issues) > 1 else "")
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
