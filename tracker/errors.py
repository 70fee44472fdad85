"""Errors that carry a message meant for the person who caused them."""


class TrackerError(Exception):
    """Base class: the message is safe and useful to show to a user."""


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
