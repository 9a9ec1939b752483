"""Every failure a caller can cause, and the one table that gives each its HTTP status.

Code below the HTTP layer raises what went wrong (``BadRequest``,
``image.InputError``, ``MultipartError``...) with a message meant for the
caller; the dispatcher in ``app.py`` looks the status up in ``STATUS``. An
exception the table does not know is a bug of ours: it answers 500 with a fixed
message, and its text goes to the log, never to the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

from mlapp.plugins import image
from mlapp.serve.multipart import MultipartError

Header = tuple[bytes, bytes]


class HTTPError(Exception):
    """A refusal whose message is for the caller. Its status comes from ``STATUS``, not from the raiser."""

    def __init__(self, message: str, headers: Sequence[Header] = ()) -> None:
        super().__init__(message)
        self.headers = headers


class BadRequest(HTTPError):
    """The request is malformed, or a value in it is out of range."""


class Unauthorized(HTTPError):
    """No valid basic-auth credentials."""


class NotFound(HTTPError):
    """No such endpoint, or a model or version this server does not serve."""


class MethodNotAllowed(HTTPError):
    """The path exists, under another method."""


class TooLarge(HTTPError):
    """The body or the batch is over a configured bound."""


class UnsupportedMediaType(HTTPError):
    """A body of a type the endpoint does not read."""


class TooManyRequests(HTTPError):
    """Too many failed logins from the caller's address (``auth.FailedLogins``)."""


class Busy(HTTPError):
    """A shared bound (the bodies held at once) is full; the caller may retry."""


class NotReady(HTTPError):
    """The model is not loaded yet."""


STATUS: Final[Mapping[type[Exception], int]] = MappingProxyType(
    {
        BadRequest: 400,
        image.InputError: 400,
        MultipartError: 400,
        Unauthorized: 401,
        NotFound: 404,
        MethodNotAllowed: 405,
        TooLarge: 413,
        UnsupportedMediaType: 415,
        TooManyRequests: 429,
        NotReady: 503,
        Busy: 503,
    }
)
INTERNAL_STATUS: Final = 500
INTERNAL_MESSAGE: Final = "internal error"


def status_of(error: Exception) -> int | None:
    """The status ``error`` answers with (its type's, or its nearest mapped base's); None if it is not mapped."""
    for cls in type(error).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return None


def headers_of(error: Exception) -> Sequence[Header]:
    return error.headers if isinstance(error, HTTPError) else ()
