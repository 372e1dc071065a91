"""REST API v1, in process (webob): every route, every error status, and the ledger behind it."""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from webob import Request

from ryu_apps.config import ApiConfig, build_manager, load_config, parse_config
from ryu_apps.core.store import MemoryLedger
from ryu_apps.core.survey import PortInfo
from ryu_apps.metrics import Metrics
from ryu_apps.rest.api import make_wsgi_app
from ryu_apps.service import MamService

TOKEN = "s3cret"
PCMU_KBPS = 91


def config(pool_kbps: int = 1000) -> dict[str, Any]:
    return {
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}, {"name": "s3", "dpid": 3}],
                     "links": [{"a": "s1", "a_port": 10, "b": "s2", "b_port": 10, "capacity_kbps": 10000},
                               {"a": "s2", "a_port": 11, "b": "s3", "b_port": 10, "capacity_kbps": 10000}]},
        "communities": [
            {"name": "site-a", "edge": "s1", "access_ports": [1], "prefixes": ["10.1.0.0/16"],
             "domains": ["a.example"]},
            {"name": "site-b", "edge": "s3", "access_ports": [1], "prefixes": ["10.2.0.0/16"],
             "domains": ["b.example"]}],
        "aggregates": [{"id": "a-b", "between": ["site-a", "site-b"], "size_kbps": pool_kbps}],
        "codecs": {"allowed": ["pcmu", "g729"]},
    }


class Api:
    def __init__(self, pool_kbps: int = 1000, max_body: int = 65536) -> None:
        self.service = MamService(build_manager(parse_config(config(pool_kbps))), clock=lambda: 100.0)
        self.metrics = Metrics(self.service)
        self.app = make_wsgi_app(self.service, ApiConfig(token=TOKEN, max_body_bytes=max_body), self.metrics)

    def __call__(self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN,
                 raw: bytes | None = None, content_type: str = "application/json") -> tuple[int, Any, Any]:
        request = Request.blank(path, method=method)
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        if raw is not None or body is not None:
            request.body = raw if raw is not None else json.dumps(body).encode()
            request.content_type = content_type
        response = request.get_response(self.app)
        parsed = None
        if response.body and response.content_type == "application/json":
            parsed = json.loads(response.body)
        return response.status_int, parsed if parsed is not None else response.text, response

    def used(self, aggregate: str = "a-b") -> int:
        return self.service.read(lambda m: m.used_kbps(aggregate))


def call(call_id: str, codec: str = "pcmu", **extra: Any) -> dict[str, Any]:
    return {"call_id": call_id, "caller_community": "site-a", "callee_community": "site-b",
            "media": {"codec": codec}, **extra}


@pytest.fixture
def api() -> Api:
    return Api()


# --- reading --------------------------------------------------------------------------------

def test_index_communities_and_lookup(api: Api) -> None:
    status, body, _ = api("GET", "/mam/v1")
    assert status == 200 and "/mam/v1/aggregates" in body["resources"]
    status, body, _ = api("GET", "/mam/v1/communities", token=None)  # reading needs no token
    assert status == 200 and [c["name"] for c in body["communities"]] == ["site-a", "site-b"]
    assert api("GET", "/mam/v1/communities/site-b")[1]["prefixes"] == ["10.2.0.0/16"]
    assert api("GET", "/mam/v1/communities/lookup?address=10.2.9.9")[1] == {"community": "site-b"}
    assert api("GET", "/mam/v1/communities/lookup?domain=a.example")[1] == {"community": "site-a"}
    assert api("GET", "/mam/v1/communities/lookup?address=192.0.2.1")[1] == {"community": None}
    assert api("GET", "/mam/v1/communities/lookup")[1] == {"community": None}                   # nothing asked
    assert api("GET", "/mam/v1/communities/lookup?domain=&address=")[1] == {"community": None}
    assert api("GET", "/mam/v1/communities/nowhere")[0] == 404


def test_topology_reports_reserved_and_free_per_direction(api: Api) -> None:
    status, body, _ = api("GET", "/mam/v1/topology")
    assert status == 200 and [s["name"] for s in body["switches"]] == ["s1", "s2", "s3"]
    first = body["links"][0]
    assert first["capacity_kbps"] == 10000 and first["reservable_kbps"] == 5000
    assert {(d["from"], d["to"], d["reserved_kbps"], d["free_kbps"]) for d in first["directions"]} == {
        ("s1", "s2", 1000, 4000), ("s2", "s1", 1000, 4000)}


def test_aggregate_listing_and_detail_follow_admissions(api: Api) -> None:
    listed = api("GET", "/mam/v1/aggregates")[1]["aggregates"]
    assert [(a["id"], a["size_kbps"], a["used_kbps"], a["path"]) for a in listed] == [("a-b", 1000, 0, ["s1", "s2", "s3"])]
    assert api("POST", "/mam/v1/calls", call("c1"))[0] == 201
    detail = api("GET", "/mam/v1/aggregates/a-b")[1]
    assert detail["used_kbps"] == PCMU_KBPS and detail["free_kbps"] == 1000 - PCMU_KBPS and detail["calls"] == 1
    assert [(l["from"], l["to"], l["reserved_kbps"]) for l in detail["links"]] == [("s1", "s2", 1000), ("s2", "s3", 1000)]
    assert api("GET", "/mam/v1/aggregates/none")[0] == 404


# --- aggregates ------------------------------------------------------------------------------

def test_create_resize_delete_aggregate(api: Api) -> None:
    status, body, response = api("POST", "/mam/v1/aggregates", {"id": "a-b-2", "communities": ["site-b", "site-a"],
                                                                "size_kbps": 2000, "dscp": 44, "levels": ["voice"]})
    assert status == 201, body
    assert response.location.endswith("/mam/v1/aggregates/a-b-2")
    assert body["dscp"] == 44 and body["levels"] == ["voice"] and body["path"] == ["s3", "s2", "s1"]
    links = api("GET", "/mam/v1/topology")[1]["links"]
    assert links[0]["directions"][0]["reserved_kbps"] == 3000
    status, body, _ = api("PATCH", "/mam/v1/aggregates/a-b-2", {"size_kbps": 4000})
    assert status == 200 and body["size_kbps"] == 4000  # 1000 + 4000 = the whole reservable 5000
    status, body, _ = api("PATCH", "/mam/v1/aggregates/a-b-2", {"size_kbps": 4001})
    assert status == 409 and body["error"]["field"] == "size_kbps"
    assert api("DELETE", "/mam/v1/aggregates/a-b-2")[0] == 204
    assert api("GET", "/mam/v1/aggregates/a-b-2")[0] == 404
    assert api("DELETE", "/mam/v1/aggregates/a-b-2")[0] == 404


def test_deleting_a_busy_aggregate_needs_force_and_releases_its_calls(api: Api) -> None:
    assert api("POST", "/mam/v1/calls", call("c1"))[0] == 201
    status, body, _ = api("DELETE", "/mam/v1/aggregates/a-b")
    assert status == 409 and api.used() == PCMU_KBPS          # refused, the call undisturbed
    assert api("DELETE", "/mam/v1/aggregates/a-b?force=maybe")[1]["error"]["field"] == "force"
    assert api("DELETE", "/mam/v1/aggregates/a-b?force=true")[0] == 204
    assert api("GET", "/mam/v1/calls/c1")[0] == 404


