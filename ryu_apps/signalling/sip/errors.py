"""Errors of the SIP protocol core, split h11-style by whose fault they are.

* :class:`ParseError` (a :class:`RemoteProtocolError`): the peer sent something we cannot
  accept. ``status_hint`` is the response code to answer with when a response can be
  built (400, 413, 505, ...); ``partial`` holds what could be read before the error, so
  the proxy can tell whether a response can be built at all.
* :class:`LocalProtocolError`: our own caller misused the API (a bug here, not there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .message import Partial


class SipError(Exception):
    status_hint: int = 400

    def __init__(self, message: str, status_hint: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_hint is not None:
            self.status_hint = status_hint


class RemoteProtocolError(SipError):
    """The peer misbehaved: malformed, oversized or unsupported input."""


class ParseError(RemoteProtocolError):
    """A message could not be parsed (or a header value of it could not)."""

    def __init__(self, message: str, status_hint: int = 400, partial: "Partial | None" = None) -> None:
        super().__init__(message, status_hint)
        self.partial = partial


class LocalProtocolError(SipError):
    """The caller of the protocol core did something the protocol does not allow."""

    status_hint = 500
