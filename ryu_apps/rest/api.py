"""REST API v1 under ``/mam/v1``: reservations, calls and the topology they ride on.

A plain WSGI callable (webob) so it runs under the framework's hub (`compat.serve_wsgi`),
under any WSGI server, or in-process in tests. Every answer is JSON (metrics excepted);
every error is ``{"error": {status, reason, message, field?}}`` with the right status.
Mutating requests need ``Authorization: Bearer <api.token>`` when a token is configured.
"""

from __future__ import annotations

import datetime

import base64
import hmac
import logging
import re
from importlib import resources
from typing import Any, Callable

from webob import Request, Response

from ..config import ApiConfig
from ..core import limits
from ..core.admission import AdmissionRequest, Admitted, Decision, RejectReason, ServiceLevel
from ..core.cdr import MemoryCdrStore, call_record, usage_report
from ..core.autosize import Autosize
from ..core.demand import ResizeRecord
from ..core.errors import MamError
from ..core.pools import Keep
from ..core.schedule import ScheduleEntry, parse_schedule
from ..core.manager import MediaAggregationManager
from ..core.serialize import aggregate_to_dict, call_to_dict
from ..events import EventHub
from ..metrics import Metrics
from ..records import CdrRecorder
from ..service import MamService
from . import body as fields
from . import records as cdrs
from .errors import HttpError, json_response
from .request import ApiRequest

log = logging.getLogger(__name__)
PREFIX = "/mam/v1"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# HTTP clients that can only GET and POST (Kamailio 5.6's http_client) send POST with this header,
# or with ?_method= where they cannot set headers (its persistent connections, http_connect)
METHOD_OVERRIDE = "X-HTTP-Method-Override"
RETRY_AFTER_S = 1     # the ledger was unavailable: nothing changed, ask again

# How a rejected admission is answered: the call cannot be carried (409) or the request
# names something the controller cannot carry at all (422), or the call is unknown (404).
REJECT_STATUS = {
    RejectReason.POOL_FULL: 409,
    RejectReason.NO_AGGREGATE: 409,
    RejectReason.PATH_DOWN: 409,
    RejectReason.CODEC_NOT_ALLOWED: 422,
    RejectReason.UNKNOWN_COMMUNITY: 422,
    RejectReason.INVALID_REQUEST: 422,
    RejectReason.UNKNOWN_CALL: 404,
    RejectReason.STORE_UNAVAILABLE: 503,     # nothing was admitted; try again (Retry-After)
    RejectReason.CONTENDED: 503,             # the same: the store answered, other controllers came first
}

Handler = Callable[[Request, dict[str, str]], Response]
CONSOLE_TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}