@pytest.mark.parametrize("body, field", [
    ({"communities": ["site-a", "site-b"], "size_kbps": 10}, "id"),
    ({"id": "x y", "communities": ["site-a", "site-b"], "size_kbps": 10}, "id"),
    ({"id": "x", "communities": ["site-a"], "size_kbps": 10}, "communities"),
    ({"id": "x", "communities": ["site-a", "site-b"], "size_kbps": "10"}, "size_kbps"),
    ({"id": "x", "communities": ["site-a", "site-b"], "size_kbps": 0}, "size_kbps"),
    ({"id": "x", "communities": ["site-a", "site-b"], "size_kbps": 10, "dscp": 64}, "dscp"),
    ({"id": "x", "communities": ["site-a", "site-b"], "size_kbps": 10, "levels": ["gold"]}, "levels[0]"),
    ({"id": "x", "communities": ["site-a", "site-b"], "size_kbps": 10, "colour": "red"}, "colour"),
    ({"id": "x", "communities": ["site-a", "site-b"], "size_kbps": 10, "path": [1, 2]}, "path"),
])
def test_bad_aggregate_requests_name_the_field(api: Api, body: dict, field: str) -> None:
    status, answer, _ = api("POST", "/mam/v1/aggregates", body)
    assert status == 400 and answer["error"]["field"] == field, answer
    assert api("GET", "/mam/v1/aggregates")[1]["aggregates"][0]["id"] == "a-b"


def test_an_aggregate_larger_than_any_path_is_a_conflict(api: Api) -> None:
    status, body, _ = api("POST", "/mam/v1/aggregates", {"id": "big", "communities": ["site-a", "site-b"],
                                                         "size_kbps": 4001})
    assert status == 409 and body["error"]["field"] == "size_kbps" and "4001" in body["error"]["message"]
    status, body, _ = api("POST", "/mam/v1/aggregates", {"id": "x", "communities": ["site-a", "site-z"],
                                                         "size_kbps": 10})
    assert status == 422 and body["error"]["field"] == "communities[1]"


# --- calls ----------------------------------------------------------------------------------

def test_admit_until_full_never_oversubscribes_and_release_restores_exactly(api: Api) -> None:
    admitted = []
    for n in range(20):
        status, body, _ = api("POST", "/mam/v1/calls", call(f"c{n}"))
        if status == 201:
            admitted.append(body["call"])
        else:
            assert status == 409 and body["error"]["reason"] == "pool-full", body
    assert len(admitted) == 1000 // PCMU_KBPS
    assert sum(c["kbps"] for c in admitted) == api.used() <= 1000
    listed = api("GET", "/mam/v1/calls?aggregate=a-b")[1]["calls"]
    assert {c["call_id"] for c in listed} == {c["call_id"] for c in admitted}
    for c in admitted:
        assert api("DELETE", f"/mam/v1/calls/{c['call_id']}?cause=test")[0] == 204
    assert api.used() == 0
    stats = api("GET", "/mam/v1/stats")[1]
    assert stats["admitted"] == len(admitted) and stats["released"] == len(admitted)
    assert stats["rejected"]["pool-full"] == 20 - len(admitted) and stats["calls_active"] == 0


def test_call_with_media_then_get_modify_release(api: Api) -> None:
    media = {"caller_media": {"ip": "10.1.0.5", "port": 4000}, "callee_media": {"ip": "10.2.0.5", "port": 5000}}
    status, body, response = api("POST", "/mam/v1/calls", call("sip/with/slashes@pbx", **media))
    assert status == 201, body
    assert response.location.endswith("/calls/sip/with/slashes@pbx")
    assert body["call"]["state"] == "installing" and body["call"]["caller_media"] == media["caller_media"]
    got = api("GET", "/mam/v1/calls/sip/with/slashes@pbx")[1]
    assert got["call_id"] == "sip/with/slashes@pbx" and got["kbps"] == PCMU_KBPS
    status, body, _ = api("PATCH", "/mam/v1/calls/sip/with/slashes@pbx", {"media": {"codec": "g729"}})
    assert status == 200 and body["call"]["kbps"] < PCMU_KBPS and api.used() == body["call"]["kbps"]
    status, body, _ = api("PATCH", "/mam/v1/calls/sip/with/slashes@pbx", {"media": {"codec": "g722"}})
    assert status == 422 and body["error"]["reason"] == "codec-not-allowed"
    assert api.used() < PCMU_KBPS                      # the refused upgrade left the old allocation
    assert api("DELETE", "/mam/v1/calls/sip/with/slashes@pbx")[0] == 204
    assert api("DELETE", "/mam/v1/calls/sip/with/slashes@pbx")[0] == 404
    assert api("GET", "/mam/v1/calls/sip/with/slashes@pbx")[0] == 404


def test_attach_media_later(api: Api) -> None:
    assert api("POST", "/mam/v1/calls", call("c1"))[0] == 201
    status, body, _ = api("PUT", "/mam/v1/calls/c1/media", {"caller": {"ip": "10.1.0.5", "port": 4000},
                                                            "callee": {"ip": "10.2.0.5", "port": 5000}})
    assert status == 200 and body["call"]["callee_media"] == {"ip": "10.2.0.5", "port": 5000}
    status, body, _ = api("PUT", "/mam/v1/calls/c1/media", {"caller": {"ip": "10.1.0.999", "port": 4000},
                                                            "callee": {"ip": "10.2.0.5", "port": 5000}})
    assert status == 400 and body["error"]["field"] == "caller.ip"
    assert api("PUT", "/mam/v1/calls/none/media", {"caller": {"ip": "10.1.0.5", "port": 1},
                                                   "callee": {"ip": "10.2.0.5", "port": 2}})[0] == 404


def test_retransmitted_admission_is_idempotent(api: Api) -> None:
    assert api("POST", "/mam/v1/calls", call("again"))[0] == 201
    assert api("POST", "/mam/v1/calls", call("again"))[0] == 201
    assert api.used() == PCMU_KBPS


@pytest.mark.parametrize("body, status, field_or_reason", [
    (call("x", codec="g722"), 422, "codec-not-allowed"),
    ({**call("x"), "caller_community": "mars"}, 422, "unknown-community"),
    ({**call("x"), "level": "platinum"}, 400, "level"),
    ({**call("x"), "protocol": "skinny"}, 400, "protocol"),
    ({**call("x"), "media": {"codec": "pcmu", "ptime_ms": 0}}, 400, "media.ptime_ms"),
    ({**call("x"), "media": {}}, 400, "media.codec"),
    ({**call("x"), "caller_media": {"ip": "10.1.0.1", "port": 1}}, 400, "callee_media"),
    ({**call("x"), "caller_media": {"ip": "10.1.0.1", "port": 70000},
      "callee_media": {"ip": "10.2.0.1", "port": 1}}, 400, "caller_media.port"),
    ({"caller_community": "site-a", "callee_community": "site-b", "media": {"codec": "pcmu"}}, 400, "call_id"),
    ([1, 2, 3], 400, None),
])
def test_bad_call_requests(api: Api, body: Any, status: int, field_or_reason: str | None) -> None:
    got, answer, _ = api("POST", "/mam/v1/calls", body)
    assert got == status, answer
    error = answer["error"]
    assert error["status"] == status and error["message"]
    if field_or_reason:
        assert field_or_reason in (error.get("field"), error.get("reason"))
    assert api.used() == 0


