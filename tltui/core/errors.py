"""Errors a user can cause, and the one place that turns a failure into the line they see.

Every failure a user can cause or fix derives from :class:`TltuiError`. The CLI catches it once
(``tltui.commands.main``) and the app once (its notifications); neither re-wraps per command.
Worker-side errors derive from ``tltui.worker.errors.WorkerError``, itself a :class:`TltuiError`.
Stdlib only (cheap to import).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class TltuiError(Exception):
    """A failure a user can fix: its message says what and where, in one line."""

    def lines(self) -> list[str]:
        """Every problem, one line each (most errors have one)."""
        return [str(self)]


@dataclass(frozen=True)
class PresetIssue:
    """One problem with a preset: where it is and what was expected."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class PresetError(TltuiError):
    """A preset (or settings file) that does not validate: every issue with its file, line and field."""

    def __init__(self, issues: Iterable[PresetIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def lines(self) -> list[str]:
        return [str(i) for i in self.issues] or [str(self)]


class CommandError(TltuiError):
    """A command line that cannot be carried out (the CLI exits 2)."""


def one_line(exc: BaseException) -> str:
    """A failure as the one line a user sees: never a traceback.

    A preset error shows its first issue (and how many more); a missing optional module names the
    module; anything else is its first line (with the type when the message alone says nothing).
    """
    if isinstance(exc, PresetError) and exc.issues:
        more = len(exc.issues) - 1
        return str(exc.issues[0]) + (f" (+{more} more)" if more else "")
    if isinstance(exc, ModuleNotFoundError):
        return f"{exc.name} is not available in this installation"
    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, TltuiError | OSError | ValueError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
