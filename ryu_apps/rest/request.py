"""The REST API's request: webob's, with the query string read as today's clients write it.

webob splits a query string on ``;`` as well as ``&`` (HTML 4's suggestion), so
``?community=a;b`` reached the handlers as ``community=a`` and a parameter longer than its
limit could pass its check cut short. Clients (browsers' URLSearchParams, werkzeug,
requests, curl users) leave ``;`` unescaped inside a value and separate parameters with
``&`` only (the WHATWG URL standard, RFC 3986 sub-delims): so does this request.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from webob import Request
from webob.multidict import MultiDict

from .errors import HttpError

_CACHE = "mam.query"


class ApiRequest(Request):  # type: ignore[misc]
    @property
    def GET(self) -> Any:  # noqa: N802 - webob's name
        """The query's parameters, split on ``&`` only; a query that is not UTF-8 is a 400."""
        query = self.environ.get("QUERY_STRING", "")
        cached = self.environ.get(_CACHE)
        if cached is None or cached[0] != query:
            try:
                pairs = parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="strict", separator="&")
            except UnicodeDecodeError:
                raise HttpError(400, "the query string is not UTF-8", field="query") from None
            cached = (query, MultiDict(pairs))
            self.environ[_CACHE] = cached
        return cached[1]