# --- errors of the protocol -------------------------------------------------------------------

def test_mutations_need_the_bearer_token(api: Api) -> None:
    status, body, response = api("POST", "/mam/v1/calls", call("c1"), token=None)
    assert status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert api("POST", "/mam/v1/calls", call("c1"), token="wrong")[0] == 403
    assert api("DELETE", "/mam/v1/aggregates/a-b", token="wrong")[0] == 403
    assert api.used() == 0 and api("GET", "/mam/v1/aggregates/a-b")[0] == 200


def test_bodies_that_are_not_json(api: Api) -> None:
    status, body, _ = api("POST", "/mam/v1/calls", raw=b"{not json")
    assert status == 400 and "JSON" in body["error"]["message"]
    assert api("POST", "/mam/v1/calls", raw=b"call_id=x", content_type="application/x-www-form-urlencoded")[0] == 415
    small = Api(max_body=256)
    status, body, _ = small("POST", "/mam/v1/calls", {**call("c1"), "pad": "x" * 400})
    assert status == 413 and body["error"]["status"] == 413


def test_unknown_routes_and_methods(api: Api) -> None:
    status, body, _ = api("GET", "/mam/v2/calls")
    assert status == 404 and "/mam/v1" in body["error"]["message"]
    status, body, response = api("PUT", "/mam/v1/aggregates")
    assert status == 405 and response.headers["Allow"] == "GET, POST"
    assert api("HEAD", "/mam/v1/aggregates")[0] == 200


def test_prometheus_metrics(api: Api) -> None:
    api("POST", "/mam/v1/calls", call("c1"))
    api("POST", "/mam/v1/calls", call("c2", codec="g722"))
    api.metrics.observe_flow_install(0.004)
    for path in ("/metrics", "/mam/v1/metrics"):
        status, text, response = api("GET", path)
        assert status == 200 and response.content_type == "text/plain"
        samples = scrape(api, path)
        assert samples['mam_aggregate_reserved_kbps{aggregate="a-b"}'] == 1000
        assert samples['mam_aggregate_used_kbps{aggregate="a-b"}'] == PCMU_KBPS
        assert samples["mam_calls_active"] == 1
        assert samples['mam_calls_admitted_total{protocol="rest"}'] == 1
        assert samples['mam_calls_admitted_total{protocol="sip"}'] == 0
        assert samples['mam_calls_rejected_total{reason="codec-not-allowed",protocol="rest"}'] == 1
        assert samples['mam_flow_install_seconds_bucket{le="0.005"}'] == 1
        assert samples["mam_flow_install_seconds_count"] == 1
        assert samples["mam_admission_seconds_count"] == 2          # both requests were decided


# --- the example configuration, built the way the controller builds it ------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "enterprise.yaml"


class ExampleApi(Api):
    """The REST app over docs/examples/enterprise.yaml (pool and codec policy from the file; the
    token from $MAM_TOKEN, as the controller takes it)."""

    def __init__(self) -> None:  # noqa: super() builds a different network
        from ryu_apps import security
        config = load_config(str(EXAMPLE))
        self.config = replace(config, api=security.api_with_token(config.api, {"MAM_TOKEN": "example-token-0123"}))
        self.service = MamService(build_manager(self.config, MemoryLedger()), clock=lambda: 1.0)
        self.metrics = Metrics(self.service)
        self.app = make_wsgi_app(self.service, self.config.api, self.metrics)


POOL = "site-a--site-b"


def site_call(call_id: str, codec: str = "pcmu", **extra: Any) -> dict[str, Any]:
    return {"call_id": call_id, "caller_community": "site-a", "callee_community": "site-b",
            "media": {"codec": codec}, **extra}


def test_example_config_admits_21_calls_then_pool_full_and_release_restores_zero() -> None:
    api = ExampleApi()
    token = api.config.api.token
    assert token == "example-token-0123"
    assert api("POST", "/mam/v1/calls", site_call("c0"), token=None)[0] == 401
    kbps = []
    for n in range(21):
        status, body, _ = api("POST", "/mam/v1/calls", site_call(f"c{n}"), token=token)
        assert status == 201, body
        kbps.append(body["call"]["kbps"])
        assert api.used(POOL) == sum(kbps)                     # grows by exactly the call's kbps
    assert kbps == [PCMU_KBPS] * 21 and sum(kbps) == 1911 <= 2000
    status, body, _ = api("POST", "/mam/v1/calls", site_call("c21"), token=token)
    assert status == 409 and body["error"] == {
        "status": 409, "reason": "pool-full",
        "message": f"aggregate {POOL}: 1911 of 2000 kbit/s in use, call needs {PCMU_KBPS}"}
    aggregate = api("GET", f"/mam/v1/aggregates/{POOL}")[1]
    assert (aggregate["used_kbps"], aggregate["free_kbps"], aggregate["calls"]) == (1911, 89, 21)
    for n in range(21):
        assert api("DELETE", f"/mam/v1/calls/c{n}", token=token)[0] == 204
    assert api.used(POOL) == 0
    assert api("GET", f"/mam/v1/aggregates/{POOL}")[1]["used_kbps"] == 0


def test_example_pool_preempts_voice_for_an_emergency_call_without_oversubscribing() -> None:
    api = ExampleApi()
    token = api.config.api.token
    for n in range(21):
        assert api("POST", "/mam/v1/calls", site_call(f"v{n}"), token=token)[0] == 201
    status, body, _ = api("POST", "/mam/v1/calls", site_call("e1", level="emergency"), token=token)
    assert status == 201, body
    assert body["call"]["level"] == "emergency" and len(body["preempted"]) == 1
    victim = body["preempted"][0]
    assert api("GET", f"/mam/v1/calls/{victim}")[0] == 404
    assert api.used(POOL) == 1911 <= 2000
    stats = api("GET", "/mam/v1/stats")[1]
    assert stats["preempted"] == 1 and stats["calls_active"] == 21
    samples = scrape(api)
    assert samples['mam_calls_preempted_total{reason="priority"}'] == 1
    assert samples['mam_calls_preempted_total{reason="capacity"}'] == 0


# --- more of every route ------------------------------------------------------------------------

def test_calls_listing_filters_and_unknown_aggregate_is_404(api: Api) -> None:
    assert api("GET", "/mam/v1/calls")[1] == {"calls": []}
    api("POST", "/mam/v1/calls", call("c1"))
    api("POST", "/mam/v1/calls", call("c2", codec="g729"))
    everything = api("GET", "/mam/v1/calls")[1]["calls"]
    assert sorted(c["call_id"] for c in everything) == ["c1", "c2"]
    assert sum(c["kbps"] for c in everything) == api.used()
    status, body, _ = api("GET", "/mam/v1/calls?aggregate=nowhere")
    assert status == 404 and body["error"]["reason"] == "not-found" and "nowhere" in body["error"]["message"]


