"""Errors that carry a message meant for the person who caused them.

An error is raised with an English template and named parameters, never a finished sentence:

    raise NotFoundError("No case with reference '{reference}'.", reference=reference)

``str(error)`` is the English sentence (the CLI and the logs show it); a screen shows
``error.template`` translated, filled with ``error.params``. Babel finds the templates because
every error class is an extraction keyword (babel.cfg), and tests/unit/test_error_templates.py
checks that each has a German and an English translation.

Parameters a screen translates as words, by their name: ``step`` (a step key, shown as its
title), ``state`` and ``status`` (a state word), ``role``, and ``what``, ``verb`` and ``field``
(English phrases, extracted where they are written: the ``require_*`` helpers' second argument,
``clean_text``'s field, or marked with ``N_``). A tuple or list parameter lists alternatives
("offered or held"). Everything else (references, names, numbers, dates) is shown as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def N_(phrase: str) -> str:
    """Mark an English word or phrase passed as an error parameter, so that Babel extracts it
    for the screens' catalogues; it is returned unchanged."""
    return phrase


def _english(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return " or ".join(str(v) for v in value)
    return value


class TrackerError(Exception):
    """Base class: the message is safe and useful to show to a user."""

    template: str
    params: Mapping[str, Any]

    def __init__(self, template: str, /, **params: Any) -> None:
        self.template = template
        self.params = params
        # A template without parameters is taken as it is (it may quote braces from elsewhere).
        message = (
            template.format(**{name: _english(value) for name, value in params.items()})
            if params
            else template
        )
        super().__init__(message)


class NotFoundError(TrackerError):
    pass


class PermissionDenied(TrackerError):
    pass


class InvalidTransition(TrackerError):
    pass


class ValidationFailed(TrackerError):
    pass


class ConcurrentEditError(TrackerError):
    """An optimistic-lock conflict: the record changed since the user read it."""


class PathwayError(TrackerError):
    pass


class DatabaseUnavailable(TrackerError):
    """The database could not be reached, went away, or stayed locked; the message says whether
    anything may have been saved."""
