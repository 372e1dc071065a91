"""GET /mam/v1/events over a real loopback HTTP server, read with a plain HTTP client:
order, resume with Last-Event-ID, many clients, and a slow client that never holds up
admission."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from typing import Any, Iterator

import pytest

from ryu_apps.config import ApiConfig, build_manager, parse_config
from ryu_apps.core.admission import AdmissionRequest, Admitted
from ryu_apps.core.codec import MediaSpec
from ryu_apps.events import EventHub, ThreadWakeup
from ryu_apps.rest.api import make_wsgi_app
from ryu_apps.service import MamService

from fakes.loopback import serve
from test_rest_api import PCMU_KBPS, config


class Rig:
    def __init__(self, url: str, service: MamService, hub: EventHub) -> None:
        self.url, self.service, self.hub = url, service, hub
        self.port = int(url.rsplit(":", 1)[1])


@pytest.fixture
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    options = getattr(request, "param", {})
    hub = EventHub(wakeup=ThreadWakeup, keepalive_s=0.2, **options)
    service = MamService(build_manager(parse_config(config(5 * PCMU_KBPS))), clock=time.time)
    service.watch(hub)
    for url in serve(make_wsgi_app(service, ApiConfig(), events=hub)):
        yield Rig(url, service, hub)


def admit(service: MamService, call_id: str) -> bool:
    return isinstance(service.admit(AdmissionRequest(call_id, "site-a", "site-b", MediaSpec("pcmu"))), Admitted)


class Stream:
    """A plain HTTP/1.0 client reading server-sent events from a socket."""

    def __init__(self, port: int, last_id: int | None = None, query: str = "", rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        header = "" if last_id is None else f"Last-Event-ID: {last_id}\r\n"
        self.sock.sendall(f"GET /mam/v1/events{query} HTTP/1.0\r\nHost: x\r\n{header}\r\n".encode())
        self.buffer = b""
        self.status = 0
        self.headers: dict[str, str] = {}

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the stream ended")
        self.buffer += chunk

    def _head(self) -> None:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}

    def events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The next ``count`` events (comments and retry lines skipped)."""
        if not self.status:
            self._head()
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            while b"\n\n" not in self.buffer:
                assert time.monotonic() < deadline, f"only {len(out)} of {count} events: {out}"
                self._fill()
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            fields: dict[str, Any] = {}
            for line in block.decode().split("\n"):
                if line.startswith(":") or not line:
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
                out.append(fields)
        return out

    def close(self) -> None:
        self.sock.close()


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_events_arrive_in_decision_order_with_ids_counting_up(rig: Rig) -> None:
    stream = Stream(rig.port)
    wait_for(lambda: rig.hub.clients == 1)
    for n in range(5):
        admit(rig.service, f"c{n}")
    admit(rig.service, "c5")                               # the pool holds five: refused
    rig.service.release("c1", "bye")
    rig.service.resize_aggregate("a-b", 6 * PCMU_KBPS)
    events = stream.events(8)
    assert stream.status == 200 and stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert [e["event"] for e in events] == ["call.admitted"] * 5 + ["call.refused", "call.released",
                                                                     "aggregate.resized"]
    assert [int(e["id"]) for e in events] == list(range(1, 9))
    assert [e["data"]["call_id"] for e in events[:7]] == ["c0", "c1", "c2", "c3", "c4", "c5", "c1"]
    assert events[5]["data"]["reason"] == "pool-full" and events[6]["data"]["cause"] == "bye"
    assert events[7]["data"]["aggregate"]["size_kbps"] == 6 * PCMU_KBPS and events[7]["data"]["old_size_kbps"] == 455
    stream.close()
    wait_for(lambda: rig.hub.clients == 0)                 # a client that went away is forgotten


def test_a_reconnecting_client_resumes_after_its_last_event(rig: Rig) -> None:
    for n in range(4):
        admit(rig.service, f"c{n}")
    stream = Stream(rig.port, last_id=2)
    wait_for(lambda: rig.hub.clients == 1)
    admit(rig.service, "c4")
    assert [(e["id"], e["data"]["call_id"]) for e in stream.events(3)] == [("3", "c2"), ("4", "c3"), ("5", "c4")]
    query = Stream(rig.port, query="?last_event_id=4")          # EventSource's first connection: a query
    assert [e["id"] for e in query.events(1)] == ["5"]
    stream.close()
    query.close()