class RestApi:
    def __init__(self, service: MamService, config: ApiConfig, metrics: Metrics | None = None,
                 records: CdrRecorder | None = None, events: EventHub | None = None) -> None:
        self.service, self.config = service, config
        self.metrics = metrics if metrics is not None else Metrics(service)
        if records is None:          # in-process (tests, embedding): records kept in memory
            records = CdrRecorder(MemoryCdrStore(), clock=service.clock)
            service.watch(records)
        self.records = records
        if events is None:
            events = EventHub()
            service.watch(events)
        self.events = events
        self.routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = []
        route = self._route
        route("", GET=self.index)
        route("/communities", GET=self.list_communities)
        route("/communities/lookup", GET=self.lookup_community)
        route("/communities/{name}", GET=self.get_community)
        route("/topology", GET=self.topology)
        route("/aggregates", GET=self.list_aggregates, POST=self.create_aggregate)
        route("/aggregates/{id}/reoptimize", POST=self.reoptimize_aggregate)
        route("/aggregates/{id}", GET=self.get_aggregate, PATCH=self.resize_aggregate,
              DELETE=self.delete_aggregate)
        route("/calls", GET=self.list_calls, POST=self.admit_call)
        # SIP Call-IDs may hold '/', which WSGI servers hand over decoded: call ids match greedily
        route("/calls/{id+}/media", PUT=self.attach_media)
        route("/calls/{id+}", GET=self.get_call, PATCH=self.modify_call, DELETE=self.release_call)
        route("/stats", GET=self.stats)
        route("/cdrs", GET=self.list_cdrs)
        route("/reports/usage", GET=self.usage_report)
        route("/events", GET=self.event_stream)
        route("/metrics", GET=self.prometheus)
        self.routes.append((re.compile(r"/metrics\Z"), {"GET": self.prometheus}))
        self.routes.append((re.compile(r"/ui/?\Z"), {"GET": self.console}))
        self.routes.append((re.compile(r"/ui/(?P<file>[^/]+)\Z"), {"GET": self.console}))

    def _route(self, template: str, **handlers: Handler) -> None:
        pattern = "".join(
            f"(?P<{part[1:-2]}>.+)" if part.endswith("+}") else f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{")
            else re.escape(part) for part in re.split(r"(\{\w+\+?\})", PREFIX + template) if part)
        # \Z, not $ (which also matches before a final newline), and ids may hold any character
        self.routes.append((re.compile(f"{pattern}/?\\Z", re.S), handlers))

    # --- WSGI ---------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = ApiRequest(environ)
        try:
            response = self.dispatch(request)
        except HttpError as error:
            response = error.response()
        except MamError as error:
            headers = {"Retry-After": str(RETRY_AFTER_S)} if error.status == 503 else None
            response = HttpError(error.status, error.message, field=error.field, headers=headers).response()
        except UnicodeDecodeError:  # a percent-escaped path or query that is not UTF-8
            response = HttpError(400, "the path or query string is not valid UTF-8").response()
        except Exception:  # never a stack trace on the wire, never a 200 on failure
            log.exception("%s %s failed", request.method, request.path)
            response = HttpError(500, "internal error; see the controller log").response()
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path_info
        override = (request.headers.get(METHOD_OVERRIDE) or request.GET.get("_method")) \
            if request.method == "POST" else None
        if override is not None:
            if override.strip().upper() not in ("PUT", "PATCH", "DELETE"):
                raise HttpError(400, "a POST may stand for PUT, PATCH or DELETE only", field=METHOD_OVERRIDE)
            request.method = override.strip().upper()
        allowed: set[str] = set()
        for pattern, handlers in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            handler = handlers.get(request.method) or (handlers.get("GET") if request.method == "HEAD" else None)
            if handler is None:  # another route may still match: GET /calls/x/media is the call 'x/media'
                allowed.update(handlers)
                continue
            if request.method in MUTATING:
                self._authorise(request)
            elif self.config.read_token and handler != self.console:
                self._authorise_read(request)
            return handler(request, match.groupdict())
        if allowed:
            methods = ", ".join(sorted(allowed))
            raise HttpError(405, f"{request.method} not allowed on {path}; use {methods}", headers={"Allow": methods})
        raise HttpError(404, f"no resource {path}; the API lives under {PREFIX}")

    def _authorise(self, request: Request) -> None:
        token = self.config.token
        if not token:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="mam"'}
        if scheme.lower() == "basic" and given:   # user:token, for clients that only do URL credentials
            try:
                user, colon, password = base64.b64decode(given.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                colon = ""
            if colon:
                scheme, given = "bearer", password
        if scheme.lower() != "bearer" or not given:
            raise HttpError(401, "this request changes state: send Authorization: Bearer <api.token>",
                            headers=challenge)
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HttpError(403, "bearer token not accepted", headers=challenge)

    def _authorise_read(self, request: Request) -> None:
        """With ``api.read_token`` set, reads need it (or ``api.token``): as a bearer token,
        or for the event stream (EventSource sends no headers) as ``?access_token=``."""
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if not (scheme.lower() == "bearer" and given) and request.path_info.rstrip("/") == f"{PREFIX}/events":
            scheme, given = "bearer", request.GET.get("access_token", "")
        challenge = {"WWW-Authenticate": 'Bearer realm="mam"'}
        if scheme.lower() != "bearer" or not given:
            raise HttpError(401, "reading needs Authorization: Bearer <api.read_token>", headers=challenge)
        accepted = [t for t in (self.config.read_token, self.config.token) if t]
        if not any(hmac.compare_digest(given.strip().encode(), t.encode()) for t in accepted):
            raise HttpError(403, "bearer token not accepted", headers=challenge)

    def _body(self, request: Request) -> dict[str, Any]:
        return fields.read_json(request, self.config.max_body_bytes)

    # --- resources ------------------------------------------------------------------------

    def index(self, request: Request, _: dict[str, str]) -> Response:
        return json_response({"version": "v1", "resources": [
            f"{PREFIX}/communities", f"{PREFIX}/topology", f"{PREFIX}/aggregates", f"{PREFIX}/calls",
            f"{PREFIX}/stats", f"{PREFIX}/metrics", f"{PREFIX}/cdrs", f"{PREFIX}/reports/usage",
            f"{PREFIX}/events"]})

    def list_communities(self, request: Request, _: dict[str, str]) -> Response:
        topology = self.service.manager.topology
        return json_response({"communities": [_community(c) for c in topology.communities]})

    def get_community(self, request: Request, params: dict[str, str]) -> Response:
        return json_response(_community(self.service.manager.topology.community(params["name"])))

    def lookup_community(self, request: Request, _: dict[str, str]) -> Response:
        domain = request.GET.get("domain") or None
        address = request.GET.get("address") or None
        number = request.GET.get("number") or None
        found = self.service.community_of(domain, address) if domain or address else None   # none asked: null
        if found is None and number is not None:      # a dialled E.164 number (H.323): e164_prefixes
            community = self.service.read(lambda m: m.topology.community_of_number(number))
            found = None if community is None else community.name
        return json_response({"community": found})

    def topology(self, request: Request, _: dict[str, str]) -> Response:
        def snapshot(manager: MediaAggregationManager) -> dict[str, Any]:
            survey = self.service.survey
            conditions = survey.conditions()
            reserved = manager.link_reserved()
            links = []
            for link in manager.topology.links:
                condition = conditions[link]
                problems = list(condition.problems)
                directions = []
                for here, there in link.hops():
                    used = reserved.get((here, there), 0)
                    allowed = manager.link_reservable((here, there))
                    if used > allowed:
                        problems.append(f"{here}->{there} reserves {used} kbit/s, more than the {allowed} it may "
                                        "now: shrink or move the aggregates over it")
                    free = 0 if condition.state.faulty else max(0, allowed - used)
                    directions.append({"from": here, "to": there, "reserved_kbps": used, "free_kbps": free})
                links.append({"a": link.a, "a_port": link.a_port, "b": link.b, "b_port": link.b_port,
                              "capacity_kbps": link.capacity_kbps, "reservable_kbps": link.reservable_kbps,
                              "reservable_now_kbps": condition.reservable_kbps, "speed_kbps": condition.speed_kbps,
                              "state": condition.state.value, "detail": condition.detail, "problems": problems,
                              "directions": directions})
            unconfigured = [{"a": a[0], "a_port": a[1], "b": b[0], "b_port": b[1]} for a, b in survey.unconfigured()]
            return {"switches": [{"name": s.name, "dpid": s.dpid, "connected": survey.described(s.name)}
                                 for s in manager.topology.switches],
                    "links": links,
                    "discovery": {"enabled": survey.discovery, "unconfigured_links": unconfigured}}
        return json_response(self.service.read(snapshot))

    # aggregates

    def list_aggregates(self, request: Request, _: dict[str, str]) -> Response:
        return json_response({"aggregates": self.service.read(
            lambda m: [_aggregate(m, a.id, detail=False) for a in m.aggregates()])})

    def get_aggregate(self, request: Request, params: dict[str, str]) -> Response:
        return json_response(self.service.read(lambda m: _aggregate(m, params["id"], detail=True)))

    def create_aggregate(self, request: Request, _: dict[str, str]) -> Response:
        body = fields.Fields(self._body(request))
        aggregate_id = body.text("id", max_length=limits.ID_LENGTH)
        if not re.fullmatch(limits.ID_PATTERN, aggregate_id):
            raise HttpError(400, "letters, digits, '.', '_' and '-' only", field="id")
        communities = body.get("communities", list)
        if len(communities) != 2 or not all(isinstance(c, str) and c for c in communities):
            raise HttpError(400, "must be a list of two community names", field="communities")
        autosize = _autosize(body.get("autosize", dict, None))
        schedule = _schedule(body.get("schedule", list, None)) or ()
        size = body.int("size_kbps", *limits.SIZE_KBPS, ... if autosize is None else autosize.min_kbps)
        dscp = body.int("dscp", *limits.DSCP, 46)
        priority = body.int("priority", *limits.PRIORITY, 0)
        levels_raw = body.get("levels", list, None)
        levels = None if levels_raw is None else [fields.level(v, f"levels[{i}]") for i, v in enumerate(levels_raw)]
        if levels is not None and not levels:
            raise HttpError(400, "name at least one level of service", field="levels")
        preemption = body.get("preemption", bool, False)
        path_raw = body.get("path", list, None)
        if path_raw is not None and not all(isinstance(s, str) for s in path_raw):
            raise HttpError(400, "must be a list of switch names", field="path")
        body.done()
        for i, name in enumerate(communities):
            if not self.service.manager.topology.has_community(name):
                raise HttpError(422, f"no community {name!r}", field=f"communities[{i}]")
        options: dict[str, Any] = {"dscp": dscp, "priority": priority, "preemption": preemption, "path": path_raw,
                                   "autosize": autosize, "schedule": schedule}
        if levels is not None:
            options["levels"] = frozenset(levels)
        aggregate = self.service.create_aggregate(aggregate_id, communities[0], communities[1], size, **options)
        response = json_response(self.service.read(lambda m: _aggregate(m, aggregate.id, detail=True)), 201)
        response.location = f"{PREFIX}/aggregates/{aggregate.id}"
        return response

    def resize_aggregate(self, request: Request, params: dict[str, str]) -> Response:
        raw = self._body(request)
        body = fields.Fields(raw)
        size = body.int("size_kbps", *limits.SIZE_KBPS, None)
        autosize: Autosize | None | type[Keep] = Keep
        if "autosize" in raw:
            autosize = _autosize(body.get("autosize", dict, None))
        schedule = _schedule(body.get("schedule", list, None))
        path = body.get("path", list, None)
        if path is not None and (not path or not all(isinstance(name, str) and name for name in path)):
            raise HttpError(400, "must be a list of switch names", field="path")
        body.done()
        if size is None and autosize is Keep and schedule is None and path is None:
            raise HttpError(400, "give size_kbps, autosize (an object, or null to stop), schedule or path",
                            field="size_kbps")
        aggregate = self.service.change_aggregate(params["id"], size, autosize, schedule, path)
        return json_response(self.service.read(lambda m: _aggregate(m, aggregate.id, detail=True)))

    def reoptimize_aggregate(self, request: Request, params: dict[str, str]) -> Response:
        before = self.service.read(lambda m: m.aggregate(params["id"]).path)
        aggregate = self.service.reoptimize_aggregate(params["id"])
        body = self.service.read(lambda m: _aggregate(m, aggregate.id, detail=True))
        body["moved"] = aggregate.path != before
        return json_response(body)

    def delete_aggregate(self, request: Request, params: dict[str, str]) -> Response:
        force = _flag(request, "force")
        self.service.delete_aggregate(params["id"], force=force)
        return Response(status=204)

    # calls

    def list_calls(self, request: Request, _: dict[str, str]) -> Response:
        aggregate = request.GET.get("aggregate") or None
        protocol_text = request.GET.get("protocol")               # e.g. a SIP proxy's own calls
        protocol = None if protocol_text is None else fields.protocol(protocol_text, "protocol")

        def query(manager: MediaAggregationManager) -> list[dict[str, Any]]:
            if aggregate is not None:
                manager.aggregate(aggregate)  # 404 for an unknown pool rather than an empty list
            return [call_to_dict(c) for c in manager.calls(aggregate) if protocol in (None, c.protocol)]
        return json_response({"calls": self.service.read(query)})

    def get_call(self, request: Request, params: dict[str, str]) -> Response:
        return json_response(call_to_dict(self.service.read(lambda m: m.call(params["id"]))))

    def admit_call(self, request: Request, _: dict[str, str]) -> Response:
        raw = self._body(request)
        if {"caller", "callee", "sdp"} & set(raw):
            return self._admit_parties(raw)
        body = fields.Fields(raw)
        call_id = body.text("call_id", max_length=limits.CALL_ID_LENGTH)
        caller = body.text("caller_community", max_length=limits.ID_LENGTH)
        callee = body.text("callee_community", max_length=limits.ID_LENGTH)
        level = fields.level(body.get("level", str, "voice"), "level")
        protocol = fields.protocol(body.get("protocol", str, "rest"), "protocol")
        media = fields.media(body.get("media", dict), "media")
        caller_media = body.get("caller_media", dict, None)
        callee_media = body.get("callee_media", dict, None)
        if (caller_media is None) != (callee_media is None):
            raise HttpError(400, "give both caller_media and callee_media, or neither",
                            field="callee_media" if callee_media is None else "caller_media")
        endpoints = None if caller_media is None else (fields.endpoint(caller_media, "caller_media"),
                                                       fields.endpoint(callee_media, "callee_media"))
        body.done()
        decision = self.service.admit(AdmissionRequest(call_id, caller, callee, media, level, protocol), endpoints)
        return self._admitted(call_id, decision)

    def _admit_parties(self, raw: dict[str, Any]) -> Response:
        """A SIP server's form (docs/kamailio.md): the parties as it sees them and the raw SDP offer."""
        body = fields.Fields(raw)
        call_id = body.text("call_id", max_length=limits.CALL_ID_LENGTH)
        parties = fields.party(body.get("caller", dict), "caller"), fields.party(body.get("callee", dict), "callee")
        offer_raw, media_raw = body.get("sdp", str, None), body.get("media", dict, None)
        if (offer_raw is None) == (media_raw is None):
            raise HttpError(400, "give sdp (the offer) or, for an INVITE without SDP, media", field="sdp")
        offer = None if offer_raw is None else fields.sdp(offer_raw, "sdp")
        media = fields.media(media_raw, "media") if offer is None else offer.spec
        level_raw = body.get("level", str, None)
        protocol = fields.protocol(body.get("protocol", str, "sip"), "protocol")
        body.done()
        level = fields.level(level_raw, "level") if level_raw is not None else (
            ServiceLevel.VOICE_BAND_DATA if offer is not None and offer.voice_band_data else ServiceLevel.VOICE)
        communities = []
        for name, (domain, address) in zip(("caller", "callee"), parties):
            community = self.service.community_of(domain, address)
            if community is None:
                raise HttpError(422, f"the {name} ({domain or address}) is in no community", field=name,
                                reason=RejectReason.UNKNOWN_COMMUNITY.value)
            communities.append(community)
        if communities[0] == communities[1]:
            return Response(status=204)                 # within one community: nothing to reserve
        decision = self.service.admit(AdmissionRequest(call_id, communities[0], communities[1], media, level,
                                                       protocol))
        return self._admitted(call_id, decision)

    def _admitted(self, call_id: str, decision: Decision) -> Response:
        if not isinstance(decision, Admitted):
            return self._rejection(decision)
        call = self.service.read(lambda m: m.call(call_id))
        response = json_response({"call": call_to_dict(call), "preempted": list(decision.preempted)}, 201)
        response.location = f"{PREFIX}/calls/{call_id}"
        return response

    def modify_call(self, request: Request, params: dict[str, str]) -> Response:
        body = fields.Fields(self._body(request))
        media = fields.media(body.get("media", dict), "media")
        body.done()
        decision = self.service.modify(params["id"], media)
        if not isinstance(decision, Admitted):
            return self._rejection(decision)
        return json_response({"call": call_to_dict(self.service.read(lambda m: m.call(params["id"])))})

    def attach_media(self, request: Request, params: dict[str, str]) -> Response:
        raw = self._body(request)
        if {"offer", "answer"} & set(raw):
            return self._attach_sdp(params["id"], raw)
        body = fields.Fields(raw)
        caller = fields.endpoint(body.get("caller", dict), "caller")
        callee = fields.endpoint(body.get("callee", dict), "callee")
        body.done()
        call = self.service.attach_media(params["id"], caller, callee)
        return json_response({"call": call_to_dict(call)})

    def _attach_sdp(self, call_id: str, raw: dict[str, Any]) -> Response:
        """The caller's SDP offer and the callee's answer: their addresses, and the codec the answer chose."""
        body = fields.Fields(raw)
        offer, answer = fields.sdp(body.get("offer", str), "offer"), fields.sdp(body.get("answer", str), "answer")
        body.done()
        for name, media in (("offer", offer), ("answer", answer)):
            if media.endpoint is None:
                raise HttpError(400, "no media address (c= 0.0.0.0, inactive or port 0)", field=name)
        admitted = self.service.read(lambda m: m.call(call_id).media)       # 404 for an unknown call
        if answer.spec.codec != admitted.codec:   # the answer chose another offered codec; a refusal keeps the old
            self.service.modify(call_id, answer.spec)
        call = self.service.attach_media(call_id, offer.endpoint, answer.endpoint)  # type: ignore[arg-type]
        return json_response({"call": call_to_dict(call)})

    def release_call(self, request: Request, params: dict[str, str]) -> Response:
        cause = (request.GET.get("cause") or "released via REST")[:64]
        call_id = params["id"]
        released = self.service.release(call_id, cause=cause)
        if released is not None:
            return Response(status=204)
        if self.service.read(lambda m: m.release_pending(call_id)):
            return json_response({"call_id": call_id, "message": "the ledger could not record the release yet; "
                                  "the controller retries it by itself"}, 202)
        raise HttpError(404, f"no call {call_id!r}")

    @staticmethod
    def _rejection(decision: Decision) -> Response:
        assert not isinstance(decision, Admitted)
        status = REJECT_STATUS[decision.reason]
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return HttpError(status, decision.detail, reason=decision.reason.value, headers=headers).response()

    # statistics

    def stats(self, request: Request, _: dict[str, str]) -> Response:
        def snapshot(manager: MediaAggregationManager) -> dict[str, Any]:
            counters = manager.counters
            return {
                "aggregates": len(manager.aggregates()),
                "reserved_kbps": sum(a.size_kbps for a in manager.aggregates()),
                "used_kbps": sum(manager.used_kbps(a.id) for a in manager.aggregates()),
                "calls_active": len(manager.calls()),
                "admitted": counters.admitted,
                "rejected": {reason.value: counters.rejected.get(reason, 0) for reason in RejectReason},
                "released": counters.released,
                "preempted": counters.preempted,
            }
        return json_response(self.service.read(snapshot))

    # call detail records

    def list_cdrs(self, request: Request, _: dict[str, str]) -> Response:
        start, end = cdrs.period(request, self.service.clock())
        community = cdrs.community(request)
        form = cdrs.choice(request, "format", cdrs.FORMATS, "jsonl")
        limit = cdrs.limit(request)
        records = self.records.query(start, end, community, limit=limit)
        if form == "csv":
            response = Response(content_type="text/csv", charset="utf-8", text=cdrs.to_csv(records))
            response.content_disposition = "attachment; filename=cdrs.csv"
        elif form == "jsonl":
            response = Response(content_type="application/x-ndjson", charset="utf-8", text=cdrs.to_jsonl(records))
        else:
            response = json_response({"cdrs": [cdrs.exported(r) for r in records]})
        return response

    def usage_report(self, request: Request, _: dict[str, str]) -> Response:
        now = self.service.clock()
        start, end = cdrs.period(request, now, required=True)
        assert start is not None and end is not None
        records = self.records.query(start, end, overlapping=True)
        live = self.service.read(lambda m: [call_record(c, now, "in-progress", self.records.answered_at(c.call_id))
                                            for c in m.calls() if c.admitted_at < end])
        report = usage_report([*records, *live], start, end)
        return json_response(cdrs.report_to_dict(report))

    # live events

    def event_stream(self, request: Request, _: dict[str, str]) -> Response:
        last_id = None      # the header (EventSource's reconnection) wins over the query (its first connection)
        for name, raw in (("last_event_id", request.GET.get("last_event_id")),
                          ("Last-Event-ID", request.headers.get("Last-Event-ID"))):
            if raw is not None:
                if not re.fullmatch(r"[0-9]{1,18}", raw):
                    raise HttpError(400, f"expected the id of an event (a whole number), got {raw[:40]!r}",
                                    field=name)
                last_id = int(raw)
        # eventlet.wsgi gathers 4 KiB before writing: each event must go out as it happens
        request.environ["eventlet.minimum_write_chunk_size"] = 0
        try:
            frames = self.events.stream(last_id)
        except OverflowError as error:
            raise HttpError(503, str(error), headers={"Retry-After": "5"}) from None
        response = Response(content_type="text/event-stream", charset="utf-8", app_iter=frames)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"          # a proxy in front must not buffer the stream
        return response

    # the web console: static files shipped in the package (ryu_apps/ui)

    def console(self, request: Request, params: dict[str, str]) -> Response:
        name = params.get("file") or "index.html"
        if request.path_info.rstrip("/") == "/ui" and not request.path_info.endswith("/"):
            response = Response(status=301)
            response.location = "/ui/"
            return response
        kind = CONSOLE_TYPES.get(name.rpartition(".")[2])
        if kind is None or not re.fullmatch(r"[A-Za-z0-9_-]+\.[a-z]+", name):
            raise HttpError(404, f"no console file {name!r}")
        try:
            body = (resources.files("ryu_apps") / "ui" / name).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise HttpError(404, f"no console file {name!r}") from None
        response = Response(body=body, content_type=kind, charset="utf-8")
        response.headers["Cache-Control"] = "no-cache"
        # everything comes from here: no CDN, no inline script
        response.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; "
                                                       "style-src 'self'; frame-ancestors 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def prometheus(self, request: Request, _: dict[str, str]) -> Response:
        response = Response(content_type="text/plain", charset="utf-8")
        response.content_type_params = {"version": "0.0.4", "charset": "utf-8"}
        response.text = self.metrics.render()
        return response


def make_wsgi_app(service: MamService, config: ApiConfig | None = None, metrics: Metrics | None = None,
                  records: CdrRecorder | None = None, events: EventHub | None = None) -> RestApi:
    return RestApi(service, config or ApiConfig(), metrics, records, events)


# --- representations ----------------------------------------------------------------------

def _community(community: Any) -> dict[str, Any]:
    return {"name": community.name, "edge": community.edge, "access_ports": list(community.access_ports),
            "prefixes": [str(p) for p in community.prefixes], "domains": list(community.domains)}


def _aggregate(manager: MediaAggregationManager, aggregate_id: str, *, detail: bool) -> dict[str, Any]:
    aggregate = manager.aggregate(aggregate_id)
    used = manager.used_kbps(aggregate_id)
    body = aggregate_to_dict(aggregate)
    body.update(used_kbps=used, free_kbps=aggregate.size_kbps - used, calls=len(manager.calls(aggregate_id)),
                target_kbps=aggregate.wanted_kbps, last_resize=_resize_record(manager.last_resize(aggregate_id)))
    if detail:
        reserved = manager.link_reserved()
        hops = []
        for here, there in zip(aggregate.path, aggregate.path[1:]):
            link = manager.topology.link(here, there)
            hops.append({"from": here, "to": there, "capacity_kbps": link.capacity_kbps,
                         "reservable_kbps": link.reservable_kbps,
                         "reserved_kbps": max(reserved.get((here, there), 0), reserved.get((there, here), 0)),
                         "this_aggregate_kbps": aggregate.size_kbps})
        body["links"] = hops
    return body


def _resize_record(record: ResizeRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {"at": _utc(record.at), "from_kbps": record.from_kbps, "to_kbps": record.to_kbps,
            "direction": record.direction, "reason": record.reason,
            "from_path": list(record.from_path), "to_path": list(record.to_path)}


def _utc(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).isoformat(timespec="milliseconds")


def _autosize(value: dict[str, Any] | None) -> Autosize | None:
    """An autosize object from a request body (errors name the field, as the config's do)."""
    return None if value is None else Autosize.from_dict(value)


def _schedule(value: list[Any] | None) -> tuple[ScheduleEntry, ...] | None:
    return None if value is None else parse_schedule(value)


def _flag(request: Request, name: str) -> bool:
    value = request.GET.get(name, "false").lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no", ""):
        return False
    raise HttpError(400, f"expected true or false, got {value!r}", field=name)
