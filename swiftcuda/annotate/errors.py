"""Errors of the annotation server's requests, each with the HTTP status it is answered with."""

from __future__ import annotations

from swiftcuda.errors import SwiftcudaError


class RequestError(SwiftcudaError):
    """A request the server refuses; the message says why and what to do instead."""

    status = 400


class Forbidden(RequestError):
    """No token, or a path outside INPUT and --out."""

    status = 403


class NotFound(RequestError):
    """A frame, object or file that does not exist."""

    status = 404


class Conflict(RequestError):
    """A request that the session's current state does not allow (a run in progress, an earlier export)."""

    status = 409


class TooLarge(RequestError):
    """A request body over its size bound."""

    status = 413
