"""docs/openapi.yaml is true.

* it is a valid OpenAPI 3.0 document, and every route the app serves is documented with the
  same methods, and every documented path is served;
* its conventions hold: mutations carry the bearer scheme and document 401/403, bodies
  document 400/413/415, every error answer is the error envelope;
* a scripted walk sends one request for every documented (operation, status) pair, so every
  documented status is reachable, and every answer matches the document (status, content
  type, headers, body schema) — the request examples in the document are among them;
* schemathesis generates requests (valid and invalid) against the in-process app: never a
  5xx, only documented statuses, schema-conformant bodies, invalid data rejected.

schemathesis is a hard requirement (setup.cfg, extra ``test``): nothing here is skipped.
Everything runs in process (WSGI); any socket connection fails the test.
"""

from __future__ import annotations

import json

import re
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from ryu_apps.config import ApiConfig, build_manager, parse_config
from ryu_apps.core.errors import StoreUnavailable
from ryu_apps.core.survey import PortInfo
from ryu_apps.events import EventHub, ThreadWakeup
from ryu_apps.rest.api import MUTATING, REJECT_STATUS, RestApi, make_wsgi_app
from ryu_apps.service import MamService

from test_rest_api import config

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
TOKEN = "openapi-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
METHODS = {"get", "post", "put", "patch", "delete"}
RAW = yaml.safe_load(DOC.read_text())
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]