@pytest.mark.parametrize("rig", [{"ring_size": 3}], indirect=True)
def test_a_client_whose_events_left_the_ring_is_told_to_reload(rig: Rig) -> None:
    for n in range(5):
        admit(rig.service, f"c{n}")
    behind = Stream(rig.port, last_id=1)                   # events 2 and 3 are gone: only 3..5 are kept
    events = behind.events(1)
    assert "id" not in events[0] and events[0]["data"] == {"last_id": 5}
    assert [e["id"] for e in behind.events(3)] == ["3", "4", "5"]
    ahead = Stream(rig.port, last_id=99)                   # a previous run's id: reload too
    assert ahead.events(1)[0]["data"] == {"last_id": 5}
    behind.close()
    ahead.close()


def test_bad_last_event_id_is_a_400_naming_it(rig: Rig) -> None:
    stream = Stream(rig.port, query="?last_event_id=-1")
    stream._head()
    assert stream.status == 400 and b'"field": "last_event_id"' in stream.buffer + stream.sock.recv(4096)


def test_forty_clients_each_get_every_event_in_order(rig: Rig) -> None:
    streams = [Stream(rig.port) for _ in range(40)]
    wait_for(lambda: rig.hub.clients == 40)
    for n in range(5):
        admit(rig.service, f"c{n}")
    for n in range(5):
        rig.service.release(f"c{n}")
    for stream in streams:
        assert [int(e["id"]) for e in stream.events(10)] == list(range(1, 11))
        stream.close()


@pytest.mark.parametrize("rig", [{"client_queue": 2500}], indirect=True)
def test_a_client_that_stops_reading_is_dropped_and_never_holds_up_admission(rig: Rig) -> None:
    stalled = Stream(rig.port, rcvbuf=1024)                # asks, then never reads
    reader = Stream(rig.port)
    wait_for(lambda: rig.hub.clients == 2)
    raw = bytearray()

    def follow() -> None:                                  # raw bytes only: parsing later keeps up with the server
        while b"id: 6000\n" not in raw[-2000:]:
            chunk = reader.sock.recv(1 << 20)
            if not chunk:
                return
            raw.extend(chunk)
    reader.sock.settimeout(60)
    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    started = time.monotonic()
    def read_up_to() -> int:
        ids = re.findall(rb"id: (\d+)\n", bytes(raw[-2000:]))
        return int(ids[-1]) if ids else 0
    for n in range(3000):                                  # 6,000 events of ~400 bytes: far past any socket buffer
        assert admit(rig.service, f"call-{n}-" + "x" * 100)
        rig.service.release(f"call-{n}-" + "x" * 100)
        if n % 100 == 99:        # a reader that keeps up stays (admission is faster than this test's reader:
            wait_for(lambda: read_up_to() >= 2 * n - 1000, timeout=10)   # pace it, but never by the stalled one)
    elapsed = time.monotonic() - started
    assert elapsed < 20, f"3,000 admissions took {elapsed:.1f} s with a stalled client"
    wait_for(lambda: rig.hub.dropped == 1, timeout=20)
    follower.join(60)
    reader.buffer = bytes(raw)
    got = reader.events(6000)
    assert [int(e["id"]) for e in got] == list(range(1, 6001))    # the reader lost nothing
    assert rig.hub.clients == 1                                    # only the stalled one went
    stalled.close()
    reader.close()


def test_publishing_to_a_full_queue_drops_that_client_only() -> None:
    hub = EventHub(client_queue=3, wakeup=ThreadWakeup)
    slow, _, _ = hub.subscribe(None)
    fast, _, _ = hub.subscribe(None)
    service = MamService(build_manager(parse_config(config(50 * PCMU_KBPS))), clock=lambda: 1.0)
    service.watch(hub)
    for n in range(5):
        admit(service, f"c{n}")
        fast.take()
    assert slow.dropped and not fast.dropped and hub.clients == 1 and hub.dropped == 1
    with pytest.raises(OverflowError):
        EventHub(max_clients=0, wakeup=ThreadWakeup).subscribe(None)