def test_lookup_with_domain_and_address_and_communities_detail(api: Api) -> None:
    assert api("GET", "/mam/v1/communities/lookup?domain=B.EXAMPLE")[1] == {"community": "site-b"}
    assert api("GET", "/mam/v1/communities/lookup?domain=b.example&address=10.2.0.1")[1] == {"community": "site-b"}
    assert api("GET", "/mam/v1/communities/lookup?address=not-an-ip")[1] == {"community": None}
    body = api("GET", "/mam/v1/communities/site-a")[1]
    assert body == {"name": "site-a", "edge": "s1", "access_ports": [1], "prefixes": ["10.1.0.0/16"],
                    "domains": ["a.example"]}
    status, body, _ = api("GET", "/mam/v1/communities/mars")
    assert status == 404 and body["error"]["status"] == 404 and "mars" in body["error"]["message"]


def test_creating_and_deleting_an_aggregate_moves_topology_free_capacity(api: Api) -> None:
    def free() -> set[tuple[str, str, int]]:
        links = api("GET", "/mam/v1/topology")[1]["links"]
        return {(d["from"], d["to"], d["free_kbps"]) for link in links for d in link["directions"]}
    before = free()
    assert api("POST", "/mam/v1/aggregates", {"id": "extra", "communities": ["site-a", "site-b"],
                                              "size_kbps": 1500, "path": ["s1", "s2", "s3"]})[0] == 201
    assert free() == {(a, b, f - 1500) for a, b, f in before}   # both directions of every hop
    assert api("DELETE", "/mam/v1/aggregates/extra?force=false")[0] == 204
    assert free() == before


def test_aggregate_conflicts_and_not_found(api: Api) -> None:
    status, body, _ = api("POST", "/mam/v1/aggregates", {"id": "a-b", "communities": ["site-a", "site-b"],
                                                         "size_kbps": 10})
    assert status == 409 and body["error"]["field"] == "id"
    status, body, _ = api("PATCH", "/mam/v1/aggregates/nope", {"size_kbps": 10})
    assert status == 404 and "nope" in body["error"]["message"]
    api("POST", "/mam/v1/calls", call("c1"))
    status, body, _ = api("PATCH", "/mam/v1/aggregates/a-b", {"size_kbps": PCMU_KBPS - 1})
    assert status == 409 and api.service.read(lambda m: m.aggregate("a-b").size_kbps) == 1000
    status, body, _ = api("PATCH", "/mam/v1/aggregates/a-b", {"size_kbps": PCMU_KBPS})
    assert status == 200 and body["size_kbps"] == PCMU_KBPS and body["free_kbps"] == 0
    status, body, _ = api("PATCH", "/mam/v1/aggregates/a-b", {"size_kbps": 500, "dscp": 10})
    assert status == 400 and body["error"]["field"] == "dscp"
    assert api("POST", "/mam/v1/aggregates", {"id": "x", "communities": ["site-a", "site-a"],
                                              "size_kbps": 10})[1]["error"]["field"] == "communities"


def test_no_aggregate_between_the_communities_is_a_409(api: Api) -> None:
    assert api("DELETE", "/mam/v1/aggregates/a-b")[0] == 204
    status, body, _ = api("POST", "/mam/v1/calls", call("c1"))
    assert status == 409 and body["error"]["reason"] == "no-aggregate"
    assert api("GET", "/mam/v1/stats")[1]["rejected"]["no-aggregate"] == 1


def test_modify_unknown_call_and_bad_bodies(api: Api) -> None:
    status, body, _ = api("PATCH", "/mam/v1/calls/ghost", {"media": {"codec": "pcmu"}})
    assert status == 404 and body["error"]["reason"] == "unknown-call"
    api("POST", "/mam/v1/calls", call("c1"))
    for patch, field in (({}, "media"), ({"media": {"codec": 7}}, "media.codec"),
                         ({"media": {"codec": "pcmu", "extra": 1}}, "media.extra"),
                         ({"media": {"codec": "pcmu"}, "level": "voice"}, "level")):
        status, body, _ = api("PATCH", "/mam/v1/calls/c1", patch)
        assert status == 400 and body["error"]["field"] == field, (patch, body)
    assert api.used() == PCMU_KBPS


def test_pool_full_on_modify_keeps_the_old_allocation() -> None:
    api = Api(pool_kbps=2 * PCMU_KBPS)
    api("POST", "/mam/v1/calls", call("c1"))
    api("POST", "/mam/v1/calls", call("c2"))
    status, body, _ = api("PATCH", "/mam/v1/calls/c1", {"media": {"codec": "pcmu", "explicit_kbps": 500}})
    assert status == 409 and body["error"]["reason"] == "pool-full"
    assert api.used() == 2 * PCMU_KBPS


@pytest.mark.parametrize("body, field", [
    ({"caller": {"ip": "10.1.0.5", "port": 4000}}, "callee"),
    ({"caller": {"ip": "10.1.0.5", "port": 4000}, "callee": {"ip": "10.2.0.5"}}, "callee.port"),
    ({"caller": {"ip": "10.1.0.5", "port": "4000"}, "callee": {"ip": "10.2.0.5", "port": 1}}, "caller.port"),
    ({"caller": {"ip": "10.1.0.5", "port": 4000}, "callee": {"ip": "10.2.0.5", "port": 1}, "x": 1}, "x"),
    ({"caller": ["10.1.0.5", 4000], "callee": {"ip": "10.2.0.5", "port": 1}}, "caller"),
    ({"caller": {"ip": "fe80::1::2", "port": 4000}, "callee": {"ip": "10.2.0.5", "port": 1}}, "caller.ip"),
])
def test_bad_media_bodies_name_the_field(api: Api, body: dict, field: str) -> None:
    api("POST", "/mam/v1/calls", call("c1"))
    status, answer, _ = api("PUT", "/mam/v1/calls/c1/media", body)
    assert status == 400 and answer["error"]["field"] == field, answer
    assert api("GET", "/mam/v1/calls/c1")[1]["caller_media"] is None


def test_ipv6_media_addresses_are_accepted(api: Api) -> None:
    status, body, _ = api("POST", "/mam/v1/calls", call("v6", caller_media={"ip": "2001:db8::1", "port": 4000},
                                                        callee_media={"ip": "2001:db8::2", "port": 5000}))
    assert status == 201 and body["call"]["caller_media"] == {"ip": "2001:db8::1", "port": 4000}


@pytest.mark.parametrize("body, field", [
    ({**call("x"), "media": {"codec": "pcmu", "ptime_ms": 20.5}}, "media.ptime_ms"),
    ({**call("x"), "media": {"codec": "pcmu", "voice_band_data": "yes"}}, "media.voice_band_data"),
    ({**call("x"), "media": {"codec": "pcmu", "explicit_kbps": True}}, "media.explicit_kbps"),
    ({**call("x"), "media": "pcmu"}, "media"),
    ({**call("x"), "call_id": "   "}, "call_id"),
    ({**call("x"), "call_id": "x" * 257}, "call_id"),
    ({**call("x"), "callee_community": 3}, "callee_community"),
    ({**call("x"), "priority": 1}, "priority"),
    ({**call("x"), "callee_media": {"ip": "10.2.0.1", "port": 1}}, "caller_media"),
])
def test_more_bad_call_fields(api: Api, body: dict, field: str) -> None:
    status, answer, _ = api("POST", "/mam/v1/calls", body)
    assert status == 400 and answer["error"]["field"] == field and answer["error"]["reason"] == "bad-request"
    assert api("GET", "/mam/v1/calls")[1]["calls"] == []