def make_app(max_clients: int = 200) -> RestApi:
    # event streams end at once here (the walk and the generated requests read whole answers)
    events = EventHub(max_stream_s=0, wakeup=ThreadWakeup, max_clients=max_clients)
    service = MamService(build_manager(parse_config(config(3000))), clock=lambda: 0.0)
    service.watch(events)
    return make_wsgi_app(service, ApiConfig(token=TOKEN), events=events)


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in RAW["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method.upper(), operation


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = RAW
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"test_openapi must stay in process; tried to connect to {address}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


# --- the document and the routing table ------------------------------------------------------

def test_the_document_is_valid_openapi_3_0() -> None:
    assert RAW["openapi"].startswith("3.0.")
    schemathesis.openapi.from_path(str(DOC)).validate()   # against the OpenAPI 3.0 meta-schema
    ids = [operation["operationId"] for _, _, operation in operations()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def documented() -> dict[str, set[str]]:
    return {path: {m.upper() for m in item if m in METHODS} for path, item in RAW["paths"].items()}


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    app = make_app()
    served: list[tuple[re.Pattern[str], set[str]]] = [(p, set(h)) for p, h in app.routes]
    docs = documented()
    for path, methods in docs.items():
        sample = re.sub(r"\{\w+\}", "x", path)
        matches = [handlers for pattern, handlers in served if pattern.match(sample)]
        assert matches and matches[0] == methods, f"{path}: documented {methods}, served {matches[:1]}"
    for pattern, methods in served:
        assert any(pattern.match(re.sub(r"\{\w+\}", "x", path)) and docs[path] == methods for path in docs), \
            f"route {pattern.pattern} ({methods}) is not in {DOC.name}"


def test_conventions_hold_for_every_operation() -> None:
    assert RAW["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    for path, method, operation in operations():
        where = f"{method} {path}"
        statuses = set(operation["responses"])
        for name in re.findall(r"\{(\w+)\}", path):
            params = RAW["paths"][path].get("parameters", []) + operation.get("parameters", [])
            assert any(p["in"] == "path" and p["name"] == name and p["required"] for p in params), where
        if method in MUTATING:
            assert operation.get("security") == [{"bearer": []}], f"{where}: mutations need the bearer scheme"
            assert {"401", "403"} <= statuses, where
        else:
            assert "security" not in operation and {"401", "403"}.isdisjoint(statuses), f"{where}: reading is open"
        if "requestBody" in operation:
            body = operation["requestBody"]
            assert body["required"] and set(body["content"]) == {"application/json"}, where
            schema = resolve(body["content"]["application/json"]["schema"])
            for form in [resolve(f) for f in schema.get("oneOf", [schema])]:
                assert form.get("additionalProperties") is False, f"{where}: unknown fields are refused"
            assert {"400", "413", "415"} <= statuses, where
        for status, response in operation["responses"].items():
            response = resolve(response)
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, \
                    f"{where} {status}: errors use the envelope"
    admit = RAW["paths"]["/mam/v1/calls"]["post"]["responses"]
    modify = RAW["paths"]["/mam/v1/calls/{id}"]["patch"]["responses"]
    for reason, status in REJECT_STATUS.items():  # every way an admission is refused is documented
        assert str(status) in (admit if reason.value != "unknown-call" else modify), reason


# --- every documented status, reached and checked against the document -------------------------

def example(path: str, method: str) -> dict[str, Any]:
    return RAW["paths"][path][method]["requestBody"]["content"]["application/json"]["example"]


CALL = {"call_id": "a/b@pbx", "caller_community": "site-a", "callee_community": "site-b",
        "media": {"codec": "pcmu"}}
ENDPOINTS = {"caller": {"ip": "10.1.0.1", "port": 4000}, "callee": {"ip": "10.2.0.1", "port": 5000}}
OFFER = "v=0\r\nc=IN IP4 10.1.0.1\r\nm=audio 4000 RTP/AVP 0\r\n"
SIP_CALL = {"call_id": "sip/1@pbx", "caller": {"domain": "a.example", "address": "127.0.0.1"},
            "callee": {"domain": "b.example"}, "sdp": OFFER}
TOO_LARGE = {"pad": "x" * 70000}
NOT_JSON: dict[str, Any] = {"body": "size_kbps=5", "media_type": "text/plain"}

# (path template, method, status, request); requests run in this order against one app
WALK: list[tuple[str, str, int, dict[str, Any]]] = [
    ("/mam/v1", "GET", 200, {}),
    ("/mam/v1/communities", "GET", 200, {}),
    ("/mam/v1/communities/lookup", "GET", 200, {"query": {"domain": "a.example", "address": "10.1.2.3"}}),
    ("/mam/v1/communities/lookup", "GET", 200, {}),
    ("/mam/v1/communities/{name}", "GET", 200, {"path": {"name": "site-b"}}),
    ("/mam/v1/communities/{name}", "GET", 404, {"path": {"name": "mars"}}),
    ("/mam/v1/topology", "GET", 200, {}),
    ("/mam/v1/aggregates", "GET", 200, {}),
    # the document's own example reserves the last 2000 kbit/s of the 5000 reservable
    ("/mam/v1/aggregates", "POST", 201, {"body": example("/mam/v1/aggregates", "post")}),
    ("/mam/v1/aggregates", "POST", 400, {"body": {"id": "x", "communities": ["site-a", "site-b"], "size_kbps": "1"}}),
    ("/mam/v1/aggregates", "POST", 401, {"auth": None, "body": {"id": "x"}}),
    ("/mam/v1/aggregates", "POST", 403, {"auth": "wrong", "body": {"id": "x"}}),
    ("/mam/v1/aggregates", "POST", 409, {"body": {"id": "x", "communities": ["site-a", "site-b"], "size_kbps": 1}}),
    ("/mam/v1/aggregates", "POST", 413, {"body": TOO_LARGE}),
    ("/mam/v1/aggregates", "POST", 415, NOT_JSON),
    ("/mam/v1/aggregates", "POST", 422, {"body": {"id": "x", "communities": ["site-a", "mars"], "size_kbps": 1}}),
    ("/mam/v1/aggregates/{id}", "GET", 200, {"path": {"id": "site-a--site-b"}}),
    ("/mam/v1/aggregates/{id}", "GET", 404, {"path": {"id": "nope"}}),
    ("/mam/v1/aggregates/{id}", "PATCH", 200, {"path": {"id": "site-a--site-b"}, "body": {"size_kbps": 1500}}),
    ("/mam/v1/aggregates/{id}", "PATCH", 400, {"path": {"id": "site-a--site-b"}, "body": {"size_kbps": 0}}),
    ("/mam/v1/aggregates/{id}", "PATCH", 401, {"path": {"id": "site-a--site-b"}, "auth": None, "body": {}}),
    ("/mam/v1/aggregates/{id}", "PATCH", 403, {"path": {"id": "site-a--site-b"}, "auth": "wrong", "body": {}}),
    ("/mam/v1/aggregates/{id}", "PATCH", 404, {"path": {"id": "nope"}, "body": {"size_kbps": 1}}),
    ("/mam/v1/aggregates/{id}", "PATCH", 409, {"path": {"id": "site-a--site-b"}, "body": {"size_kbps": 2001}}),
    ("/mam/v1/aggregates/{id}", "PATCH", 413, {"path": {"id": "site-a--site-b"}, "body": TOO_LARGE}),
    ("/mam/v1/aggregates/{id}", "PATCH", 415, {"path": {"id": "site-a--site-b"}, **NOT_JSON}),
    ("/mam/v1/aggregates/{id}", "PATCH", 200, {"path": {"id": "a-b"}, "body": {
        "autosize": {"min_kbps": 500, "max_kbps": 3000, "step_kbps": 500}, "schedule": [{"at": "08:00", "size_kbps": 3000}]}}),
    ("/mam/v1/aggregates/{id}", "PATCH", 400, {"path": {"id": "a-b"}, "body": {
        "autosize": {"min_kbps": 3000, "max_kbps": 500, "step_kbps": 500}}}),
    ("/mam/v1/aggregates/{id}", "PATCH", 200, {"path": {"id": "a-b"}, "body": {"autosize": None, "schedule": []}}),
    ("/mam/v1/aggregates/{id}", "PATCH", 422, {"path": {"id": "a-b"}, "body": {"path": ["s1", "s3"]}}),
    ("/mam/v1/aggregates/{id}/reoptimize", "POST", 200, {"path": {"id": "a-b"}}),
    ("/mam/v1/aggregates/{id}/reoptimize", "POST", 401, {"path": {"id": "a-b"}, "auth": None}),
    ("/mam/v1/aggregates/{id}/reoptimize", "POST", 403, {"path": {"id": "a-b"}, "auth": "wrong"}),
    ("/mam/v1/aggregates/{id}/reoptimize", "POST", 404, {"path": {"id": "nope"}}),
    ("/mam/v1/aggregates/{id}/reoptimize", "POST", 409, {"path": {"id": "site-a--site-b"}}),   # a pinned path
    ("/mam/v1/aggregates/{id}/reoptimize", "POST", 422, {"path": {"id": "a-b"}, "port": ("s2", 11)}),
    ("/mam/v1/calls", "GET", 200, {"query": {"aggregate": "a-b"}}),
    ("/mam/v1/calls", "GET", 404, {"query": {"aggregate": "nope"}}),
    ("/mam/v1/calls", "GET", 200, {"query": {"protocol": "sip"}}),
    ("/mam/v1/calls", "GET", 400, {"query": {"protocol": "smtp"}}),
    ("/mam/v1/calls", "POST", 201, {"body": example("/mam/v1/calls", "post")}),
    ("/mam/v1/calls", "POST", 201, {"body": CALL}),
    ("/mam/v1/calls", "POST", 201, {"body": SIP_CALL}),
    ("/mam/v1/calls", "POST", 204, {"body": {**SIP_CALL, "callee": {"address": "10.1.0.7"}}}),
    ("/mam/v1/calls", "POST", 400, {"body": {**CALL, "call_id": 5}}),
    ("/mam/v1/calls", "POST", 401, {"auth": None, "body": CALL}),
    ("/mam/v1/calls", "POST", 403, {"auth": "wrong", "body": CALL}),
    ("/mam/v1/calls", "POST", 409, {"body": {**CALL, "call_id": "huge", "media": {"codec": "pcmu",
                                                                                  "explicit_kbps": 10000}}}),
    ("/mam/v1/calls", "POST", 413, {"body": TOO_LARGE}),
    ("/mam/v1/calls", "POST", 415, NOT_JSON),
    ("/mam/v1/calls", "POST", 422, {"body": {**CALL, "call_id": "wide", "media": {"codec": "g722"}}}),
    # s2 reports the port toward s3 down: the only aggregate's path is broken until it comes back
    ("/mam/v1/calls", "POST", 409, {"body": {**CALL, "call_id": "cut"}, "port": ("s2", 11),
                                    "reason": "path-down"}),
    ("/mam/v1/calls/{id}/media", "PUT", 200, {"path": {"id": "a/b@pbx"}, "body": ENDPOINTS}),
    ("/mam/v1/calls/{id}/media", "PUT", 200, {"path": {"id": "sip/1@pbx"},
                                              "body": {"offer": OFFER, "answer": OFFER.replace("10.1.", "10.2.")}}),
    ("/mam/v1/calls/{id}/media", "PUT", 400, {"path": {"id": "a/b@pbx"},
                                              "body": {**ENDPOINTS, "caller": {"ip": "10.1.0.300", "port": 1}}}),
    ("/mam/v1/calls/{id}/media", "PUT", 401, {"path": {"id": "a/b@pbx"}, "auth": None, "body": ENDPOINTS}),
    ("/mam/v1/calls/{id}/media", "PUT", 403, {"path": {"id": "a/b@pbx"}, "auth": "wrong", "body": ENDPOINTS}),
    ("/mam/v1/calls/{id}/media", "PUT", 404, {"path": {"id": "nobody"}, "body": ENDPOINTS}),
    ("/mam/v1/calls/{id}/media", "PUT", 422, {"path": {"id": "a/b@pbx"},     # IPv4 caller, IPv6 callee
                                              "body": {"caller": {"ip": "10.0.1.1", "port": 20000},
                                                       "callee": {"ip": "2001:db8::1", "port": 30000}}}),
    ("/mam/v1/calls/{id}/media", "PUT", 413, {"path": {"id": "a/b@pbx"}, "body": TOO_LARGE}),
    ("/mam/v1/calls/{id}/media", "PUT", 415, {"path": {"id": "a/b@pbx"}, **NOT_JSON}),
    ("/mam/v1/calls/{id}", "GET", 200, {"path": {"id": "a/b@pbx"}}),
    ("/mam/v1/calls/{id}", "GET", 404, {"path": {"id": "nobody"}}),
    ("/mam/v1/calls/{id}", "PATCH", 200, {"path": {"id": "a/b@pbx"}, "body": {"media": {"codec": "g729"}}}),
    ("/mam/v1/calls/{id}", "PATCH", 400, {"path": {"id": "a/b@pbx"}, "body": {"media": {"codec": "g729", "x": 1}}}),
    ("/mam/v1/calls/{id}", "PATCH", 401, {"path": {"id": "a/b@pbx"}, "auth": None, "body": {}}),
    ("/mam/v1/calls/{id}", "PATCH", 403, {"path": {"id": "a/b@pbx"}, "auth": "wrong", "body": {}}),
    ("/mam/v1/calls/{id}", "PATCH", 404, {"path": {"id": "nobody"}, "body": {"media": {"codec": "g729"}}}),
    ("/mam/v1/calls/{id}", "PATCH", 409, {"path": {"id": "a/b@pbx"},
                                          "body": {"media": {"codec": "pcmu", "explicit_kbps": 10000}}}),
    ("/mam/v1/calls/{id}", "PATCH", 413, {"path": {"id": "a/b@pbx"}, "body": TOO_LARGE}),
    ("/mam/v1/calls/{id}", "PATCH", 415, {"path": {"id": "a/b@pbx"}, **NOT_JSON}),
    ("/mam/v1/calls/{id}", "PATCH", 422, {"path": {"id": "a/b@pbx"}, "body": {"media": {"codec": "g722"}}}),
    ("/mam/v1/aggregates/{id}", "DELETE", 400, {"path": {"id": "a-b"}, "query": {"force": "maybe"}}),
    ("/mam/v1/aggregates/{id}", "DELETE", 401, {"path": {"id": "a-b"}, "auth": None}),
    ("/mam/v1/aggregates/{id}", "DELETE", 403, {"path": {"id": "a-b"}, "auth": "wrong"}),
    ("/mam/v1/aggregates/{id}", "DELETE", 404, {"path": {"id": "nope"}}),
    ("/mam/v1/aggregates/{id}", "DELETE", 409, {"path": {"id": "a-b"}}),                 # calls ride on it
    ("/mam/v1/calls/{id}", "DELETE", 401, {"path": {"id": "a/b@pbx"}, "auth": None}),
    ("/mam/v1/calls/{id}", "DELETE", 403, {"path": {"id": "a/b@pbx"}, "auth": "wrong"}),
    ("/mam/v1/calls/{id}", "DELETE", 204, {"path": {"id": "a/b@pbx"}, "query": {"cause": "bye"}}),
    ("/mam/v1/calls/{id}", "DELETE", 404, {"path": {"id": "a/b@pbx"}}),
    # the ledger is down: nothing changes, every mutation says so (a release is queued and retried)
    ("/mam/v1/aggregates", "POST", 503, {"body": {"id": "y", "communities": ["site-a", "site-b"], "size_kbps": 1},
                                         "store_down": True}),
    ("/mam/v1/aggregates/{id}", "PATCH", 503, {"path": {"id": "site-a--site-b"}, "body": {"size_kbps": 1400},
                                               "store_down": True}),
    ("/mam/v1/aggregates/{id}", "DELETE", 503, {"path": {"id": "site-a--site-b"}, "query": {"force": "true"},
                                                "store_down": True}),
    ("/mam/v1/calls", "POST", 503, {"body": {**CALL, "call_id": "down"}, "store_down": True,
                                    "reason": "store-unavailable"}),
    ("/mam/v1/calls/{id}", "PATCH", 503, {"path": {"id": "sip/1@pbx"}, "body": {"media": {"codec": "g729"}},
                                          "store_down": True, "reason": "store-unavailable"}),
    ("/mam/v1/calls/{id}/media", "PUT", 503, {"path": {"id": "sip/1@pbx"}, "body": ENDPOINTS, "store_down": True}),
    ("/mam/v1/calls/{id}", "DELETE", 202, {"path": {"id": "sip/1@pbx"}, "store_down": True}),
    ("/mam/v1/aggregates/{id}", "DELETE", 204, {"path": {"id": "site-a--site-b"}, "query": {"force": "true"}}),
    ("/mam/v1/stats", "GET", 200, {}),
    ("/mam/v1/cdrs", "GET", 200, {"query": {"from": "2026-12-02T10:00:00Z", "format": "csv"}}),
    ("/mam/v1/cdrs", "GET", 200, {}),
    ("/ui/", "GET", 200, {}),
    ("/ui/{file}", "GET", 200, {"path": {"file": "app.js"}}),
    ("/ui/{file}", "GET", 404, {"path": {"file": "passwd"}}),
    ("/mam/v1/events", "GET", 200, {"headers": {"Last-Event-ID": "3"}}),
    ("/mam/v1/events", "GET", 400, {"query": {"last_event_id": "x"}}),
    ("/mam/v1/events", "GET", 503, {"full": True}),
    ("/mam/v1/cdrs", "GET", 400, {"query": {"from": "yesterday"}}),
    ("/mam/v1/reports/usage", "GET", 200, {"query": {"from": "0", "to": "100"}}),
    ("/mam/v1/reports/usage", "GET", 400, {"query": {"from": "100", "to": "0"}}),
    ("/mam/v1/metrics", "GET", 200, {}),
    ("/metrics", "GET", 200, {}),
]


class DownLedger:
    durable = True

    def load(self) -> Any:
        raise AssertionError("not loaded in the walk")

    def commit(self, writes: Any) -> None:
        raise StoreUnavailable("the ledger is down (test)")


def set_port(app: RestApi, switch: str, port: int, live: bool) -> None:
    ports = {10: PortInfo("p10"), 11: PortInfo("p11"), port: PortInfo(f"p{port}", 0, live)}
    app.service.observe(lambda survey: survey.ports_described(switch, ports))
    assert bool(app.service.read(lambda m: m.link_faults())) is not live


def test_every_documented_status_is_reached_and_every_answer_matches_the_document() -> None:
    app = make_app()
    schema = schemathesis.openapi.from_path(str(DOC))
    schema.app = app
    reached: set[tuple[str, str, str]] = set()
    for path, method, status, request in WALK:
        token = request.get("auth", TOKEN)
        kwargs: dict[str, Any] = {"headers": {} if token is None else {"Authorization": f"Bearer {token}"}}
        kwargs["headers"].update(request.get("headers", {}))
        if "path" in request:
            kwargs["path_parameters"] = request["path"]
        if "query" in request:
            kwargs["query"] = request["query"]
        if "body" in request:
            kwargs["body"] = request["body"]
            kwargs["media_type"] = request.get("media_type", "application/json")
        case = schema[path][method].Case(**kwargs)
        if "port" in request:
            set_port(app, *request["port"], live=False)
        ledger = app.service.manager.ledger
        clients = app.events.max_clients
        if request.get("full"):
            app.events.max_clients = 0
        if request.get("store_down"):
            app.service.manager.ledger = DownLedger()
        response = case.call()
        app.service.manager.ledger = ledger
        app.events.max_clients = clients
        if "port" in request:
            set_port(app, *request["port"], live=True)
        assert response.status_code == status, f"{method} {path} {request}: {response.status_code} {response.text}"
        # a 503 is the documented answer while the ledger is down, not a server error
        case.validate_response(response, checks=[c for c in CHECKS if status != 503 or c is not checks.not_a_server_error])
        if "reason" in request:
            assert response.json()["error"]["reason"] == request["reason"], response.text
        reached.add((path, method, str(status)))
    every = {(path, method, status) for path, method, operation in operations() for status in operation["responses"]}
    assert every - reached == set(), "documented but never reached"
    assert reached - every == set(), "reached but not documented"
    # the release the ledger could not record (202) is retried by the core's timer once it is back
    assert app.service.read(lambda m: m.release_pending("sip/1@pbx"))
    app.service.manager.handle_timer(1.0)     # the retry (1 s), before any install deadline (5 s)
    # what is left: the configured pool, carrying the document's example call (G.711, 91 kbit/s)
    assert app.service.read(lambda m: ([a.id for a in m.aggregates()], [c.call_id for c in m.calls()],
                                       m.used_kbps("a-b"))) == (["a-b"], [example("/mam/v1/calls", "post")["call_id"]], 91)


# --- generated requests ------------------------------------------------------------------------

SCHEMA = schemathesis.openapi.from_path(str(DOC))
SCHEMA.app = APP = make_app()


@SCHEMA.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_get_documented_answers_and_never_a_5xx(case: Any) -> None:
    case.call_and_validate(headers=AUTH, checks=[*CHECKS, checks.negative_data_rejection])


def test_generated_requests_reach_the_admission_decision() -> None:
    """Guards the test above against generating nothing useful: generated admission requests get
    through the REST validation to the admission decision (random community names: unknown-community)."""
    schema = schemathesis.openapi.from_path(str(DOC))
    schema.app = app = make_app()
    statuses: list[int] = []

    @given(schema["/mam/v1/calls"]["POST"].as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def admit(case: Any) -> None:
        statuses.append(case.call(headers=AUTH).status_code)
    admit()
    assert len(statuses) >= 20 and all(status < 500 for status in statuses), statuses
    decided = app.service.read(lambda m: m.counters.admitted + sum(m.counters.rejected.values()))
    assert decided > 0 and 422 in statuses, statuses


# --- the prose reference follows the same routes, reasons and metrics ---------------------------

def test_rest_md_lists_every_route_reason_and_metric() -> None:
    prose = (DOC.parent / "rest.md").read_text()
    for path, method, _ in operations():
        assert f"`{method} {path}" in prose or f", `{method} {path}`" in prose, f"{method} {path} not in rest.md"
    for reason in REJECT_STATUS:
        assert f"`{reason.value}`" in prose, reason
    families = re.findall(r"^# TYPE (\w+) ", make_app().metrics.render(), re.MULTILINE)
    assert len(families) >= 9
    for family in families:
        assert f"| `{family}` |" in prose, f"metric {family} not in rest.md's table"


# --- one source of limits: the document says what ryu_apps/core/limits.py says ----------------

def test_the_document_and_the_controller_share_one_set_of_limits() -> None:
    from ryu_apps.core import limits
    schemas = RAW["components"]["schemas"]

    def bounds(schema: str, prop: str) -> tuple[int, int]:
        node = schemas[schema]["properties"][prop]
        return node["minimum"], node["maximum"]

    assert bounds("AggregateCreate", "size_kbps") == limits.SIZE_KBPS
    resize = RAW["paths"]["/mam/v1/aggregates/{id}"]["patch"]["requestBody"]["content"]["application/json"]
    assert (resize["schema"]["properties"]["size_kbps"]["minimum"],
            resize["schema"]["properties"]["size_kbps"]["maximum"]) == limits.SIZE_KBPS
    assert bounds("AggregateCreate", "dscp") == bounds("Aggregate", "dscp") == limits.DSCP
    assert bounds("AggregateCreate", "priority") == limits.PRIORITY
    assert schemas["AggregateCreate"]["properties"]["id"]["maxLength"] == limits.ID_LENGTH
    assert bounds("Media", "ptime_ms") == limits.PTIME_MS
    assert bounds("Media", "explicit_kbps") == limits.EXPLICIT_KBPS
    assert bounds("Media", "rtcp_bps") == limits.RTCP_BPS
    assert schemas["Media"]["properties"]["codec"]["maxLength"] == limits.CODEC_NAME_LENGTH
    assert bounds("Endpoint", "port") == limits.UDP_PORT
    for schema in ("CallCreate", "CallCreateSip"):
        assert schemas[schema]["properties"]["call_id"]["maxLength"] == limits.CALL_ID_LENGTH
    for prop in ("caller_community", "callee_community"):
        assert schemas["CallCreate"]["properties"][prop]["maxLength"] == limits.ID_LENGTH


def test_what_the_configuration_takes_the_api_takes_too() -> None:
    """An aggregate at the edge of every limit is accepted by the config file and by REST alike."""
    from ryu_apps.core import limits
    document = config(3000)
    document["aggregates"] = [{"id": "x" * limits.ID_LENGTH, "between": ["site-a", "site-b"], "size_kbps": 100,
                               "priority": limits.PRIORITY[0], "dscp": limits.DSCP[1]}]
    app = make_wsgi_app(MamService(build_manager(parse_config(document)), clock=lambda: 0.0), ApiConfig(token=TOKEN))
    assert app.service.read(lambda m: m.aggregate("x" * limits.ID_LENGTH).priority) == limits.PRIORITY[0]
    from webob import Request
    request = Request.blank("/mam/v1/aggregates", method="POST", headers=AUTH, content_type="application/json",
                            body=json.dumps({"id": "y" * limits.ID_LENGTH, "communities": ["site-a", "site-b"],
                                             "size_kbps": 100, "priority": limits.PRIORITY[0],
                                             "dscp": limits.DSCP[1]}).encode())
    response = request.get_response(app)
    assert response.status_int == 201, response.text


SHAPE_CHECKED = {("/mam/v1/communities/lookup", "GET"), ("/mam/v1/calls", "GET"), ("/mam/v1/calls", "POST"),
                 ("/mam/v1/calls/{id}", "PATCH"), ("/mam/v1/calls/{id}/media", "PUT")}


@SCHEMA.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_request_the_document_allows_is_never_refused_for_its_shape(case: Any) -> None:
    """The document says every rule the server checks about a request's shape (an empty
    lookup, an endpoint's ip, caller_media with callee_media, a party's domain or address,
    sdp or media): a request valid by the document is never a 400, except an SDP body the
    controller cannot read (400 invalid-sdp), which no JSON schema can describe. (Rules that
    depend on the topology, such as an aggregate's path, are outside this test.)"""
    if (case.operation.path, case.operation.method.upper()) not in SHAPE_CHECKED:
        return
    from schemathesis import GenerationMode
    if case.meta is not None and getattr(case.meta, "generation", None) is not None \
            and case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    response = case.call(headers=AUTH)
    if response.status_code == 400:
        assert response.json()["error"]["reason"] == "invalid-sdp", (case.path, case.query, case.body, response.text)
