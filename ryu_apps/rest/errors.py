"""HTTP errors as JSON: ``{"error": {"status", "reason", "message", "field"}}``."""

from __future__ import annotations

import json

from webob import Response


class HttpError(Exception):
    def __init__(self, status: int, message: str, *, field: str | None = None, reason: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.reason = status, message, field, reason
        self.headers = headers or {}

    def response(self) -> Response:
        body = {"status": self.status, "reason": self.reason or _REASONS.get(self.status, "error"),
                "message": self.message}
        if self.field:
            body["field"] = self.field
        response = json_response({"error": body}, self.status)
        for name, value in self.headers.items():
            response.headers[name] = value
        return response


_REASONS = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
            409: "conflict", 413: "too-large", 415: "unsupported-media-type", 422: "unprocessable",
            500: "internal-error", 503: "unavailable"}


def json_response(body: object, status: int = 200) -> Response:
    response = Response(status=status, content_type="application/json", charset="utf-8")
    response.body = json.dumps(body, sort_keys=True).encode()
    return response
