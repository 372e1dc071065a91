"""RestCallControl against a stand-in of the REST contract it documents (backed by the real service)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from ryu_apps.config import build_manager, parse_config
from ryu_apps.core.admission import AdmissionRequest, Admitted, Rejected, RejectReason, ServiceLevel
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec
from ryu_apps.core.serialize import media_from_dict
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
    service = _service()
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

        def _decision(self, decision: Any) -> None:
            if isinstance(decision, Admitted):
                self._reply(201, {"call": {"aggregate_id": decision.aggregate_id, "kbps": decision.kbps}})
            else:
                self._reply(409, {"reason": decision.reason.value, "detail": decision.detail})

        def do_GET(self) -> None:  # noqa: N802
            seen.append(f"GET {self.headers.get('Authorization')}")
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            self._reply(200, {"community": service.community_of(query.get("domain", [None])[0],
                                                                 query.get("address", [None])[0])})

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            self._decision(service.admit(AdmissionRequest(
                body["call_id"], body["caller_community"], body["callee_community"], media_from_dict(body["media"]),
                ServiceLevel.parse(body["level"]))))

        def do_PATCH(self) -> None:  # noqa: N802
            call_id = urllib.parse.unquote(self.path.split("/")[-1])
            self._decision(service.modify(call_id, media_from_dict(self._body()["media"])))

        def do_PUT(self) -> None:  # noqa: N802
            body = self._body()
            call_id = urllib.parse.unquote(self.path.split("/")[-2])
            service.attach_media(call_id, MediaEndpoint(**body["caller"]), MediaEndpoint(**body["callee"]))
            self._reply(200, {})

        def do_DELETE(self) -> None:  # noqa: N802
            path = urllib.parse.urlsplit(self.path)
            released = service.release(urllib.parse.unquote(path.path.split("/")[-1]),
                                       cause=urllib.parse.parse_qs(path.query)["cause"][0])
            self._reply(204 if released else 404, None if released else {"error": "no such call"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", service, seen
    finally:
        server.shutdown()
        server.server_close()


def test_rest_call_control_round_trip(controller: tuple[str, MamService, list[str]]) -> None:
    url, service, seen = controller
    client = RestCallControl(url, token="secret")
    assert client.community_of("site-a.example", None) == "a"
    assert client.community_of(None, "10.2.3.4") == "b"
    assert client.community_of("site-a.example", None) == "a"          # cached
    assert seen == ["GET Bearer secret", "GET Bearer secret"]
    decision = client.admit(AdmissionRequest("c/1", "a", "b", MediaSpec("pcmu")), 0.0)
    assert isinstance(decision, Admitted) and decision.aggregate_id == "a-b" and decision.kbps == 91
    full = client.admit(AdmissionRequest("c2", "a", "b", MediaSpec("pcmu")), 0.0)
    assert isinstance(full, Rejected) and full.reason is RejectReason.POOL_FULL
    client.attach_media("c/1", MediaEndpoint("10.1.0.1", 4000), MediaEndpoint("10.2.0.1", 5000), 0.0)
    assert service.read(lambda m: m.call("c/1").media_attached)
    assert isinstance(client.modify("c/1", MediaSpec("g729"), 0.0), Admitted)
    client.release("c/1", 0.0, "bye-from-caller")
    client.release("c/1", 0.0, "bye-from-caller")                      # unknown now: ignored
    assert service.read(lambda m: m.used_kbps("a-b")) == 0


def test_unreachable_controller_raises_controller_error() -> None:
    client = RestCallControl("http://127.0.0.1:9", timeout=0.5)
    with pytest.raises(ControllerError):
        client.admit(AdmissionRequest("x", "a", "b", MediaSpec("pcmu")), 0.0)
