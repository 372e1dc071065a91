"""RestCallControl against the controller's real REST API (over HTTP on loopback)."""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from typing import Any, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from ryu_apps.config import ApiConfig, build_manager, parse_config
from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected, RejectReason
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.rest.api import make_wsgi_app
from ryu_apps.service import MamService
from ryu_apps.signalling.sip.rest_client import ControllerError, RestCallControl


def _service() -> MamService:
    return MamService(build_manager(parse_config({
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}],
                     "links": [{"a": "s1", "a_port": 1, "b": "s2", "b_port": 1, "capacity_kbps": 10000}]},
        "communities": [
            {"name": "a", "edge": "s1", "access_ports": [2], "prefixes": ["10.1.0.0/16"], "domains": ["site-a.example"]},
            {"name": "b", "edge": "s2", "access_ports": [2], "prefixes": ["10.2.0.0/16"], "domains": ["site-b.example"]}],
        "aggregates": [{"id": "a-b", "between": ["a", "b"], "size_kbps": 100}],
        "codecs": {"allowed": ["pcmu", "g729"]}})))


@pytest.fixture
def controller() -> Iterator[tuple[str, MamService, list[str]]]:
    """The real REST API, served over HTTP on loopback by wsgiref, in front of the real service."""
    service = _service()
    api = make_wsgi_app(service, ApiConfig(token="secret"))
    seen: list[str] = []

    def recording(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(f"{environ['REQUEST_METHOD']} {environ.get('HTTP_AUTHORIZATION')}")
        return api(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, recording, server_class=_ThreadingWSGIServer, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", service, seen
    finally:
        server.shutdown()
        server.server_close()


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def test_rest_call_control_round_trip(controller: tuple[str, MamService, list[str]]) -> None:
    url, service, seen = controller
    client = RestCallControl(url, token="secret")
    assert client.community_of("site-a.example", None) == "a"
    assert client.community_of(None, "10.2.3.4") == "b"
    assert client.community_of("site-a.example", None) == "a"          # cached
    assert seen == ["GET Bearer secret", "GET Bearer secret"]
    decision = client.admit(AdmissionRequest("c/1", "a", "b", MediaSpec("pcmu")))
    assert isinstance(decision, Admitted) and decision.aggregate_id == "a-b" and decision.kbps == 91
    full = client.admit(AdmissionRequest("c2", "a", "b", MediaSpec("pcmu")))
    assert isinstance(full, Rejected) and full.reason is RejectReason.POOL_FULL
    client.attach_media("c/1", MediaEndpoint("10.1.0.1", 4000), MediaEndpoint("10.2.0.1", 5000))
    assert service.read(lambda m: m.call("c/1").media_attached)
    assert isinstance(client.modify("c/1", MediaSpec("g729")), Admitted)
    client.release("c/1", "bye-from-caller")
    client.release("c/1", "bye-from-caller")                      # unknown now: ignored
    assert service.read(lambda m: m.used_kbps("a-b")) == 0
    gone = client.modify("c/1", MediaSpec("g729"))
    assert isinstance(gone, Rejected) and gone.reason is RejectReason.UNKNOWN_CALL
    refused = client.admit(AdmissionRequest("c3", "a", "b", MediaSpec("g722")))
    assert isinstance(refused, Rejected) and refused.reason is RejectReason.CODEC_NOT_ALLOWED
    assert "g722" in refused.detail


def test_unreachable_controller_raises_controller_error() -> None:
    client = RestCallControl("http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(ControllerError):
        client.admit(AdmissionRequest("x", "a", "b", MediaSpec("pcmu")))
