"""CallControl over the controller's REST API, for a proxy running in its own process.

The contract this client expects of the API (JSON bodies, ``Authorization: Bearer``):

=====================================  ============================================  =====================
request                                body                                          answer
=====================================  ============================================  =====================
``POST /mam/v1/calls``                 call_id, caller_community, callee_community,  201 admitted call
                                       level, media {codec, ptime_ms, explicit_kbps,  (aggregate_id, kbps,
                                       voice_band_data}, protocol                     serial); 409 {reason,
                                                                                      detail}
``PATCH /mam/v1/calls/{id}``           {media}                                        200 call; 409 refused
``PUT /mam/v1/calls/{id}/media``       {caller: {ip, port}, callee: {ip, port}}       200
``DELETE /mam/v1/calls/{id}?cause=c``  -                                              204; 404 unknown
``GET /mam/v1/communities/lookup``     ?domain=&address=                              {community: name|null}
``GET /mam/v1/calls?protocol=sip``     -                                             {calls: [{call_id,
                                                                                      serial, ...}]}
=====================================  ============================================  =====================

Rejections come back as 409 with ``reason`` (a RejectReason value) and ``detail``.
Transport failures raise (the proxy counts them and answers 503). Community lookups
are cached for ``cache_s`` seconds: the topology changes rarely, calls often.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from typing import Any

from ryu_apps.core.admission import AdmissionRequest, Admitted, Decision, Rejected, RejectReason
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.serialize import media_to_dict


class ControllerError(RuntimeError):
    """The controller could not be asked, or answered something unexpected."""


class RestCallControl:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 2.0, cache_s: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"controller URL must be http(s)://host:port, got {base_url!r}")
        self.url = base_url
        self._scheme, self._host = parsed.scheme, parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._prefix = parsed.path.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._cache_s = cache_s
        self._cache: dict[tuple[str | None, str | None], tuple[float, str | None]] = {}
        self._local = threading.local()

    # --- CallControl ----------------------------------------------------------------------

    def admit(self, request: AdmissionRequest) -> Decision:
        status, body = self._call("POST", "/mam/v1/calls", {
            "call_id": request.call_id, "caller_community": request.caller_community,
            "callee_community": request.callee_community, "level": request.level.label,
            "media": media_to_dict(request.media), "protocol": request.protocol.value})
        return self._decision(request.call_id, status, body)

    def modify(self, call_id: str, media: MediaSpec) -> Decision:
        status, body = self._call("PATCH", f"/mam/v1/calls/{_quote(call_id)}", {"media": media_to_dict(media)})
        return self._decision(call_id, status, body)

    def attach_media(self, call_id: str, caller: MediaEndpoint, callee: MediaEndpoint) -> None:
        status, body = self._call("PUT", f"/mam/v1/calls/{_quote(call_id)}/media", {
            "caller": {"ip": caller.ip, "port": caller.port}, "callee": {"ip": callee.ip, "port": callee.port}})
        if status >= 300:
            raise ControllerError(f"attach_media {call_id}: HTTP {status} {body}")

    def release(self, call_id: str, cause: str) -> None:
        status, body = self._call("DELETE", f"/mam/v1/calls/{_quote(call_id)}?cause={_quote(cause)}", None)
        if status >= 300 and status != 404:
            raise ControllerError(f"release {call_id}: HTTP {status} {body}")

    def community_of(self, domain: str | None, address: str | None) -> str | None:
        key = (domain, address)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        query = urllib.parse.urlencode({k: v for k, v in (("domain", domain), ("address", address)) if v})
        status, body = self._call("GET", f"/mam/v1/communities/lookup?{query}", None)
        if status != 200 or not isinstance(body, dict):
            raise ControllerError(f"community lookup: HTTP {status} {body}")
        community = body.get("community")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + self._cache_s, community)
        return community

    def sip_calls(self) -> dict[str, int]:
        """The controller's live SIP calls: call id -> serial (for :mod:`.call_watch`)."""
        status, body = self._call("GET", "/mam/v1/calls?protocol=sip", None)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("calls"), list):
            raise ControllerError(f"list calls: HTTP {status} {str(body)[:200]}")
        return {str(call["call_id"]): int(call.get("serial", 0)) for call in body["calls"] if isinstance(call, dict)}

    # --- HTTP -----------------------------------------------------------------------------

    def _decision(self, call_id: str, status: int, body: Any) -> Decision:
        if not isinstance(body, dict):
            raise ControllerError(f"HTTP {status}: expected a JSON object, got {body!r}")
        if 200 <= status < 300:
            call = body.get("call", body)
            return Admitted(call_id, str(call.get("aggregate_id", "")), int(call.get("kbps", 0)),
                            tuple(body.get("preempted", ())), int(call.get("serial", 0)))
        error = body.get("error", body)
        if status in (404, 409, 422) and isinstance(error, dict) and "reason" in error:
            try:
                reason = RejectReason(error["reason"])
            except ValueError:  # a plain 404 (the call is gone) or a conflict outside admission
                reason = RejectReason.UNKNOWN_CALL if status == 404 else RejectReason.INVALID_REQUEST
            return Rejected(call_id, reason, str(error.get("message", error.get("detail", ""))))
        raise ControllerError(f"HTTP {status}: {body}")

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            connection = self._local.connection = cls(self._host, self._port, timeout=self._timeout)
        return connection

    def _call(self, method: str, path: str, payload: Any) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        for attempt in (0, 1):                      # one retry on a stale keep-alive connection
            connection = self._connection()
            try:
                connection.request(method, self._prefix + path, body=data, headers=headers)
                response = connection.getresponse()
                raw = response.read()
                break
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                self._local.connection = None
                if attempt:
                    raise ControllerError(f"{method} {path}: {error}") from error
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = raw.decode("utf-8", "replace")
        return response.status, body


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")
