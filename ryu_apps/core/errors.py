"""Errors raised at the edges of the core for bad input or misuse.

Decisions (admit / reject) are values, never exceptions. Exceptions are for input that
cannot be acted on; each carries an HTTP-style status hint so every shell (REST, SIP,
CLI) can report it the same way.
"""

from __future__ import annotations


class MamError(Exception):
    """Base of every error the project raises on purpose."""

    status: int = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


class InvalidRequest(MamError):
    """The request names something malformed (a field, a value out of range)."""

    status = 400


class NotFound(MamError):
    """The request names an aggregate, call or community that does not exist."""

    status = 404


class Conflict(MamError):
    """The request contradicts current state (duplicate name, shrink below use)."""

    status = 409


class CapacityError(Conflict):
    """Not enough reservable capacity to do what was asked."""


class Unprocessable(MamError):
    """Well-formed, but nothing the network can carry (media of two IP versions)."""

    status = 422


class StoreUnavailable(MamError):
    """The ledger could not record a change (disk, database or cluster store down).

    Nothing was changed: a mutation is acknowledged only once it is durable."""

    status = 503
