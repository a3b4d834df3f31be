"""Errors the worker raises for a run the user can fix (bad data, a model that cannot be built,
a dataset that cannot be fetched...). Each becomes the run's one-line failure reason as it is;
anything else is reported with its type and a pointer to ``worker.log``."""

from __future__ import annotations

from tltui.core.errors import TltuiError


class WorkerError(TltuiError):
    """A user-fixable failure inside the worker."""


class ModelError(WorkerError):
    """The backbone or classifier cannot be built or loaded as asked."""


class TrainError(WorkerError):
    """A failure with a one-line reason the user can act on."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), else its type's name: what
    a one-line reason quotes of a library's error."""
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
