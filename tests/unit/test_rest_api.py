"""REST API v1, in process (webob): every route, every error status, and the ledger behind it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from webob import Request

from ryu_apps.config import ApiConfig, build_manager, parse_config
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
    status, body, _ = api("GET", "/mam/v1/communities/lookup")
    assert status == 400 and body["error"]["field"] == "domain"
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
        assert 'mam_aggregate_reserved_kbps{aggregate="a-b"} 1000' in text
        assert f'mam_aggregate_used_kbps{{aggregate="a-b"}} {PCMU_KBPS}' in text
        assert "mam_calls_active 1" in text
        assert "mam_admissions_total 1" in text
        assert 'mam_rejections_total{reason="codec-not-allowed"} 1' in text
        assert 'mam_flow_install_seconds_bucket{le="0.005"} 1' in text
        assert "mam_flow_install_seconds_count 1" in text