@pytest.mark.parametrize("raw", [b"", b"null", b"[]", b'"text"', b"42", b"[" * 5000, b"\xff\xfe{", b'{"a": 1'])
def test_bodies_that_are_not_a_json_object_are_400(api: Api, raw: bytes) -> None:
    status, body, _ = api("POST", "/mam/v1/aggregates", raw=raw)
    assert status == 400 and body["error"]["reason"] == "bad-request", body
    assert body["error"]["message"].startswith("body ")


def test_json_with_a_charset_parameter_is_json(api: Api) -> None:
    status, _, _ = api("POST", "/mam/v1/calls", raw=json.dumps(call("c1")).encode(),
                       content_type="application/json; charset=utf-8")
    assert status == 201 and api.used() == PCMU_KBPS


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_non_json_content_types_are_415(api: Api, content_type: str) -> None:
    status, body, _ = api("POST", "/mam/v1/calls", raw=json.dumps(call("c1")).encode(), content_type=content_type)
    assert status == 415 and body["error"]["reason"] == "unsupported-media-type"
    assert content_type in body["error"]["message"] and api.used() == 0


def test_body_limit_with_and_without_content_length() -> None:
    small = Api(max_body=256)
    exactly = json.dumps({**call("c1"), "call_id": "c" * 10}).encode()
    assert small("POST", "/mam/v1/calls", raw=exactly)[0] == 201
    big = json.dumps({**call("c2"), "call_id": "x" * 250}).encode()
    assert len(big) > 256
    status, body, _ = small("POST", "/mam/v1/calls", raw=big)
    assert status == 413 and body["error"]["reason"] == "too-large" and "256" in body["error"]["message"]
    # a chunked upload states no length: the limit still holds while reading
    request = Request.blank("/mam/v1/calls", method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
    request.environ.update({"wsgi.input": io.BytesIO(big), "CONTENT_TYPE": "application/json",
                            "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True})
    request.environ.pop("CONTENT_LENGTH", None)
    response = request.get_response(small.app)
    assert response.status_int == 413 and json.loads(response.body)["error"]["status"] == 413
    assert small.used() == PCMU_KBPS


def test_authorisation_variants() -> None:
    api = Api()
    for header in ("Basic czNjcmV0", "Bearer", "Bearer ", "s3cret"):
        request = Request.blank("/mam/v1/calls", method="POST", headers={"Authorization": header})
        request.body, request.content_type = json.dumps(call("c1")).encode(), "application/json"
        response = request.get_response(api.app)
        assert response.status_int == 401, header
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="mam"'
        assert json.loads(response.body)["error"]["reason"] == "unauthorized"
    for header, status in (("Basic " + base64.b64encode(b"kamailio:s3cret").decode(), 201),   # URL credentials
                           ("Basic " + base64.b64encode(b"kamailio:nope").decode(), 403), ("Basic !!", 401)):
        request = Request.blank("/mam/v1/calls", method="POST", headers={"Authorization": header})
        request.body, request.content_type = json.dumps(call(f"b{status}")).encode(), "application/json"
        assert request.get_response(api.app).status_int == status, header
    api("DELETE", "/mam/v1/calls/b201")
    status, body, response = api("PATCH", "/mam/v1/aggregates/a-b", {"size_kbps": 5}, token="s3cret-not")
    assert status == 403 and body["error"]["reason"] == "forbidden" and "WWW-Authenticate" in response.headers
    assert api("PUT", "/mam/v1/calls/x/media", {}, token=None)[0] == 401      # auth before body or lookup
    assert api("DELETE", "/mam/v1/calls/x", token="nope")[0] == 403
    assert api.service.read(lambda m: m.aggregate("a-b").size_kbps) == 1000 and api.used() == 0
    # reading never needs the token, even a wrong one is ignored
    assert api("GET", "/mam/v1/stats", token="nope")[0] == 200


def test_without_a_configured_token_mutations_are_open() -> None:
    service = MamService(build_manager(parse_config(config())), clock=lambda: 1.0)
    app = make_wsgi_app(service, ApiConfig(token=None))
    request = Request.blank("/mam/v1/calls", method="POST")
    request.body, request.content_type = json.dumps(call("c1")).encode(), "application/json"
    assert request.get_response(app).status_int == 201
    assert service.read(lambda m: m.used_kbps("a-b")) == PCMU_KBPS


@pytest.mark.parametrize("method, path, allow", [
    ("DELETE", "/mam/v1/calls", "GET, POST"),
    ("POST", "/mam/v1/calls/x", "DELETE, GET, PATCH"),
    ("PUT", "/mam/v1/aggregates/a-b", "DELETE, GET, PATCH"),
    ("POST", "/mam/v1/topology", "GET"),
    ("DELETE", "/mam/v1/stats", "GET"),
    ("POST", "/metrics", "GET"),
    ("PATCH", "/mam/v1/communities/site-a", "GET"),
    ("POST", "/mam/v1/calls/x/media", "DELETE, GET, PATCH, PUT"),
])
def test_405_lists_the_allowed_methods(api: Api, method: str, path: str, allow: str) -> None:
    status, body, response = api(method, path, {})
    assert status == 405 and response.headers["Allow"] == allow
    assert body["error"]["reason"] == "method-not-allowed" and method in body["error"]["message"]


@pytest.mark.parametrize("path", ["/", "/mam", "/mam/v1/nothing", "/mam/v1/aggregates/a-b/links", "/metrics/x"])
def test_unknown_routes_are_404_json(api: Api, path: str) -> None:
    status, body, response = api("GET", path)
    assert status == 404 and response.content_type == "application/json"
    assert body["error"] == {"status": 404, "reason": "not-found",
                             "message": f"no resource {path}; the API lives under /mam/v1"}


def test_trailing_slash_and_head(api: Api) -> None:
    assert api("GET", "/mam/v1/aggregates/")[1]["aggregates"][0]["id"] == "a-b"
    status, _, response = api("HEAD", "/mam/v1/stats")
    assert status == 200 and response.content_type == "application/json"


def test_call_ids_with_slashes_reach_every_call_route(api: Api) -> None:
    """A SIP Call-ID may contain '/', even end in '/media': every route still finds the call."""
    for call_id in ("a/b@pbx", "x/media", "%2Fescaped"):
        assert api("POST", "/mam/v1/calls", call(call_id))[0] == 201
    assert api("GET", "/mam/v1/calls/a/b@pbx")[1]["call_id"] == "a/b@pbx"
    assert api("GET", "/mam/v1/calls/a%2Fb@pbx")[1]["call_id"] == "a/b@pbx"       # escaped '/' too
    assert api("GET", "/mam/v1/calls/x/media")[1]["call_id"] == "x/media"
    assert api("GET", "/mam/v1/calls/%252Fescaped")[1]["call_id"] == "%2Fescaped"
    status, body, _ = api("PUT", "/mam/v1/calls/a/b@pbx/media", {"caller": {"ip": "10.1.0.1", "port": 4000},
                                                                 "callee": {"ip": "10.2.0.1", "port": 5000}})
    assert status == 200 and body["call"]["call_id"] == "a/b@pbx" and body["call"]["state"] == "installing"
    status, body, _ = api("PATCH", "/mam/v1/calls/x/media", {"media": {"codec": "g729"}})
    assert status == 200 and body["call"]["call_id"] == "x/media"
    assert api("DELETE", "/mam/v1/calls/x/media")[0] == 204
    assert api("DELETE", "/mam/v1/calls/a/b@pbx")[0] == 204
    assert [c["call_id"] for c in api("GET", "/mam/v1/calls")[1]["calls"]] == ["%2Fescaped"]
    assert api.used() == PCMU_KBPS


def test_non_utf8_path_or_query_is_400_not_500(api: Api) -> None:
    for path in ("/mam/v1/calls/%ff", "/mam/v1/calls?aggregate=%ff"):
        status, body, _ = api("GET", path)
        assert status == 400 and body["error"]["reason"] == "bad-request", (path, body)


def test_a_bug_is_a_json_500_without_a_stack_trace(api: Api, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def broken(query: Any) -> Any:
        raise RuntimeError("secret internals")
    monkeypatch.setattr(api.service, "read", broken)
    status, body, _ = api("GET", "/mam/v1/stats")
    assert status == 500 and body["error"]["reason"] == "internal-error"
    assert "secret" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    assert "secret internals" in caplog.text                          # but it is in the log


def test_release_cause_reaches_the_listeners(api: Api) -> None:
    released = []
    api.service.subscribe(lambda changes: released.extend(getattr(changes, "released", ())))
    api("POST", "/mam/v1/calls", call("c1"))
    assert api("DELETE", "/mam/v1/calls/c1?cause=" + "x" * 100)[0] == 204
    assert [r.call_id for r in released] == ["c1"]
    assert len(released[0].cause) == 64


# --- never oversubscribe, whatever the mix -----------------------------------------------------

CODECS = {"pcmu": PCMU_KBPS, "g729": None}


@given(st.lists(st.tuples(st.sampled_from(["admit", "admit", "release", "resize"]), st.integers(0, 15),
                          st.sampled_from(["pcmu", "g729", "g722", "big"])), max_size=40))
@settings(max_examples=40, deadline=None)
def test_random_admissions_and_releases_never_oversubscribe(steps: list[tuple[str, int, str]]) -> None:
    api = Api(pool_kbps=600)
    live: dict[str, int] = {}
    size = 600
    for action, n, codec in steps:
        call_id = f"c{n}"
        if action == "admit":
            media = {"codec": "pcmu", "explicit_kbps": 250} if codec == "big" else {"codec": codec}
            before = api.used()
            status, body, _ = api("POST", "/mam/v1/calls", {**call(call_id), "media": media})
            if call_id in live:                                         # a retransmission
                assert status == 201 and api.used() == before
            elif status == 201:
                live[call_id] = body["call"]["kbps"]
                assert api.used() == before + live[call_id]
            elif codec == "g722":
                assert status == 422 and body["error"]["reason"] == "codec-not-allowed"
            else:
                assert status == 409 and body["error"]["reason"] == "pool-full"
                assert size - before < api.service.read(
                    lambda m: m.bandwidth_kbps(fields_media(media)))   # refused only when it did not fit
        elif action == "release":
            status = api("DELETE", f"/mam/v1/calls/{call_id}")[0]
            assert status == (204 if live.pop(call_id, None) is not None else 404)
        else:
            wanted = 100 + 50 * n
            status = api("PATCH", "/mam/v1/aggregates/a-b", {"size_kbps": wanted})[0]
            if wanted >= sum(live.values()):
                assert status == 200
                size = wanted
            else:
                assert status == 409
        used = api.used()
        listed = api("GET", "/mam/v1/aggregates/a-b")[1]
        assert used == sum(live.values()) == listed["used_kbps"] <= listed["size_kbps"] == size
        assert listed["free_kbps"] == size - used and listed["calls"] == len(live)
    for call_id in list(live):
        assert api("DELETE", f"/mam/v1/calls/{call_id}")[0] == 204
    assert api.used() == 0


def fields_media(media: dict[str, Any]) -> Any:
    from ryu_apps.core.codec import MediaSpec
    return MediaSpec(codec=media["codec"], explicit_kbps=media.get("explicit_kbps"))


# --- Prometheus ------------------------------------------------------------------------------------

LABEL = r'[a-z_]+="(?:[^"\\]|\\.)*"'
METRIC_LINE = re.compile(rf'^([a-z_]+)(\{{{LABEL}(?:,{LABEL})*\}})? (-?[0-9.e+-]+)$')


class Samples(dict[str, float]):
    """Samples by ``name{labels}``, the labels in any order (the exposition sorts them)."""

    def __getitem__(self, key: str) -> float:
        return super().__getitem__(canonical(key))


def canonical(key: str) -> str:
    name, brace, labels = key.partition("{")
    if not brace:
        return key
    return name + "{" + ",".join(sorted(re.findall(LABEL, labels[:-1]))) + "}"


def scrape(api: Api, path: str = "/metrics") -> dict[str, float]:
    status, text, response = api("GET", path)
    assert status == 200 and response.content_type == "text/plain"
    assert {"version": "0.0.4", "charset": "utf-8"}.items() <= response.content_type_params.items()
    samples = Samples()
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name not in types, f"{name} typed twice"
            types[name] = kind
        elif line and not line.startswith("# HELP "):
            match = METRIC_LINE.match(line)
            assert match, f"not exposition format: {line!r}"
            family = re.sub(r"_(bucket|sum|count)$", "", match[1]) if match[1] not in types else match[1]
            assert family in types, f"{match[1]} has no TYPE line"
            samples[canonical(match[1] + (match[2] or ""))] = float(match[3])
    assert types == {
        "mam_aggregate_reserved_kbps": "gauge", "mam_aggregate_used_kbps": "gauge", "mam_aggregate_calls": "gauge",
        "mam_calls_admitted_total": "counter", "mam_calls_rejected_total": "counter", "mam_calls_released_total": "counter",
        "mam_calls_preempted_total": "counter", "mam_terminal_moves_total": "counter", "mam_calls_active": "gauge", "mam_flow_install_seconds": "histogram",
        "mam_link_state": "gauge", "mam_links_unconfigured": "gauge", "mam_admission_seconds": "histogram",
        "mam_aggregate_resizes_total": "counter", "mam_gc_pause_seconds": "histogram",
        "mam_gc_pause_max_seconds": "gauge", "mam_gc_collected_objects_total": "counter"}
    return samples


def test_prometheus_metrics_follow_the_service_state(api: Api) -> None:
    assert api("POST", "/mam/v1/aggregates", {"id": "b-a", "communities": ["site-b", "site-a"],
                                              "size_kbps": 300, "priority": 0})[0] == 201
    for n in range(3):
        api("POST", "/mam/v1/calls", call(f"c{n}"))
    api("POST", "/mam/v1/calls", call("bad", codec="g722", protocol="h323"))
    api("POST", "/mam/v1/calls", {**call("mars"), "callee_community": "mars"})
    api("DELETE", "/mam/v1/calls/c0")
    for seconds in (0.0004, 0.0012, 0.004, 0.3, 9.0):
        api.metrics.observe_flow_install(seconds)
    samples = scrape(api)
    assert samples == scrape(api, "/mam/v1/metrics")
    stats = api("GET", "/mam/v1/stats")[1]
    for pool in ("a-b", "b-a"):
        detail = api("GET", f"/mam/v1/aggregates/{pool}")[1]
        assert samples[f'mam_aggregate_reserved_kbps{{aggregate="{pool}"}}'] == detail["size_kbps"]
        assert samples[f'mam_aggregate_used_kbps{{aggregate="{pool}"}}'] == detail["used_kbps"]
        assert samples[f'mam_aggregate_calls{{aggregate="{pool}"}}'] == detail["calls"]
    assert sum(samples[f'mam_aggregate_used_kbps{{aggregate="{p}"}}'] for p in ("a-b", "b-a")) == 2 * PCMU_KBPS
    assert sum(samples[f'mam_calls_admitted_total{{protocol="{p}"}}'] for p in ("sip", "h323", "rest")) == 3
    assert samples['mam_calls_admitted_total{protocol="rest"}'] == stats["admitted"] == 3
    assert samples["mam_calls_released_total"] == stats["released"] == 1
    assert samples["mam_calls_active"] == stats["calls_active"] == 2
    assert samples['mam_calls_preempted_total{reason="priority"}'] == 0
    assert samples['mam_aggregate_resizes_total{direction="grow"}'] == 0
    for reason, count in stats["rejected"].items():
        assert sum(samples[f'mam_calls_rejected_total{{reason="{reason}",protocol="{p}"}}']
                   for p in ("sip", "h323", "rest")) == count
    assert samples['mam_calls_rejected_total{reason="codec-not-allowed",protocol="h323"}'] == 1
    assert samples['mam_calls_rejected_total{reason="codec-not-allowed",protocol="rest"}'] == 0
    assert samples['mam_calls_rejected_total{reason="unknown-community",protocol="rest"}'] == 1
    buckets = [(key, value) for key, value in samples.items() if key.startswith("mam_flow_install_seconds_bucket")]
    counts = [value for _, value in buckets]
    assert counts == sorted(counts) and buckets[-1] == ('mam_flow_install_seconds_bucket{le="+Inf"}', 5)
    assert samples['mam_flow_install_seconds_bucket{le="0.0005"}'] == 1
    assert samples['mam_flow_install_seconds_bucket{le="0.0015"}'] == 2
    assert samples['mam_flow_install_seconds_bucket{le="0.005"}'] == 3
    assert samples['mam_flow_install_seconds_bucket{le="5.0"}'] == 4
    assert samples["mam_flow_install_seconds_count"] == 5
    assert samples["mam_flow_install_seconds_sum"] == pytest.approx(9.3056)


def test_link_states_are_in_the_topology_and_the_metrics(api: Api) -> None:
    topology = api("GET", "/mam/v1/topology")[1]
    assert [(link["a"], link["b"], link["state"]) for link in topology["links"]] == [
        ("s1", "s2", "unknown"), ("s2", "s3", "unknown")]
    assert topology["discovery"] == {"enabled": False, "unconfigured_links": []}
    samples = scrape(api)
    for link in ("s1-s2", "s2-s3"):
        states = {key: value for key, value in samples.items() if key.startswith(f'mam_link_state{{link="{link}"')}
        assert len(states) == 5 and sum(states.values()) == 1 and states[
            f'mam_link_state{{link="{link}",state="unknown"}}'] == 1
    for switch in ("s1", "s2", "s3"):
        api.service.observe(lambda survey: survey.ports_described(
            switch, {1: PortInfo("acc"), 10: PortInfo(f"{switch}-eth10", 10_000_000),
                     11: PortInfo(f"{switch}-eth11", 1_000, live=switch != "s2")}))
    topology = api("GET", "/mam/v1/topology")[1]
    first, second = topology["links"]
    assert (first["state"], first["speed_kbps"], first["reservable_now_kbps"], first["problems"]) == (
        "up", 10_000_000, 5000, [])
    assert (second["state"], second["detail"], second["speed_kbps"]) == ("down", "port s2:11 (s2-eth11) is down",
                                                                          1_000)
    assert second["reservable_now_kbps"] == 500 and second["problems"][0].startswith(
        "capacity_kbps 10000 exceeds the speed of port s2:11 (s2-eth11), 1000 kbit/s")
    # the configured pool (1000 kbit/s) now exceeds what s2-s3 may reserve; nothing is free on a down link
    assert [d["free_kbps"] for d in second["directions"]] == [0, 0]
    assert "s2->s3 reserves 1000 kbit/s, more than the 500 it may now" in second["problems"][1]
    assert [s["connected"] for s in topology["switches"]] == [True, True, True]
    samples = scrape(api)
    assert samples['mam_link_state{link="s2-s3",state="down"}'] == 1
    assert samples['mam_link_state{link="s1-s2",state="up"}'] == 1
    status, body, _ = api("POST", "/mam/v1/calls", call("cut"))
    assert (status, body["error"]["reason"]) == (409, "path-down")
    assert samples['mam_calls_rejected_total{reason="path-down",protocol="rest"}'] == 0
    assert scrape(api)['mam_calls_rejected_total{reason="path-down",protocol="rest"}'] == 1


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("raw_id", ["%0A", "x%0A", "%0D%0A", "a%0Ab"])
def test_control_characters_in_an_id_name_that_call_not_the_collection(api: Api, method: str, raw_id: str) -> None:
    """'$' also matches before a final newline: /calls/\\n must not reach the /calls routes."""
    status, body, _ = api(method, f"/mam/v1/calls/{raw_id}", {"media": {"codec": "pcmu"}})
    assert status == 404, body
    assert body["error"]["reason"] in ("not-found", "unknown-call")


@pytest.mark.parametrize("given, shown", [(None, "rest"), ("sip", "sip"), ("H323", "h323")])
def test_a_call_says_which_signalling_set_it_up(api: Api, given: str | None, shown: str) -> None:
    extra = {} if given is None else {"protocol": given}
    status, body, _ = api("POST", "/mam/v1/calls", call("p1", **extra))
    assert status == 201 and body["call"]["protocol"] == shown
    status, body, _ = api("GET", "/mam/v1/calls/p1")
    assert status == 200 and body["protocol"] == shown


# --- a SIP server's form: parties and raw SDP (docs/kamailio.md) ------------------------------

OFFER = ("v=0\r\no=- 1 1 IN IP4 10.1.0.10\r\ns=-\r\nc=IN IP4 10.1.0.10\r\nt=0 0\r\n"
         "m=audio 4000 RTP/AVP 0 18 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n")
ANSWER_G729 = "v=0\r\no=- 2 2 IN IP4 10.2.0.20\r\ns=-\r\nc=IN IP4 10.2.0.20\r\nt=0 0\r\nm=audio 5000 RTP/AVP 18\r\n"


def sip_call(call_id: str, **extra: Any) -> dict[str, Any]:
    return {"call_id": call_id, "caller": {"domain": "a.example", "address": "127.0.0.1"},
            "callee": {"domain": "b.example"}, "sdp": OFFER, **extra}


def test_a_sip_server_admits_with_parties_and_the_raw_offer(api: Api) -> None:
    status, body, response = api("POST", "/mam/v1/calls", sip_call("k1@pbx"))
    assert status == 201 and response.location.endswith("/mam/v1/calls/k1@pbx")
    call = body["call"]
    assert (call["caller_community"], call["callee_community"], call["protocol"]) == ("site-a", "site-b", "sip")
    assert call["media"]["codec"] == "pcmu" and call["kbps"] == PCMU_KBPS and api.used() == PCMU_KBPS
    # by address only (an IP caller domain, an IP Request-URI host), and a late offer with media
    status, body, _ = api("POST", "/mam/v1/calls", {"call_id": "k2", "caller": {"domain": "10.1.9.9"},
                                                   "callee": {"address": "10.2.0.1"}, "media": {"codec": "g729"}})
    assert status == 201 and body["call"]["kbps"] < PCMU_KBPS
    assert api("DELETE", "/mam/v1/calls/k2")[0] == 204 and api("DELETE", "/mam/v1/calls/k1@pbx")[0] == 204
    assert api.used() == 0


def test_voice_band_data_in_the_offer_sets_the_level_unless_one_is_given(api: Api) -> None:
    fax = OFFER.replace("a=ptime:20\r\n", "a=ptime:20\r\na=gpmd:0 vbd=yes\r\n")
    assert api("POST", "/mam/v1/calls", sip_call("fax", sdp=fax))[1]["call"]["level"] == "voice-band-data"
    assert api("POST", "/mam/v1/calls", sip_call("sos", level="emergency"))[1]["call"]["level"] == "emergency"


def test_parties_in_one_community_need_no_reservation(api: Api) -> None:
    status, body, _ = api("POST", "/mam/v1/calls", sip_call("local", callee={"domain": "a.example"}))
    assert (status, body) == (204, "") and api.used() == 0
    assert api("GET", "/mam/v1/calls/local")[0] == 404


@pytest.mark.parametrize("changes, field, reason", [
    ({"caller": {"domain": "mars.example"}}, "caller", "unknown-community"),
    ({"callee": {"domain": "mars.example", "address": "192.0.2.1"}}, "callee", "unknown-community"),
])
def test_a_party_in_no_community_is_a_422_naming_which(api: Api, changes: dict, field: str, reason: str) -> None:
    status, body, _ = api("POST", "/mam/v1/calls", sip_call("x", **changes))
    assert status == 422 and body["error"]["field"] == field and body["error"]["reason"] == reason


@pytest.mark.parametrize("changes, field, reason", [
    ({"sdp": "garbage"}, "sdp", "invalid-sdp"),
    ({"sdp": OFFER.replace("m=audio 4000", "m=audio 0")}, "sdp", "invalid-sdp"),     # no active stream
    ({"sdp": "\x85"}, "sdp", "invalid-sdp"),          # blank to str.strip(), a string the document allows
    ({"sdp": 5}, "sdp", "bad-request"),                                               # not a string
    ({"sdp": None}, "sdp", "bad-request"),                                            # neither sdp nor media
    ({"media": {"codec": "pcmu"}}, "sdp", "bad-request"),                             # both
    ({"caller": {}}, "caller", "bad-request"),
    ({"caller": {"address": "10.1.0.300"}}, "caller.address", "bad-request"),
    ({"caller_community": "site-a"}, "caller_community", "bad-request"),              # forms do not mix
])
def test_bad_sip_form_requests_name_the_field(api: Api, changes: dict, field: str, reason: str) -> None:
    status, body, _ = api("POST", "/mam/v1/calls", sip_call("x", **changes))
    assert status == 400 and body["error"]["field"] == field and body["error"]["reason"] == reason, body
    assert api.used() == 0


def test_media_attach_from_the_offer_and_answer_follows_the_answered_codec(api: Api) -> None:
    assert api("POST", "/mam/v1/calls", sip_call("k1"))[0] == 201
    status, body, _ = api("PUT", "/mam/v1/calls/k1/media", {"offer": OFFER, "answer": ANSWER_G729})
    assert status == 200
    call = body["call"]
    assert call["caller_media"] == {"ip": "10.1.0.10", "port": 4000}
    assert call["callee_media"] == {"ip": "10.2.0.20", "port": 5000}
    assert call["media"]["codec"] == "g729" and api.used() == call["kbps"] < PCMU_KBPS
    held = ANSWER_G729.replace("c=IN IP4 10.2.0.20", "c=IN IP4 0.0.0.0")
    status, body, _ = api("PUT", "/mam/v1/calls/k1/media", {"offer": OFFER, "answer": held})
    assert status == 400 and body["error"]["field"] == "answer"
    assert api("PUT", "/mam/v1/calls/nobody/media", {"offer": OFFER, "answer": ANSWER_G729})[0] == 404


def test_an_answered_codec_that_does_not_fit_keeps_the_admitted_one() -> None:
    api = Api(pool_kbps=PCMU_KBPS)
    wide = ANSWER_G729.replace("RTP/AVP 18", "RTP/AVP 0").replace("t=0 0\r\n", "t=0 0\r\nb=AS:500\r\n")
    assert api("POST", "/mam/v1/calls", sip_call("k1"))[0] == 201
    status, body, _ = api("PUT", "/mam/v1/calls/k1/media", {"offer": OFFER, "answer": wide})
    assert status == 200 and body["call"]["kbps"] == PCMU_KBPS and api.used() == PCMU_KBPS


def test_post_with_a_method_override_is_that_method(api: Api) -> None:
    assert api("POST", "/mam/v1/calls", sip_call("k1"))[0] == 201

    def post(path: str, method: str, body: Any, token: str | None = TOKEN) -> tuple[int, Any]:
        request = Request.blank(path, method="POST")
        request.headers["X-HTTP-Method-Override"] = method
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        request.body, request.content_type = json.dumps(body).encode(), "application/json"
        response = request.get_response(api.app)
        return response.status_int, json.loads(response.body) if response.body else None

    assert post("/mam/v1/calls/k1/media", "PUT", {"offer": OFFER, "answer": ANSWER_G729})[0] == 200
    assert post("/mam/v1/calls/k1", "delete", {}, token=None)[0] == 401        # still needs the token
    assert post("/mam/v1/calls/k1", "DELETE", {})[0] == 204 and api.used() == 0
    status, body = post("/mam/v1/calls", "GET", {})
    assert status == 400 and body["error"]["field"] == "X-HTTP-Method-Override"
    # the same as a query parameter, for clients that cannot set headers
    assert api("POST", "/mam/v1/calls", sip_call("k2"))[0] == 201
    assert api("POST", "/mam/v1/calls/k2?_method=DELETE", {})[0] == 204 and api.used() == 0
    assert api("POST", "/mam/v1/calls?_method=HEAD", {})[0] == 400


def test_admission_with_media_is_one_step_and_a_ledger_outage_changes_nothing(api: Api) -> None:
    from ryu_apps.core.errors import StoreUnavailable

    class Down:
        durable = True

        def commit(self, writes: Any) -> None:
            raise StoreUnavailable("disk full (test)")

    media = {"caller_media": {"ip": "10.1.0.1", "port": 4000}, "callee_media": {"ip": "10.2.0.1", "port": 5000}}
    ledger, api.service.manager.ledger = api.service.manager.ledger, Down()
    status, body, response = api("POST", "/mam/v1/calls", call("m1", **media))
    assert (status, body["error"]["reason"], response.headers["Retry-After"]) == (503, "store-unavailable", "1")
    assert "disk full" in body["error"]["message"]
    assert api("GET", "/mam/v1/calls")[1]["calls"] == [] and api.used() == 0
    api.service.manager.ledger = ledger
    status, body, _ = api("POST", "/mam/v1/calls", call("m1", **media))
    assert status == 201 and body["call"]["state"] == "installing" and body["call"]["callee_media"]["port"] == 5000
    assert ledger.calls["m1"].callee_media.port == 5000      # admission and media were recorded together