GREEN = '''
import sys, time
from ryu_apps import compat
import eventlet
from ryu_apps.config import ApiConfig, build_manager, parse_config
from ryu_apps.core.admission import AdmissionRequest
from ryu_apps.core.codec import MediaSpec
from ryu_apps.events import EventHub
from ryu_apps.rest.api import make_wsgi_app
from ryu_apps.service import MamService
from test_rest_api import config
assert compat.green()
service = MamService(build_manager(parse_config(config(1000))), clock=time.time, lock=compat.rlock())
hub = EventHub()
service.watch(hub)
listener = eventlet.listen(("127.0.0.1", 0))
port = listener.getsockname()[1]
listener.close()
compat.serve_wsgi(make_wsgi_app(service, ApiConfig(), events=hub), "127.0.0.1", port)
eventlet.sleep(0.1)
received = []
def client():
    sock = eventlet.connect(("127.0.0.1", port))
    sock.settimeout(5)
    sock.sendall(b"GET /mam/v1/events HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    data = b""
    while b"id: 1\\n" not in data:
        data += sock.recv(65536)
    received.append(time.monotonic())
reader = eventlet.spawn(client)
while hub.clients == 0:
    eventlet.sleep(0.01)
sent = time.monotonic()
service.admit(AdmissionRequest("c0", "site-a", "site-b", MediaSpec("pcmu")))
reader.wait()
print(f"{received[0] - sent:.3f}")
'''


def test_under_eventlet_wsgi_each_event_is_written_as_it_happens() -> None:
    """ryu's hub: eventlet.wsgi would gather 4 KiB before writing; the first event must arrive alone."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", GREEN], cwd=root, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": f"{root}:{root / 'tests' / 'unit'}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) < 1.0


# --- api.read_token and the console's files ---------------------------------------------------

def test_a_read_token_guards_reads_and_the_stream_but_not_the_console_files() -> None:
    from webob import Request
    read, change = "read-token-0123456789abcdef", "change-token-0123456789abc"
    service = MamService(build_manager(parse_config(config())), clock=lambda: 1.0)
    hub = EventHub(max_stream_s=0, wakeup=ThreadWakeup)
    app = make_wsgi_app(service, ApiConfig(token=change, read_token=read), events=hub)

    def get(path: str, token: str | None = None) -> int:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return int(Request.blank(path, headers=headers).get_response(app).status_int)
    assert get("/mam/v1/aggregates") == 401 and get("/metrics") == 401 and get("/mam/v1/cdrs") == 401
    assert get("/mam/v1/aggregates", "wrong") == 403
    assert get("/mam/v1/aggregates", read) == 200 and get("/mam/v1/aggregates", change) == 200
    assert get("/mam/v1/events") == 401 and get(f"/mam/v1/events?access_token={read}") == 200
    assert get("/mam/v1/aggregates?access_token=" + read) == 401        # only the stream takes it in the URL
    assert get("/ui/") == 200 and get("/ui/app.js") == 200 and get("/ui/style.css") == 200
    post = Request.blank("/mam/v1/aggregates", method="POST", headers={"Authorization": f"Bearer {read}"})
    assert post.get_response(app).status_int == 403                      # reading is not changing
    open_app = make_wsgi_app(service, ApiConfig(), events=hub)
    assert Request.blank("/mam/v1/aggregates").get_response(open_app).status_int == 200   # off by default


def test_console_files_are_served_from_the_package_and_nothing_else() -> None:
    from webob import Request
    app = make_wsgi_app(MamService(build_manager(parse_config(config())), clock=lambda: 1.0),
                        events=EventHub(wakeup=ThreadWakeup))
    page = Request.blank("/ui/").get_response(app)
    assert page.status_int == 200 and page.content_type == "text/html" and b'src="app.js"' in page.body
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert b"http" not in page.body.replace(b'lang="en"', b"")          # nothing from elsewhere (no CDN)
    assert Request.blank("/ui").get_response(app).location.endswith("/ui/")
    for bad in ("/ui/..%2Fsetup.cfg", "/ui/__init__.py", "/ui/nothing.js", "/ui/.hidden.css"):
        assert Request.blank(bad).get_response(app).status_int == 404, bad
    script = Request.blank("/ui/app.js").get_response(app)
    assert script.content_type == "text/javascript" and b"EventSource" in script.body


def test_read_token_is_checked_like_the_mutation_token() -> None:
    from ryu_apps import security
    assert any("read_token" in p for p in security.problems(ApiConfig(read_token="secret")))
    assert any("read_token" in p for p in security.problems(ApiConfig(read_token="short")))
    assert any("read_token" in w for w in security.check(ApiConfig(host="0.0.0.0", token="x" * 32,
                                                                    allow_insecure=True)))
    document = config()
    document["api"] = {"read_token": "r" * 24}
    assert parse_config(document).api.read_token == "r" * 24
